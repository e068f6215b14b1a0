"""The Task setup step that turns bad data into a clear, per-sample error.

It runs before any defense (Inspect keeps `Task.setup` when `--solver` replaces the chain), so
every defense, ours or a user's, sees only samples whose text and images are usable.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from inspect_ai.model import ContentImage
from inspect_ai.solver import Generate, Solver, TaskState, solver
from PIL import Image

from .common import LOAD_ERROR_KEY, DataError

# Pillow warns above ~89 Mpx and refuses above twice that; we refuse at the warning: no VLM
# benchmark image is that large, and a decompression bomb must not reach a model's processor.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS


class SampleDataError(RuntimeError):
    """Raised inside a sample whose record or image is unusable."""


def decode_image(uri: str) -> Image.Image:
    """Decode a data URI into a fully loaded RGB image, refusing decompression bombs."""
    if not uri.startswith("data:"):
        raise ValueError(f"expected a data URI, got {uri[:40]!r}")
    try:
        payload = base64.b64decode(uri.split(",", 1)[1], validate=False)
    except (IndexError, binascii.Error) as ex:
        raise ValueError(f"bad base64 image data: {ex}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(payload))
            image.load()
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as ex:
            raise ValueError(f"image refused as a decompression bomb: {ex}") from None
        except Exception as ex:  # Pillow raises many types for corrupt data
            raise ValueError(f"unreadable image: {type(ex).__name__}: {ex}") from None
    return image.convert("RGB") if image.mode != "RGB" else image


@solver
def check_sample() -> Solver:
    """Raise a located error for samples whose record or images cannot be used."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        meta = state.metadata
        if LOAD_ERROR_KEY in meta:
            raise SampleDataError(meta[LOAD_ERROR_KEY])
        for message in state.messages:
            if isinstance(message.content, str):
                continue
            for part in message.content:
                if isinstance(part, ContentImage):
                    try:
                        decode_image(part.image)
                    except ValueError as ex:
                        error = DataError(
                            meta.get("image_path", meta.get("source_file", "?")),
                            meta.get("source_record", state.sample_id),
                            meta.get("image_field", "image"),
                            str(ex),
                        )
                        raise SampleDataError(str(error)) from None
        return state

    return solve
