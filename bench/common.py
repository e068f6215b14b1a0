"""Shared set-up for the benchmark scripts: a SIUO-format copy of any size, with one shared image, and random-weight
checkpoints of real shapes, built once into a git-ignored folder and reused."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import vlmguard_eval.models.providers  # noqa: E402, F401  (registers hfvlm/ and scripted/ without an install)

# built checkpoints live here (`.cache/` is git-ignored): a 7B takes a minute or two to write and 14 GB of disk, so
# a lent GPU machine builds it once and every later call (and every bench) reuses it
MODELS_DIR = REPO / ".cache" / "bench-models"
RECIPE_FILE = "bench-recipe.json"  # written last: a folder without it (a build cut short) is never reused
BUILD_VERSION = 1  # raise when the way a checkpoint is built changes


def corpus() -> list[str]:
    """Text to train a shaped model's tokenizer on, so prompts get realistic token counts."""
    files = [REPO / "README.md", REPO / "FIDELITY.md", *sorted((REPO / "vlmguard_eval").rglob("*.txt"))]
    return [line for f in files if f.is_file() for line in f.read_text().splitlines() if line.strip()]


def recipe(shape: str) -> dict:
    """What a checkpoint of `shape` is built from: a folder holding another recipe is rebuilt. The tokenizer's
    corpus (this repository's text) is left out, so editing the README does not cost a 7B rebuild."""
    from importlib.metadata import version

    from vlmguard_eval.models.tiny import CLIP_L14_336, TEXT_SHAPES, TINY_LAYERS

    if shape == "tiny":
        model = {"tiny": TINY_LAYERS}
    elif shape in TEXT_SHAPES:
        model = {"text": TEXT_SHAPES[shape], "vision": CLIP_L14_336, "vocab_size": 32064, "dtype": "bfloat16"}
    else:
        raise SystemExit(f"unknown shape {shape!r}: tiny or one of {', '.join(TEXT_SHAPES)}")
    return {"version": BUILD_VERSION, "shape": shape, **model, "transformers": version("transformers")}


def build(shape: str, models_dir: Path = MODELS_DIR, device: str | None = None) -> str:
    """A random-weight checkpoint of `shape` (models/tiny.py: TEXT_SHAPES, or `tiny`: the test VLM) at
    models_dir/shape: reused when its recipe matches, else built (on the GPU if any) into a folder of its own
    and moved into place."""
    from vlmguard_eval.models.tiny import build_shaped_vlm, build_tiny_vlm

    path, wanted = Path(models_dir) / shape, recipe(shape)
    marker = path / RECIPE_FILE
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        print(f"reusing random-weight {shape} at {path}", flush=True)
        return str(path)
    started = time.perf_counter()
    for stale in Path(models_dir).glob(f".{shape}.building-*"):  # a cut build's: up to 14 GB of disk each
        pid = stale.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(models_dir) / f".{shape}.building-{os.getpid()}"
    if shape == "tiny":
        build_tiny_vlm(scratch)
    else:
        import torch

        build_shaped_vlm(scratch, shape, corpus(), device=device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.cuda.empty_cache()  # the model was built on the GPU and is gone: give its memory back
    (scratch / RECIPE_FILE).write_text(json.dumps(wanted))
    shutil.rmtree(path, ignore_errors=True)  # another recipe's, or a build cut short
    try:
        os.replace(scratch, path)
    except OSError:  # another process moved its build in meanwhile: use one, drop the other
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"built random-weight {shape} in {time.perf_counter() - started:.1f} s at {path}", flush=True)
    return str(path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


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
