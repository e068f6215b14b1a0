"""Shared loader machinery: record checks, safe image paths, and samples that fail on their own.

A bad record must not sink the whole benchmark. Loaders turn it into a *broken sample*: a Sample
whose metadata carries the error, raised by `check_sample` (a Task setup step) when that sample
runs, so `--fail-on-error` tolerance keeps every other sample.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspect_ai.dataset import Sample

import vlmguard_eval
from vlmguard_eval.core.messages import check_image_bytes, image_prompt

LOAD_ERROR_KEY = "load_error"
# a hash of what the model is shown (text and image bytes): the report pairs two runs only on equal inputs
INPUT_HASH_KEY = "input_sha256"
# bounds a record's ids and files must keep; beyond them the record fails on its own (an image file's bytes:
# core.messages.MAX_IMAGE_BYTES, the bound every image decoder here keeps, checked at load already)
MAX_ID_CHARS = 200
MAX_INT_ID = 2**63 - 1
MAX_INT_DIGITS = 30  # longer integer literals stay text, so only their record fails (as a wrong type)


class DataError(ValueError):
    """A problem with benchmark data, located by file, record and field."""

    def __init__(self, file: str | Path, record: object, field: str | None, problem: str) -> None:
        self.file, self.record, self.field, self.problem = str(file), record, field, problem
        # a whole-file problem (record "-" or None) names the file alone
        where = f"file {file}" if record in ("-", None) else f"{file}: record {record}"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class RecordRef:
    """Where a record came from, for error messages and for the log's metadata."""

    file: Path
    index: int
    record_id: object = None

    @property
    def label(self) -> str:
        if self.record_id is None:
            return f"#{self.index}"
        shown = str(self.record_id)[:60]
        return f"#{self.index} (id {shown})"

    def error(self, field: str | None, problem: str) -> DataError:
        return DataError(self.file, self.label, field, problem)


def choose(value: str | Iterable[str] | None, valid: tuple[str, ...], what: str) -> list[str]:
    """Normalise a task parameter naming one, several (list or comma text) or 'all' of `valid`.

    A name given twice counts once (in first-given order): the same items twice would collide by id."""
    if value is None or value == "all":
        return list(valid)
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    return list(dict.fromkeys(names))


def user_path(path: str | Path) -> Path:
    """A path the user typed, made absolute against the folder the process was launched from.

    Inspect changes into the task file's folder while it builds a task, so the current folder is
    wrong then. The package records the working directory when it is first imported (Inspect imports
    it through its entry point before it loads any task file). `$PWD` is never read: a launcher can
    leave it naming another folder, and a relative path would then silently name another dataset.
    """
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    return Path(vlmguard_eval.LAUNCH_CWD) / path


class JsonObject(dict):
    """A parsed JSON object that keeps the problems a plain dict would hide (a repeated key)."""

    problems: list[str]


def _json_object(pairs: list[tuple[str, Any]]) -> JsonObject:
    obj = JsonObject(pairs)
    obj.problems = []
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated = sorted({key for key, _ in pairs if key in seen or seen.add(key)})
        obj.problems.append(f"duplicate key(s) {', '.join(repr(k)[:60] for k in repeated)}")
    for key, value in pairs:
        obj.problems += [f"in {key[:60]!r}: {problem}" for problem in _nested_problems(value)]
    return obj


def _nested_problems(value: Any) -> list[str]:
    if isinstance(value, JsonObject):
        return value.problems
    if isinstance(value, list):
        return [f"[{i}] {p}" for i, item in enumerate(value) for p in _nested_problems(item)]
    return []


def _parse_int(text: str) -> int | str:
    return int(text) if len(text) <= MAX_INT_DIGITS else text


def read_json(path: Path) -> Any:
    """Read a JSON file, naming the file in any error; repeated keys become problems of their record."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, object_pairs_hook=_json_object, parse_int=_parse_int)
    except FileNotFoundError:
        raise DataError(path, "-", None, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as ex:
        raise DataError(path, "-", None, f"not valid UTF-8 JSON: {ex}") from None
    except RecursionError:
        raise DataError(path, "-", None, "JSON nested too deeply to read") from None
    except (OSError, ValueError) as ex:
        raise DataError(path, "-", None, f"unreadable: {type(ex).__name__}: {ex}") from None
    return data


def record_problems(record: object) -> list[str]:
    """Problems found while parsing a record (a repeated key anywhere inside it)."""
    return list(getattr(record, "problems", []))


def require_fields(record: object, fields: dict[str, type | tuple[type, ...]], ref: RecordRef) -> None:
    """Check that a record is an object holding each field with the expected type and valid text."""
    if not isinstance(record, dict):
        raise ref.error(None, f"expected a JSON object, got {type(record).__name__}")
    problems = record_problems(record)
    if problems:
        raise ref.error(None, "; ".join(problems))
    for field, expected in fields.items():
        if field not in record:
            raise ref.error(field, "missing")
        value = record[field]
        # bool is an int subclass: never accept it where an int id is expected
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in _as_tuple(expected)):
            names = "/".join(t.__name__ for t in _as_tuple(expected))
            raise ref.error(field, f"expected {names}, got {type(value).__name__}")
        check_text(value, ref, field)


def optional_text(record: dict[str, Any], field: str, default: str, ref: RecordRef) -> str:
    """An optional text field: absent gives `default`; present, it must be valid text."""
    value = record.get(field, default)
    if not isinstance(value, str):
        raise ref.error(field, f"expected str, got {type(value).__name__}")
    check_text(value, ref, field)
    return value


def check_text(value: object, ref: RecordRef, field: str) -> None:
    """Text must be valid Unicode: a lone surrogate can be neither tokenized nor written to a log."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as ex:
            raise ref.error(field, f"not valid Unicode text ({ex.reason} at position {ex.start})") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, ref, field)
            check_text(item, ref, f"{field}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, ref, f"{field}[{index}]")


def check_id(value: object, ref: RecordRef, field: str) -> None:
    """An id must be short enough to name a sample, a log entry and a file."""
    if isinstance(value, int) and not 0 <= value <= MAX_INT_ID:
        raise ref.error(field, f"integer id out of range 0..2^63-1: {str(value)[:40]}")
    if isinstance(value, str) and (not value or len(value) > MAX_ID_CHARS or not value.isprintable()):
        raise ref.error(field, f"id must be 1-{MAX_ID_CHARS} printable characters, got {value[:40]!r}")


def _as_tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def resolve_image(root: Path, relative: str, ref: RecordRef, field: str = "image") -> Path:
    """Resolve a record's image path under `root`: relative, inside the root once links are followed,
    an existing file of bounded size. Anything else fails this record only."""
    if not relative or "\x00" in relative:
        raise ref.error(field, "empty or invalid image path")
    if Path(relative).is_absolute():
        raise ref.error(field, f"image path {relative[:80]!r} is absolute; expected a path under the data root")
    try:
        root_resolved = root.resolve()
        path = (root_resolved / relative).resolve()
        if not path.is_relative_to(root_resolved):
            raise ref.error(field, f"image path {relative[:80]!r} escapes the data root {root_resolved}")
        if not path.is_file():
            raise ref.error(field, f"image file not found: {str(path)[:200]}")
        size = path.stat().st_size
    except (OSError, RuntimeError) as ex:  # a name too long, a link loop (RuntimeError on 3.11), no permission
        reason = getattr(ex, "strerror", None) or str(ex)
        raise ref.error(field, f"image path {relative[:80]!r} unusable: {reason}") from None
    try:
        check_image_bytes(size, "image file")
    except ValueError as ex:
        raise ref.error(field, str(ex)) from None
    return path


def optional_image(root: Path, relative: str, ref: RecordRef, field: str = "image") -> Path | None:
    """`resolve_image` for an image that may be absent (None: the caller renders one instead).

    A link counts as present even when broken, so a dangling link fails its record rather than being
    replaced silently by a rendering."""
    candidate = root / relative
    try:
        present = candidate.is_symlink() or candidate.exists()
    except OSError as ex:  # an unreadable folder on the way
        raise ref.error(field, f"image path {relative[:80]!r} unusable: {ex.strerror or ex}") from None
    return resolve_image(root, relative, ref, field) if present else None


def input_hash(text: str, image: Path | None, ref: RecordRef, field: str = "image") -> str:
    """SHA-256 over the text and the image bytes a sample shows the model.

    Reading the image is the first time its bytes are touched: an unreadable file fails this record only."""
    digest = hashlib.sha256(text.encode("utf-8"))
    if image is not None:
        try:
            data = image.read_bytes()
        except OSError as ex:
            raise ref.error(field, f"image file {str(image)[:200]} unreadable: {ex.strerror or ex}") from None
        digest.update(b"\x00image\x00")
        digest.update(data)
    return digest.hexdigest()


def source_metadata(ref: RecordRef, image_field: str = "image") -> dict[str, Any]:
    return {"source_file": str(ref.file), "source_record": ref.label, "image_field": image_field}


def broken_sample(sample_id: str | int, error: DataError, metadata: dict[str, Any]) -> Sample:
    """A sample that raises `error` when it runs (see `check_sample`)."""
    return Sample(
        id=sample_id,
        input=image_prompt(None, "(record could not be loaded)"),
        metadata={**metadata, LOAD_ERROR_KEY: str(error)},
    )


def unique_ids(samples: list[Sample]) -> list[Sample]:
    """Keep the first sample of each id; a later one with the same id fails on its own, under a new id."""
    seen: dict[object, str] = {}
    out: list[Sample] = []
    for sample in samples:
        meta = dict(sample.metadata or {})
        where = str(meta.get("source_record", "?"))
        if sample.id in seen:
            problem = f"duplicate id {sample.id!r} (first at record {seen[sample.id]})"
            if LOAD_ERROR_KEY in meta:  # a broken record keeps its own error too
                problem += f"; and: {meta[LOAD_ERROR_KEY]}"
            error = DataError(meta.get("source_file", "?"), where, "id", problem)
            new_id = f"{sample.id}#duplicate-{len(out)}"
            while new_id in seen:
                new_id += "'"
            sample = broken_sample(new_id, error, meta)
        seen[sample.id] = where
        out.append(sample)
    return out
