"""Image handling cost: a 4,000 x 4,000 image through the pipeline, and log bytes per sample.

    python bench/image_cost.py

1. The local provider decodes the image and the processor resizes it, once per model call (we do
   not resize it ourselves first): prints the processor's output size and the time per call.
2. Inspect stores each image once per log (attachments, by content hash), however many messages
   carry it: prints log bytes per sample for `vlmguard` with 3 epochs (the image goes to the
   rewriter, the target and two judge calls), against the image's own size.
"""

from __future__ import annotations

import asyncio
import base64
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from common import siuo_copy


def big_image() -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:4000, 0:4000]
    pixels = np.stack([(x // 16) % 256, (y // 16) % 256, ((x + y) // 32) % 256], axis=-1).astype(np.uint8)
    pixels = np.clip(pixels + rng.integers(0, 8, pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import ChatMessageUser, ContentImage, ContentText, GenerateConfig, get_model

    from solvers import vlmguard
    from tasks.siuo import siuo
    from vlmguard_eval.models.tiny import build_tiny_vlm
    from vlmguard_eval.rewriter.format import RewriterOutput

    image = big_image()
    print(f"image: 4000x4000 JPEG, {len(image) / 1e6:.2f} MB")
    tiny = build_tiny_vlm(Path(tempfile.mkdtemp()) / "tiny")
    model = get_model(f"hfvlm/{tiny}")
    uri = "data:image/jpeg;base64," + base64.b64encode(image).decode()
    vlm = model.api.vlm
    question = [ChatMessageUser(content=[ContentImage(image=uri), ContentText(text="What is this?")])]
    prompt, images = vlm.render(question)
    pixels = vlm.model_inputs([prompt], [images])["pixel_values"]
    print(f"processor output: pixel_values {tuple(pixels.shape)}")

    async def call() -> float:
        start = time.perf_counter()
        await model.generate(
            [ChatMessageUser(content=[ContentImage(image=uri), ContentText(text="Hi")])],
            config=GenerateConfig(max_tokens=1),
        )
        return time.perf_counter() - start

    asyncio.run(call())
    seconds = min(asyncio.run(call()) for _ in range(3))
    print(f"one model call (decode + processor resize + 1 token): {seconds * 1000:.0f} ms")

    data = siuo_copy(Path(tempfile.mkdtemp()), 6, image_bytes=image)
    rewrite = RewriterOutput("Together: fine.", "Describe the picture.").render()
    log_dir = Path(tempfile.mkdtemp())
    judge = get_model("scripted/j", responder=lambda m, c: "Verdict: SAFE")
    (log,) = inspect_eval(
        siuo(data_dir=str(data)),
        solver=vlmguard(),
        model="scripted/echo",
        model_roles={"grader": judge, "rewriter": get_model("scripted/rw", responder=lambda m, c: rewrite)},
        log_dir=str(log_dir),
        display="none",
    )
    size = sum(p.stat().st_size for p in log_dir.glob("*.eval"))
    samples = len(log.samples)
    print(
        f"log: {size / 1e6:.2f} MB for {samples} samples (6 items x 3 epochs, 4 image-carrying calls each): "
        f"{size / samples / 1e3:.0f} kB per sample; the image itself is {len(image) / 1e3:.0f} kB"
    )


if __name__ == "__main__":
    main()
