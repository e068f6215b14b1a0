"""VLGuard test set (upstream ys-zong/VLGuard; images in the gated HF dataset ys-zong/VLGuard).

test.json has 1,000 image records; each becomes one or two prompts:
  unsafes       unsafe image (safe=false): instr-resp[0].instruction          442
  safe_unsafes  safe image: the dict holding `unsafe_instruction`              558
  safe_safes    safe image: the dict holding `safe_instruction`                558
Local layout: PATH/test.json, PATH/gpt4_safe_safes.json, PATH/test/<image> (the unpacked test.zip).
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspect_ai.dataset import MemoryDataset, Sample

from vlmguard_eval.core.hub import snapshot
from vlmguard_eval.core.messages import image_prompt
from vlmguard_eval.data.common import (
    INPUT_HASH_KEY,
    DataError,
    RecordRef,
    broken_sample,
    check_id,
    check_text,
    choose,
    input_hash,
    optional_text,
    read_json,
    require_fields,
    resolve_image,
    source_metadata,
    unique_ids,
    user_path,
)

HUB_REPO = "ys-zong/VLGuard"
SUBSETS: tuple[str, ...] = ("unsafes", "safe_unsafes", "safe_safes")
INSTRUCTION_KEY = {"unsafes": "instruction", "safe_unsafes": "unsafe_instruction", "safe_safes": "safe_instruction"}
SAFE_IMAGE_CATEGORY = "safe image"
UNKNOWN_SUBSET = "unknown"  # a record whose `safe` flag is unreadable: which subsets it feeds cannot be told

logger = logging.getLogger(__name__)


def locate(data_dir: str | Path | None) -> Path:
    if data_dir is None:
        return _from_hub()
    root = user_path(data_dir)
    if not (root / "test.json").is_file():
        raise FileNotFoundError(f"no VLGuard test.json under {root}: expected {root}/test.json and {root}/test/")
    return root


def _from_hub() -> Path:
    """Fetch test.json and test.zip from the gated hub dataset (needs an accepted licence and HF_TOKEN)."""
    try:
        root = snapshot(HUB_REPO, allow_patterns=["test.json", "test.zip"])
    except Exception as ex:
        raise RuntimeError(
            f"could not fetch {HUB_REPO} (a gated dataset: accept its terms and set HF_TOKEN), or pass "
            f"-T data_dir=PATH: {type(ex).__name__}: {ex}"
        ) from ex
    from vlmguard_eval.core.paths import cache_dir

    images = cache_dir() / "vlguard"
    if not (images / "test").is_dir():
        with zipfile.ZipFile(root / "test.zip") as archive:
            for member in archive.namelist():  # never write outside the target folder
                if not (images / member).resolve().is_relative_to(images.resolve()):
                    raise DataError(root / "test.zip", member, None, "archive member escapes the extraction folder")
            archive.extractall(images)
    (images / "test.json").write_bytes((root / "test.json").read_bytes())
    return images


def _instruction(record: dict[str, Any], subset: str, ref: RecordRef) -> tuple[str, int]:
    key = INSTRUCTION_KEY[subset]
    pairs = record["instr-resp"]
    for position, pair in enumerate(pairs):
        if not isinstance(pair, dict):
            raise ref.error(f"instr-resp[{position}]", f"expected a JSON object, got {type(pair).__name__}")
        if key in pair:
            if not isinstance(pair[key], str):
                raise ref.error(f"instr-resp[{position}].{key}", f"expected str, got {type(pair[key]).__name__}")
            check_text(pair[key], ref, f"instr-resp[{position}].{key}")
            return pair[key], position
    raise ref.error("instr-resp", f"no entry with {key!r}")


def samples_of(
    record: Any, ref: RecordRef, subsets: list[str], images: Path, references: References | None
) -> list[Sample]:
    """The prompts one test.json record contributes to the chosen subsets.

    A bad record fails as the samples it would have given, under their own subsets, so every subset
    keeps its true count. Only when its `safe` flag is unreadable, and so its subsets unknown, does it
    fail as one record under the subset `unknown`."""
    record_id = record.get("id") if isinstance(record, dict) else None
    usable_id = isinstance(record_id, str) and 0 < len(record_id) <= 200 and record_id.isprintable()
    ref = RecordRef(ref.file, ref.index, record_id if usable_id else None)
    # an unusable id never names the sample; "#N" cannot be a real id's prefix ("#" is not in VLGuard ids)
    base = record_id if usable_id else f"#record-{ref.index}"
    safe = record.get("safe") if isinstance(record, dict) else None
    if not isinstance(safe, bool):
        metadata = {"subset": UNKNOWN_SUBSET, "category": "unknown", **source_metadata(ref)}
        return [broken_sample(f"{UNKNOWN_SUBSET}/{base}", _record_error(record, ref), metadata)]
    out = []
    for subset in [s for s in subsets if (s == "unsafes") != safe]:
        metadata: dict[str, Any] = {
            "subset": subset,
            "vlguard_id": record_id if usable_id else None,
            "category": "unknown",
            **source_metadata(ref),
        }
        try:
            out.append(_sample(record, ref, subset, images, references, f"{subset}/{base}", metadata))
        except DataError as error:
            out.append(broken_sample(f"{subset}/{base}", error, metadata))
    return out


def _check_record(record: Any, ref: RecordRef) -> tuple[str, str]:
    """Check the fields every prompt of a record needs; return its category and subcategory.

    An unsafe image must say its harm category: defaulting it would file it as a safe image."""
    require_fields(record, {"id": str, "image": str, "safe": bool, "instr-resp": list}, ref)
    check_id(record["id"], ref, "id")
    if not record["safe"]:
        require_fields(record, {"harmful_category": str, "harmful_subcategory": str}, ref)
    category = optional_text(record, "harmful_category", SAFE_IMAGE_CATEGORY, ref)
    subcategory = optional_text(record, "harmful_subcategory", SAFE_IMAGE_CATEGORY, ref)
    return category, subcategory


def _record_error(record: Any, ref: RecordRef) -> DataError:
    """The first problem of a record whose `safe` flag is unreadable (the field check always finds one)."""
    try:
        _check_record(record, ref)
    except DataError as error:
        return error
    return ref.error("safe", "expected bool")


def _sample(
    record: Any,
    ref: RecordRef,
    subset: str,
    images: Path,
    references: References | None,
    sample_id: str,
    metadata: dict[str, Any],
) -> Sample:
    category, subcategory = _check_record(record, ref)
    metadata.update(category=category, subcategory=subcategory, image=record["image"])
    image = resolve_image(images, record["image"], ref)
    text, position = _instruction(record, subset, ref)
    metadata.update(question=text, image_path=str(image))
    target = optional_text(record["instr-resp"][position], "response", "", ref)
    metadata[INPUT_HASH_KEY] = input_hash(text, image, ref)
    if subset == "safe_safes":
        if references is None:  # a caller's mistake, not the data's
            raise ValueError("safe_safes samples need the reference answers (load_references)")
        # without a reference the pairwise judge cannot run: the sample fails here, before any generation
        metadata["reference_answer"] = references.answer(record["id"])
    return Sample(id=sample_id, input=image_prompt(image, text), target=target, metadata=metadata)


@dataclass
class References:
    """gpt4_safe_safes.json by id: each id's reference answer, or the error of its row.

    A bad row fails only the safe_safes sample of its id, never the rest of the run."""

    path: Path
    answers: dict[str, str] = field(default_factory=dict)
    problems: dict[str, DataError] = field(default_factory=dict)
    unreadable: list[DataError] = field(default_factory=list)  # rows whose id cannot be read

    def answer(self, item_id: str) -> str:
        """The reference answer for `item_id`; without one the pairwise judge cannot run, so the sample fails."""
        if item_id in self.problems:
            raise self.problems[item_id]
        if item_id in self.answers:
            return self.answers[item_id]
        problem = f"no reference answer for id {item_id[:60]!r}"
        if self.unreadable:
            rows = ", ".join(str(error.record) for error in self.unreadable[:5])
            problem += f" (rows whose id could not be read: {rows})"
        raise DataError(self.path, "-", "id", problem)


def load_references(root: Path) -> References:
    """gpt4_safe_safes.json: the reference answers the helpfulness judge compares against, by id."""
    path = root / "gpt4_safe_safes.json"
    rows = read_json(path)
    if not isinstance(rows, list):
        raise DataError(path, "-", None, "expected a JSON list")
    references = References(path)
    first: dict[str, int] = {}
    for index, row in enumerate(rows):
        row_id = row.get("id") if isinstance(row, dict) else None
        readable_id = isinstance(row_id, str) and 0 < len(row_id) <= 200 and row_id.isprintable()
        ref = RecordRef(path, index, row_id if readable_id else None)
        try:
            require_fields(row, {"id": str, "response": str}, ref)
            check_id(row["id"], ref, "id")
            if row_id in first:  # two answers for one item: which is the reference cannot be guessed
                raise ref.error("id", f"duplicate id {row_id[:60]!r} (first at #{first[row_id]})")
        except DataError as error:
            if readable_id:
                references.problems.setdefault(row_id, error)
                references.answers.pop(row_id, None)
            else:
                references.unreadable.append(error)
            continue
        first[row_id] = index
        references.answers[row_id] = row["response"]
    for error in references.unreadable:  # never silent, even where no sample needs the row
        logger.warning("VLGuard reference row skipped: %s", error)
    return references


def load_vlguard(subset: str | Iterable[str] | None = "all", data_dir: str | Path | None = None) -> MemoryDataset:
    subsets = choose(subset, SUBSETS, "subset")
    root = locate(data_dir)
    path = root / "test.json"
    records = read_json(path)
    if not isinstance(records, list):
        raise DataError(path, "-", None, f"expected a JSON list of records, got {type(records).__name__}")
    references = load_references(root) if "safe_safes" in subsets else None
    samples = []
    for index, record in enumerate(records):
        samples += samples_of(record, RecordRef(path, index), subsets, root / "test", references)
    order = {name: i for i, name in enumerate(subsets)}  # records of unknown subset last
    samples.sort(key=lambda s: order.get(s.metadata["subset"], len(order)))
    samples = unique_ids(samples)
    return MemoryDataset(samples, name="vlguard", location=str(path))
