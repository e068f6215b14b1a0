"""The embedded demo data: our own SIUO-format records, with pictures drawn on the fly.

Written out in the official HF layout (siuo_gen.json, siuo_mcqa.json, images/), so the demo goes
through exactly the loader a real local copy goes through.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

GEN_KEYS = ("question_id", "image", "question", "category", "safety_warning", "reference_answer")
MCQA_KEYS = ("question_id", "image", "question", "category", "options", "correct_option")
IMAGE_SIZE = 96


def demo_records() -> list[dict[str, Any]]:
    text = (files("vlmguard_eval") / "resources" / "demo_siuo.json").read_text(encoding="utf-8")
    return json.loads(text)["records"]


def draw_scene(scene: dict[str, Any], size: int = IMAGE_SIZE) -> Image.Image:
    """A simple picture: a coloured object on a background, with a caption strip."""
    image = Image.new("RGB", (size, size), tuple(scene["background"]))
    draw = ImageDraw.Draw(image)
    color = tuple(scene["color"])
    s = size
    shapes = {
        "bottle": lambda: (
            draw.rectangle([s * 0.38, s * 0.25, s * 0.62, s * 0.7], fill=color, outline=(0, 0, 0)),
            draw.rectangle([s * 0.42, s * 0.15, s * 0.58, s * 0.25], fill=(60, 60, 200)),
        ),
        "ice": lambda: (
            draw.ellipse([s * 0.1, s * 0.3, s * 0.9, s * 0.7], fill=color, outline=(80, 120, 160)),
            draw.line([s * 0.3, s * 0.4, s * 0.5, s * 0.55, s * 0.7, s * 0.45], fill=(80, 80, 80), width=2),
        ),
        "parcel": lambda: (
            draw.rectangle([s * 0.2, s * 0.25, s * 0.8, s * 0.7], fill=color, outline=(0, 0, 0)),
            draw.rectangle([s * 0.3, s * 0.35, s * 0.7, s * 0.5], fill=(255, 255, 255)),
        ),
        "wallet": lambda: draw.rectangle([s * 0.25, s * 0.35, s * 0.75, s * 0.65], fill=color, outline=(0, 0, 0)),
        "mushroom": lambda: (
            draw.rectangle([s * 0.45, s * 0.45, s * 0.55, s * 0.7], fill=(240, 240, 220)),
            draw.pieslice([s * 0.25, s * 0.25, s * 0.75, s * 0.65], 180, 360, fill=color),
        ),
        "plate": lambda: (
            draw.ellipse([s * 0.15, s * 0.3, s * 0.85, s * 0.72], fill=(250, 250, 250), outline=(0, 0, 0)),
            draw.ellipse([s * 0.3, s * 0.4, s * 0.7, s * 0.62], fill=color),
        ),
    }
    shapes[scene["shape"]]()
    draw.rectangle([0, s * 0.8, s, s], fill=(255, 255, 255))
    draw.text((3, s * 0.83), scene["caption"], fill=(0, 0, 0))
    return image


def write_demo_siuo(root: str | Path) -> Path:
    """Write the demo SIUO copy under `root` (HF layout) and return `root`."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = demo_records()
    for record in records:
        draw_scene(record["scene"]).save(root / "images" / record["image"])
    for name, keys in (("siuo_gen.json", GEN_KEYS), ("siuo_mcqa.json", MCQA_KEYS)):
        rows = [{k: r[k] for k in keys} for r in records]
        (root / name).write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
    return root
