"""Shared set-up for the benchmark scripts: a SIUO-format copy of any size, with one shared image."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import vlmguard_eval.models.providers  # noqa: E402, F401  (registers hfvlm/ and scripted/ without an install)


def siuo_copy(root: Path, items: int, image_bytes: bytes | None = None) -> Path:
    """`items` SIUO gen records over one image (the demo's first picture unless `image_bytes`)."""
    from vlmguard_eval.data.demo import demo_records, draw_scene

    base = demo_records()
    (root / "images").mkdir(parents=True, exist_ok=True)
    if image_bytes is None:
        draw_scene(base[0]["scene"]).save(root / "images" / "shared.png")
    else:
        (root / "images" / "shared.png").write_bytes(image_bytes)
    keys = ("question", "category", "safety_warning", "reference_answer")
    records = [
        {**{k: base[i % len(base)][k] for k in keys}, "question_id": i, "image": "shared.png"} for i in range(items)
    ]
    (root / "siuo_gen.json").write_text(json.dumps(records))
    return root
