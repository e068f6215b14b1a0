"""Chat messages every layer builds: one user turn of images then text, and images decoded from data URIs.

The loaders, judges, defenses and the local provider all build or read messages through here, so
the provider needs nothing from the benchmark loaders.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from pathlib import Path

from inspect_ai.model import ChatMessage, ChatMessageUser, ContentImage, ContentText
from inspect_ai.solver import TaskState
from PIL import Image


def user_turn(images: list[ContentImage], text: str) -> list[ChatMessage]:
    """A one-message conversation: a user turn with `images`, then `text` (benchmarks, defenses, judges)."""
    return [ChatMessageUser(content=[*images, ContentText(text=text)])]


def image_prompt(image: Path | str | None, text: str) -> list[ChatMessage]:
    """The single user turn every benchmark here uses: the image (file path), then the text."""
    return user_turn([] if image is None else [ContentImage(image=str(image))], text)


# Bounds every image must keep before any decoder or processor sees it, checked from the header alone.
# Pillow warns above ~89 Mpx and refuses above twice that; we refuse at the warning: no VLM benchmark
# image is that large, and a decompression bomb must not reach a model's processor. Pixels alone are not
# enough: a processor that scales the short side up to its input size turns a 1 x 100,000 strip into
# gigabytes, so the longest side and the aspect ratio are bounded too (the local provider also checks
# the size its own processor would produce, see models.local_vlm).
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS
MAX_IMAGE_SIDE = 16_384
MAX_ASPECT_RATIO = 25.0


def check_image_size(width: int, height: int) -> None:
    """Raise ValueError unless `width` x `height` is within the bounds above."""
    if width < 1 or height < 1:
        raise ValueError(f"image has no pixels ({width}x{height})")
    if max(width, height) > MAX_IMAGE_SIDE:
        raise ValueError(f"image side too long: {width}x{height} (longest side limit {MAX_IMAGE_SIDE})")
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"image refused as a decompression bomb: {width}x{height} (limit {MAX_IMAGE_PIXELS:,} px)")
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        limit = f"{MAX_ASPECT_RATIO:.0f}:1"
        raise ValueError(f"image aspect ratio {ratio:.0f}:1 too extreme: {width}x{height} (limit {limit})")


def _open_checked(source: io.BytesIO | Path) -> Image.Image:
    """Open an image and check its size from the header, before any pixel is decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(source)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as ex:
            raise ValueError(f"image refused as a decompression bomb: {ex}") from None
        except Exception as ex:  # Pillow raises many types for corrupt data
            raise ValueError(f"unreadable image: {type(ex).__name__}: {ex}") from None
    check_image_size(*image.size)
    return image


def check_image_file(path: Path) -> None:
    """Check an image file's size from its header (no decoding): ValueError if it is out of bounds."""
    _open_checked(path).close()


def decode_image(uri: str) -> Image.Image:
    """Decode a data URI into a fully loaded RGB image, refusing images outside the bounds above."""
    if not uri.startswith("data:"):
        raise ValueError(f"expected a data URI, got {uri[:40]!r}")
    try:
        payload = base64.b64decode(uri.split(",", 1)[1], validate=False)
    except (IndexError, binascii.Error) as ex:
        raise ValueError(f"bad base64 image data: {ex}") from None
    return _load_rgb(payload)


def read_image(path: Path | str) -> Image.Image:
    """A file's image exactly as `decode_image` gives it from a data URI of the same bytes (training reads the
    files its examples name; inference receives them as data URIs): same bounds, same RGB conversion."""
    try:
        payload = Path(path).read_bytes()
    except OSError as ex:
        raise ValueError(f"cannot read image file: {ex}") from None
    return _load_rgb(payload)


def _load_rgb(payload: bytes) -> Image.Image:
    """Image bytes decoded into a fully loaded RGB image (an alpha channel or palette is dropped by PIL's
    `convert`, never composited; no EXIF rotation), refusing images outside the bounds above."""
    image = _open_checked(io.BytesIO(payload))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image.load()
        except Exception as ex:  # Pillow raises many types for corrupt data
            raise ValueError(f"unreadable image: {type(ex).__name__}: {ex}") from None
    return image.convert("RGB") if image.mode != "RGB" else image


def user_images(state: TaskState) -> list[ContentImage]:
    """The images of the user's turn, in order (data URIs once the sample has started)."""
    content = state.user_prompt.content
    return [] if isinstance(content, str) else [c for c in content if isinstance(c, ContentImage)]


def input_images(state: TaskState) -> list[ContentImage]:
    """The images of the sample's original input (a defense may rewrite the live messages)."""
    if isinstance(state.input, str):
        return []
    return [c for m in state.input if not isinstance(m.content, str) for c in m.content if isinstance(c, ContentImage)]
