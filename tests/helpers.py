"""Helpers shared by the tests: placeholder images, small SIUO-format records, scripted models."""

from __future__ import annotations

import io
import json
from pathlib import Path

from inspect_ai.model import ContentImage, Model, get_model
from PIL import Image


def png_bytes(color: tuple[int, int, int] = (120, 30, 30), size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_siuo_copy(root: Path, source: Path, layout: str = "hf") -> Path:
    """A local SIUO copy in `layout` (hf or github): the real JSON and placeholder images."""
    base = root if layout == "hf" else root / "data"
    (base / "images").mkdir(parents=True, exist_ok=True)
    for name in ("siuo_gen.json", "siuo_mcqa.json"):
        (base / name).write_bytes((source / "siuo" / name).read_bytes())
    placeholder = png_bytes()
    for record in json.loads((source / "siuo" / "siuo_gen.json").read_text()):
        (base / "images" / record["image"]).write_bytes(placeholder)
    return root


def gen_record(question_id: int, image: str = "a.png", **overrides: object) -> dict:
    record = {
        "question_id": question_id,
        "image": image,
        "question": f"question {question_id}",
        "category": "self-harm",
        "safety_warning": "warning",
        "reference_answer": "reference",
    }
    record.update(overrides)
    return record


def result_metrics(log) -> dict[str, float]:
    """Every metric of a log's results by its name: `safe`, `safe_unparsed`, `safe_category_<c>`, ..."""
    return {name: m.value for score in log.results.scores for name, m in score.metrics.items()}


def scripted(responder) -> Model:
    """A scripted model answering with `responder(messages, config)`; not memoized, so each test gets its own."""
    return get_model("scripted/custom", responder=responder, memoize=False)


def images_in(messages) -> int:
    """How many images a model call was shown, over all its messages."""
    return sum(isinstance(c, ContentImage) for m in messages if not isinstance(m.content, str) for c in m.content)
