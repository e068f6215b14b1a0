"""Source adapters for the rewriter's training data: candidates of (image, prompt, safe, unsafe, kind).

Each adapter lists a source's candidates cheaply (text fields only) and resolves an image only for
the candidates a recipe draws (`Candidate.materialize`), so a 93K-row SPA-VL copy costs one pass over
its text columns. A bad record becomes a candidate holding a located `DataError`: it fails as its own
sample and never stops the rest. Sample ids carry the source and the record's position (and, for
VLGuard, the instruction's position in the record), so they are unique by construction even where a
source repeats an id (VLGuard's train.json repeats `Ads_303871`).

Held-out test data: VLGuard's train.json and test.json share 8 records (same id and image, e.g.
`Ads_295003`, `HOD_img_hod_004405`, `harm-p_2833`). When the train.json's folder also holds the
test.json, every training record whose id or image is in it is excluded, listed in the source's
`excluded` under `held_out_test_overlap` (counted in the manifest). SIUO and MM-SafetyBench share no
ids or image names with these sources, so their content is not checked against the training data.

Published formats (fields, counts, licences: see the README's "Training the rewriter"):
- VLGuard `train.json` (ys-zong/VLGuard): `id, image, safe, instr-resp[{instruction|safe_instruction|
  unsafe_instruction, response}]`; no unsafe responses (the `responder` role writes them).
- SPA-VL (HF `sqrti/SPA-VL`, parquet): `image, question, chosen, rejected[, image_name, class1..3]`.
- VLSBench (HF `Foreshhh/vlsbench` / AI45Lab/VLSBench `data.json` + `imgs/`): `instruction_id,
  instruction, image_path, category, sub_category, source, image_description, safety_reason`; no responses.
- a generic preference JSONL: `{image, prompt, chosen, rejected[, kind, id]}`, images beside the file.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmguard_eval.core.messages import check_image_data
from vlmguard_eval.core.paths import cache_dir
from vlmguard_eval.data.common import DataError, RecordRef, read_json, require_fields, resolve_image

KINDS = ("safety", "helpfulness")
HUB = "hub"
SPA_VL_REPO = "sqrti/SPA-VL"
VLSBENCH_REPO = "Foreshhh/vlsbench"


@dataclass
class Candidate:
    """One possible training example, or the located error of a record that cannot be one."""

    sample_id: str
    source: str
    kind: str | None  # None for a broken record
    fields: dict[str, Any] = field(default_factory=dict)
    error: DataError | None = None
    image: Callable[[], Path] | None = None  # resolves (or writes out) the image file; raises DataError

    def materialize(self) -> dict[str, Any] | DataError:
        """The record the synthesis task reads, with its image file resolved; or its error."""
        if self.error is not None:
            return self.error
        try:
            image = self.image() if self.image else None
        except DataError as error:
            return error
        return {**self.fields, "image_path": str(image), "kind": self.kind, "source": self.source}


@dataclass
class SourceLoad:
    """A source's candidates and what the manifest reports about the file itself."""

    source: str
    location: str
    candidates: list[Candidate]
    id_collisions: dict[str, list[str]] = field(default_factory=dict)  # repeated source id -> record labels
    excluded: dict[str, list[str]] = field(default_factory=dict)  # reason -> labels of the records left out


def _fields(prompt: str, safe: str | None, unsafe: str | None, ref: RecordRef, **extra: Any) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "safe_response": safe,
        "unsafe_response": unsafe,
        "source_file": str(ref.file),
        "source_record": ref.label,
        **extra,
    }


def _broken(sample_id: str, source: str, error: DataError) -> Candidate:
    return Candidate(sample_id=sample_id, source=source, kind=None, error=error)


def _text(row: dict[str, Any], key: str, ref: RecordRef) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ref.error(key, "missing, empty or not text")
    return value


# ---------------------------------------------------------------- VLGuard train.json


HELD_OUT_TEST_OVERLAP = "held_out_test_overlap"


def vlguard_test_keys(path: Path) -> tuple[set[str], set[str]]:
    """The ids and image paths of VLGuard's test.json (records that are not objects hold neither)."""
    rows = read_json(path)
    if not isinstance(rows, list):
        raise DataError(path, "-", None, "expected a JSON list of records (VLGuard's test.json)")
    records = [row for row in rows if isinstance(row, dict)]
    ids = {row["id"] for row in records if isinstance(row.get("id"), str)}
    images = {row["image"] for row in records if isinstance(row.get("image"), str)}
    return ids, images


def vlguard_train(path: Path, images: Path, held_out: Path | None = None) -> SourceLoad:
    """VLGuard train.json: unsafe-image instructions and safe images' unsafe instructions are safety
    examples (the response is the safe reference; the unsafe one comes from the `responder` role);
    safe instructions on safe images are helpfulness examples. Ids are `vlguard/<index>/<id>/<position>/<key>`
    (`position`: the instruction's place in `instr-resp`). A record whose id or image is in the `held_out`
    test.json is excluded (`held_out_test_overlap`)."""
    rows = read_json(path)
    if not isinstance(rows, list):
        raise DataError(path, "-", None, "expected a JSON list of records")
    test_ids, test_images = vlguard_test_keys(held_out) if held_out is not None else (set(), set())
    excluded: dict[str, list[str]] = {}
    seen: dict[str, list[str]] = {}
    for index, row in enumerate(rows):
        if isinstance(row, dict) and isinstance(row.get("id"), str):
            seen.setdefault(row["id"], []).append(f"#{index}")
    collisions = {record_id: where for record_id, where in seen.items() if len(where) > 1}
    candidates: list[Candidate] = []
    for index, row in enumerate(rows):
        record_id = row.get("id") if isinstance(row, dict) else None
        ref = RecordRef(path, index, record_id)
        base = f"vlguard/{index}/{record_id if isinstance(record_id, str) else 'record'}"
        try:
            require_fields(row, {"id": str, "image": str, "safe": bool, "instr-resp": list}, ref)
        except DataError as error:
            candidates.append(_broken(base, "vlguard", error))
            continue
        if row["id"] in test_ids or row["image"] in test_images:
            excluded.setdefault(HELD_OUT_TEST_OVERLAP, []).append(ref.label)
            continue

        def image(relative: str = row["image"], ref: RecordRef = ref) -> Path:
            return resolve_image(images, relative, ref)

        shared = {"id_shared_with": collisions[record_id]} if record_id in collisions else {}
        for position, pair in enumerate(row["instr-resp"]):
            keys = (
                [k for k in ("instruction", "unsafe_instruction", "safe_instruction") if k in pair]
                if isinstance(pair, dict)
                else []
            )
            if not keys:
                error = ref.error(f"instr-resp[{position}]", "expected an object with an instruction")
                candidates.append(_broken(f"{base}/{position}", "vlguard", error))
                continue
            for key in keys:
                sample_id = f"{base}/{position}/{key}"
                try:
                    prompt = _text(pair, key, ref)
                    response = pair.get("response")
                    if not isinstance(response, str) or not response.strip():
                        raise ref.error(f"instr-resp[{position}].response", "missing, empty or not text")
                except DataError as error:
                    candidates.append(_broken(sample_id, "vlguard", error))
                    continue
                kind = "helpfulness" if key == "safe_instruction" else "safety"
                candidates.append(
                    Candidate(
                        sample_id=sample_id,
                        source="vlguard",
                        kind=kind,
                        fields=_fields(prompt, response, None, ref, **shared),
                        image=image,
                    )
                )
    return SourceLoad("vlguard", str(path), candidates, collisions, excluded)


# ---------------------------------------------------------------- generic preference JSONL


def preference_jsonl(path: Path) -> SourceLoad:
    """A JSONL of {"image", "prompt", "chosen", "rejected"[, "kind", "id"]}; images relative to the
    file's folder. Each line is read and decoded on its own: a bad line (invalid JSON or UTF-8) fails
    alone, named by line number (1-based)."""
    candidates: list[Candidate] = []
    try:
        raw = path.read_bytes()
    except OSError as ex:
        raise DataError(path, "-", None, f"cannot read: {ex}") from None
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        if not line_bytes.strip():
            continue
        ref = RecordRef(path, number)
        label = f"preference/line-{number}"
        try:
            try:
                line = line_bytes.decode("utf-8")
            except UnicodeDecodeError as ex:
                raise DataError(path, f"line {number}", None, f"not valid UTF-8 at byte {ex.start}") from None
            try:
                row = json.loads(line)
            except json.JSONDecodeError as ex:
                raise DataError(path, f"line {number}", None, f"not valid JSON: {ex}") from None
            require_fields(row, {"image": str, "prompt": str, "chosen": str, "rejected": str}, ref)
            _text(row, "prompt", ref)  # a blank prompt fails here, named, not at training
            kind = row.get("kind", "safety")
            if kind not in KINDS:
                raise ref.error("kind", f"{kind!r} is not safety or helpfulness")
        except DataError as error:
            candidates.append(_broken(label, "preference", error))
            continue

        def image(relative: str = row["image"], ref: RecordRef = ref) -> Path:
            return resolve_image(path.parent, relative, ref)

        extra = {"source_id": str(row["id"])} if "id" in row else {}
        candidates.append(
            Candidate(
                sample_id=label,
                source="preference",
                kind=kind,
                fields=_fields(row["prompt"], row["chosen"], row["rejected"], ref, **extra),
                image=image,
            )
        )
    return SourceLoad("preference", str(path), candidates)


# ---------------------------------------------------------------- SPA-VL (parquet, as published)


def _image_store(source: str) -> Path:
    folder = cache_dir() / "synth-images" / source
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_image_bytes(data: bytes, source: str, ref: RecordRef, field_name: str = "image") -> Path:
    """Write an embedded image to the cache (named by its content hash), checking that it decodes."""
    if not data:
        raise ref.error(field_name, "no image bytes")
    try:
        suffix = check_image_data(data).lower()  # the loaders' bounds and accepted formats, from the header
    except ValueError as ex:
        raise ref.error(field_name, str(ex)) from None
    except Exception as ex:  # `verify` raises many types for corrupt data
        raise ref.error(field_name, f"unreadable image: {type(ex).__name__}: {ex}") from None
    path = _image_store(source) / f"{hashlib.sha256(data).hexdigest()[:24]}.{suffix}"
    if not path.is_file():
        path.write_bytes(data)
    return path


def _spa_vl_dataset(location: str, revision: str | None, split: str) -> Any:
    import datasets

    from vlmguard_eval.core.hub import pinned_revision

    hf_cache = str(cache_dir() / "hf-datasets")
    if location == HUB:
        config = {"train": "default", "validation": "validation"}.get(split)
        if config is None:
            raise ValueError(f"SPA-VL split {split!r} has no responses to train on; use train or validation")
        pin = pinned_revision(SPA_VL_REPO, revision=revision)
        ds = datasets.load_dataset(SPA_VL_REPO, config, split=split, revision=pin, cache_dir=hf_cache)
    else:
        root = Path(location)
        files = sorted(root.rglob("*.parquet")) if root.is_dir() else [root]
        if not files or not all(f.is_file() for f in files):
            raise DataError(root, "-", None, "no parquet file found (SPA-VL is published as parquet shards)")
        ds = datasets.Dataset.from_parquet([str(f) for f in files], cache_dir=hf_cache)
    if "image" in ds.column_names:
        ds = ds.cast_column("image", datasets.Image(decode=False))
    return ds


def spa_vl(location: str, revision: str | None = None, split: str = "train") -> SourceLoad:
    """SPA-VL: prompt = `question`, safe = `chosen`, unsafe = `rejected` (the less preferred answer:
    the unsafe check judges it like a written one), image = the embedded `image`; all safety kind.
    `location` is a parquet file, a folder of the published shards, or `hub` (needs a revision)."""
    ds = _spa_vl_dataset(location, revision, split)
    missing = [c for c in ("image", "question", "chosen", "rejected") if c not in ds.column_names]
    if missing:
        raise DataError(location, "-", None, f"not SPA-VL: column(s) {', '.join(missing)} missing")
    texts = ds.select_columns([c for c in ("question", "chosen", "rejected", "image_name") if c in ds.column_names])
    classes = [c for c in ("class1", "class2", "class3") if c in ds.column_names]
    class_rows = ds.select_columns(classes) if classes else None
    candidates: list[Candidate] = []
    where = f"{SPA_VL_REPO}@{revision}:{split}" if location == HUB else location
    for index, row in enumerate(texts):
        ref = RecordRef(Path(where), index, row.get("image_name"))
        sample_id = f"spa_vl/{split}/{index}"
        try:
            prompt, chosen, rejected = (_text(row, key, ref) for key in ("question", "chosen", "rejected"))
        except DataError as error:
            candidates.append(_broken(sample_id, "spa_vl", error))
            continue

        def image(index: int = index, ref: RecordRef = ref) -> Path:
            cell = ds[index]["image"]
            data = cell.get("bytes") if isinstance(cell, dict) else None
            return write_image_bytes(data or b"", "spa_vl", ref)

        extra = {"category": "/".join(str(class_rows[index][c]) for c in classes)} if class_rows else {}
        candidates.append(
            Candidate(sample_id, "spa_vl", "safety", _fields(prompt, chosen, rejected, ref, **extra), image=image)
        )
    return SourceLoad("spa_vl", where, candidates)


# ---------------------------------------------------------------- VLSBench (data.json + imgs/)


def _vlsbench_files(location: str, revision: str | None) -> tuple[Path, Path]:
    """(data.json, image root) of a local copy, or of the hub snapshot with imgs.tar unpacked."""
    if location != HUB:
        path = Path(location)
        path = path / "data.json" if path.is_dir() else path
        return path, path.parent
    from vlmguard_eval.core.hub import snapshot

    root = snapshot(VLSBENCH_REPO, revision=revision, allow_patterns=["data.json", "imgs.tar"])
    unpacked = cache_dir() / "vlsbench-images" / root.name
    if not (unpacked / "imgs").is_dir():
        unpacked.mkdir(parents=True, exist_ok=True)
        with tarfile.open(root / "imgs.tar") as archive:
            archive.extractall(unpacked, filter="data")  # refuses links and paths outside `unpacked`
    return root / "data.json", unpacked


def vlsbench(location: str, revision: str | None = None) -> SourceLoad:
    """VLSBench: prompt = `instruction`, image = `image_path` (never derived from the id: 1,005 of
    2,241 records point elsewhere), no responses (the teacher writes the safe one, the `responder`
    the unsafe one); `safety_reason` is kept as a hint; all safety kind."""
    path, images = _vlsbench_files(location, revision)
    rows = read_json(path)
    if not isinstance(rows, list):
        raise DataError(path, "-", None, "expected a JSON list of records")
    ids = Counter(row.get("instruction_id") for row in rows if isinstance(row, dict))
    candidates: list[Candidate] = []
    for index, row in enumerate(rows):
        record_id = row.get("instruction_id") if isinstance(row, dict) else None
        ref = RecordRef(path, index, record_id)
        sample_id = f"vlsbench/{index}/{record_id if isinstance(record_id, int) else 'record'}"
        try:
            require_fields(row, {"instruction_id": int, "instruction": str, "image_path": str}, ref)
            prompt = _text(row, "instruction", ref)
        except DataError as error:
            candidates.append(_broken(sample_id, "vlsbench", error))
            continue

        def image(relative: str = row["image_path"], ref: RecordRef = ref) -> Path:
            return resolve_image(images, relative, ref, "image_path")

        extra = {
            "category": f"{row.get('category')}/{row.get('sub_category')}",
            "safety_reason": row.get("safety_reason") if isinstance(row.get("safety_reason"), str) else None,
        }
        candidates.append(
            Candidate(sample_id, "vlsbench", "safety", _fields(prompt, None, None, ref, **extra), image=image)
        )
    collisions = {str(k): ["repeated"] for k, n in ids.items() if n > 1 and k is not None}
    return SourceLoad("vlsbench", str(path), candidates, collisions)


def load_source(spec: dict[str, Any]) -> SourceLoad:
    """A source from its recipe entry: {name, path, images?, revision?, split?}."""
    name, path = spec["name"], spec.get("path")
    if name == "vlguard":
        if not path or path == HUB:
            raise ValueError("source vlguard needs the path of a local train.json (the images are train.zip)")
        images = Path(spec.get("images") or Path(path).parent / "train")
        test = Path(path).parent / "test.json"
        return vlguard_train(Path(path), images, test if test.is_file() and test != Path(path) else None)
    if name == "preference":
        if not path:
            raise ValueError("source preference needs a path")
        return preference_jsonl(Path(path))
    if name == "spa_vl":
        return spa_vl(path or HUB, spec.get("revision"), spec.get("split", "train"))
    if name == "vlsbench":
        return vlsbench(path or HUB, spec.get("revision"))
    raise ValueError(f"source {name!r} does not exist; valid: {', '.join(SOURCE_NAMES)}")


SOURCE_NAMES = ("vlguard", "spa_vl", "vlsbench", "preference")
