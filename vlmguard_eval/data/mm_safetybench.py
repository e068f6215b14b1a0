"""MM-SafetyBench (upstream isXinLiu/MM-SafetyBench): 13 scenarios, 1,680 questions, 3 image types.

Local layout: PATH/processed_questions/<scenario>.json, PATH/TinyVersion_ID_List.json,
PATH/imgs/<scenario>/<SD|SD_TYPO|TYPO>/<id>.jpg. TYPO images may be absent: they are rendered from
`Key Phrase` (see `typography`); SD_TYPO is stacked from SD when absent. Ids come from the JSON keys
(scenarios 05 and 08 have gaps). There is no official hub copy: `hub_repo` names a mirror.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspect_ai.dataset import MemoryDataset, Sample

from vlmguard_eval.core.hub import pinned_revision, snapshot
from vlmguard_eval.core.messages import check_image_file, image_prompt
from vlmguard_eval.core.paths import cache_dir
from vlmguard_eval.data.common import (
    INPUT_HASH_KEY,
    DataError,
    RecordRef,
    broken_sample,
    choose,
    input_hash,
    optional_image,
    read_json,
    require_fields,
    source_metadata,
    user_path,
)
from vlmguard_eval.data.typography import cached_sd_typo, cached_typo

logger = logging.getLogger(__name__)

SCENARIOS: tuple[str, ...] = (
    "01-Illegal_Activitiy",  # sic: the official name
    "02-HateSpeech",
    "03-Malware_Generation",
    "04-Physical_Harm",
    "05-EconomicHarm",
    "06-Fraud",
    "07-Sex",
    "08-Political_Lobbying",
    "09-Privacy_Violence",
    "10-Legal_Opinion",
    "11-Financial_Advice",
    "12-Health_Consultation",
    "13-Gov_Decision",
)
IMAGE_TYPES: tuple[str, ...] = ("SD", "SD_TYPO", "TYPO", "text")
QUESTION_FIELD = {
    "SD": "Rephrased Question(SD)",
    "SD_TYPO": "Rephrased Question",
    "TYPO": "Rephrased Question",
    "text": "Question",
}
# upstream ids are small integers; a key names an image file, so it must be a plain name
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# the longest upstream key phrase has 91 characters, each on one line; a rendered phrase must stay one
# bounded image
MAX_KEY_PHRASE_CHARS = 500
FIELDS: dict[str, type] = {
    "Question": str,
    "Key Phrase": str,
    "Rephrased Question": str,
    "Rephrased Question(SD)": str,
}


def locate(data_dir: str | Path | None, hub_repo: str | None, hub_revision: str | None = None) -> Path:
    if data_dir is not None:
        root = user_path(data_dir)
    elif hub_repo is not None:
        pinned_revision(hub_repo, revision=hub_revision)  # a mirror has no pin of ours: its revision is required
        try:
            root = snapshot(hub_repo, revision=hub_revision)
        except Exception as ex:
            raise RuntimeError(f"could not fetch {hub_repo} from the Hugging Face hub: {ex}") from ex
    else:
        raise ValueError("MM-SafetyBench has no official hub copy: pass -T data_dir=PATH (or -T hub_repo=MIRROR)")
    if not (root / "processed_questions").is_dir():
        raise FileNotFoundError(f"no MM-SafetyBench questions under {root}: expected {root / 'processed_questions'}/")
    return root


@dataclass(frozen=True)
class TinyEntry:
    """One scenario's entry in TinyVersion_ID_List.json: where it lies and the ids it lists."""

    ref: RecordRef
    ids: list[object]


def tiny_entries(root: Path, scenarios: list[str]) -> dict[str, TinyEntry]:
    """The tiny subset's entry for each scenario.

    A scenario named wrongly or twice, or a chosen one without an entry, stops the load naming the file:
    which ids are meant cannot be told. A listed id that is not an id or names no record fails as its
    own sample instead (`unlisted_samples`), so nothing the list names is dropped unsaid."""
    path = root / "TinyVersion_ID_List.json"
    entries = read_json(path)
    if not isinstance(entries, list):
        raise DataError(path, "-", None, "expected a list of {Scenario, Sampled_ID_List}")
    out: dict[str, TinyEntry] = {}
    for index, entry in enumerate(entries):
        require_fields(entry, {"Scenario": str, "Sampled_ID_List": list}, RecordRef(path, index))
        name = entry["Scenario"]
        ref = RecordRef(path, index, name)
        if name not in SCENARIOS:
            raise ref.error("Scenario", f"{name[:60]!r} is not a scenario name; valid: {', '.join(SCENARIOS)}")
        if name in out:
            raise ref.error("Scenario", f"listed twice (first at #{out[name].ref.index})")
        out[name] = TinyEntry(ref, entry["Sampled_ID_List"])
    absent = [name for name in scenarios if name not in out]
    if absent:
        raise DataError(path, "-", None, f"no entry for scenario(s) {', '.join(absent)}")
    return out


def tiny_key(item: object) -> str | None:
    """A listed id as the JSON key it names (upstream lists integers); None for anything else."""
    if isinstance(item, int) and not isinstance(item, bool):
        return str(item)
    return item if isinstance(item, str) else None


def unlisted_samples(
    entry: TinyEntry, scenario: str, image_types: list[str], records: dict[str, Any], path: Path
) -> list[Sample]:
    """A failing sample per image type for each listed id that is not an id or has no record."""
    samples = []
    seen: set[str] = set()  # an id listed twice is still one item
    for position, item in enumerate(entry.ids):
        key = tiny_key(item)
        if key is not None and (key in records or key in seen):
            continue
        if key is not None:
            seen.add(key)
        field = f"Sampled_ID_List[{position}]"
        if key is None:
            problem = f"expected an integer or text id, got {type(item).__name__}"
        else:
            problem = f"id {key[:60]!r} has no record in {path}"
        error = DataError(entry.ref.file, entry.ref.label, field, problem)
        name = key if key is not None and KEY_PATTERN.fullmatch(key) else f"#tiny-{position}"
        metadata = {
            "scenario": scenario,
            "category": scenario,
            "question_id": (key or "")[:64],
            **source_metadata(entry.ref),
        }
        for image_type in image_types:
            sample_id = f"{scenario}/{image_type}/{name}"
            samples.append(broken_sample(sample_id, error, {**metadata, "image_type": image_type}))
    return samples


def _image_for(
    root: Path, scenario: str, image_type: str, key: str, record: dict[str, Any], ref: RecordRef, cache_dir: Path
) -> Path | None:
    if image_type == "text":
        return None
    official = _official_image(root, scenario, image_type, key, ref)
    if official is not None:
        return official
    if image_type == "TYPO":
        return _rendered(lambda: cached_typo(_key_phrase(record, ref), cache_dir), ref)
    sd = _official_image(root, scenario, "SD", key, ref)
    if image_type == "SD_TYPO" and sd is not None:
        return _rendered(lambda: cached_sd_typo(_key_phrase(record, ref), sd, cache_dir), ref)
    raise ref.error("image", f"{image_type} image not found: {root / 'imgs' / scenario / image_type / key}.jpg")


def _official_image(root: Path, scenario: str, image_type: str, key: str, ref: RecordRef) -> Path | None:
    """The benchmark's own image for `key`, confined to the image folder (links included) and bounded.

    The folder is the root, as SIUO's `images/` is, so `imgs/` may itself link to another disk."""
    path = optional_image(root / "imgs", f"{scenario}/{image_type}/{key}.jpg", ref)
    if path is None:
        return None
    try:
        check_image_file(path)
    except ValueError as ex:
        raise ref.error("image", f"{path}: {ex}") from None
    return path


def _key_phrase(record: dict[str, Any], ref: RecordRef) -> str:
    """The phrase a TYPO image shows: one line, bounded, so the rendered image stays bounded."""
    phrase = record["Key Phrase"]
    if len(phrase) > MAX_KEY_PHRASE_CHARS:
        raise ref.error("Key Phrase", f"{len(phrase):,} characters (limit {MAX_KEY_PHRASE_CHARS} for a TYPO image)")
    if not phrase.strip() or not phrase.isprintable():
        raise ref.error("Key Phrase", "must be one non-empty line of printable text to render a TYPO image")
    return phrase


def _rendered(render: Any, ref: RecordRef) -> Path:
    """Run a TYPO/SD_TYPO render; a failure (a corrupt SD image) fails this record only."""
    try:
        return render()
    except DataError:
        raise
    except Exception as ex:  # Pillow raises many types for corrupt data
        raise ref.error("image", f"could not render the image: {type(ex).__name__}: {ex}") from None


def record_to_sample(
    root: Path, scenario: str, image_type: str, key: str, record: Any, ref: RecordRef, cache_dir: Path
) -> Sample:
    name = key if KEY_PATTERN.fullmatch(key) else f"#record-{ref.index}"  # a bad key never names a sample
    sample_id = f"{scenario}/{image_type}/{name}"
    metadata: dict[str, Any] = {
        "scenario": scenario,
        "category": scenario,
        "image_type": image_type,
        "question_id": key,
        **source_metadata(ref),
    }
    try:
        if not KEY_PATTERN.fullmatch(key):
            raise ref.error("id", f"key {key[:60]!r} is not a plain name (letters, digits, '_' or '-', up to 64)")
        require_fields(record, FIELDS, ref)
        image = _image_for(root, scenario, image_type, key, record, ref, cache_dir)
        question = record[QUESTION_FIELD[image_type]]
        metadata.update(question=question, key_phrase=record["Key Phrase"], original_question=record["Question"])
        if image is not None:
            metadata["image_path"] = str(image)
        metadata[INPUT_HASH_KEY] = input_hash(question, image, ref)
    except DataError as error:
        return broken_sample(sample_id, error, metadata)
    return Sample(id=sample_id, input=image_prompt(image, question), metadata=metadata)


def load_mm_safetybench(
    scenario: str | Iterable[str] | None = "all",
    image_type: str | Iterable[str] | None = "all",
    tiny: bool = False,
    data_dir: str | Path | None = None,
    hub_repo: str | None = None,
    cache_dir: str | Path | None = None,
    hub_revision: str | None = None,
) -> MemoryDataset:
    """MM-SafetyBench as one Inspect dataset over the chosen scenarios and image types."""
    scenarios = choose(scenario, SCENARIOS, "scenario")
    image_types = choose(image_type, IMAGE_TYPES, "image_type")
    root = locate(data_dir, hub_repo, hub_revision)
    missing: list[str] = []
    if scenario is None or scenario == "all":  # a partial copy: the scenarios present, the others named
        missing = [name for name in scenarios if not (root / "processed_questions" / f"{name}.json").is_file()]
        scenarios = [name for name in scenarios if name not in missing]
        if not scenarios:
            raise DataError(root / "processed_questions", "-", None, "no scenario file <scenario>.json in this folder")
        if missing:
            logger.warning(
                "MM-SafetyBench copy at %s lacks %d of 13 scenarios (%s): evaluating the %d present; "
                "pass -T scenario=NAME,... to choose",
                root,
                len(missing),
                ", ".join(missing),
                len(scenarios),
            )
    cache = Path(cache_dir) if cache_dir else _default_cache()
    tiny_list = tiny_entries(root, scenarios) if tiny else None
    samples: list[Sample] = []
    for name in scenarios:
        path = root / "processed_questions" / f"{name}.json"
        records = read_json(path)
        if not isinstance(records, dict):
            raise DataError(path, "-", None, f"expected a JSON object keyed by id, got {type(records).__name__}")
        repeated = [p for p in getattr(records, "problems", []) if p.startswith("duplicate key")]
        if repeated:  # two records under one id: which one is meant cannot be known
            raise DataError(path, "-", None, repeated[0].replace("key(s)", "id(s)"))
        keep = None if tiny_list is None else {tiny_key(item) for item in tiny_list[name].ids}
        for index, (key, record) in enumerate(records.items()):
            if keep is not None and key not in keep:
                continue
            ref = RecordRef(path, index, key)
            samples += [record_to_sample(root, name, t, key, record, ref, cache) for t in image_types]
        if tiny_list is not None:
            samples += unlisted_samples(tiny_list[name], name, image_types, records, path)
    return MMSafetyBenchDataset(samples, name="mm_safetybench", location=str(root), missing_scenarios=missing)


class MMSafetyBenchDataset(MemoryDataset):
    """The samples, and the scenarios a partial copy lacks (for the task's metadata)."""

    def __init__(self, samples: list[Sample], missing_scenarios: list[str], **kwargs: Any) -> None:
        super().__init__(samples, **kwargs)
        self.missing_scenarios = missing_scenarios


def _default_cache() -> Path:
    return cache_dir() / "mmsb-typo"
