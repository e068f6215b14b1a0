"""Chat messages every layer builds: one user turn of images then text, images decoded from data URIs,
and a model reply that is no reply (a served model's context overflow).

The loaders, judges, defenses and the local provider all build or read messages through here, so
the provider needs nothing from the benchmark loaders.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from pathlib import Path

from inspect_ai.model import ChatMessage, ChatMessageUser, ContentImage, ContentText, ModelOutput
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
# An image's bytes (a file, or a data URI's decoded payload) are bounded before Pillow reads them: Inspect's
# own bound on an image a provider returns is 20 MiB (inspect_ai/_util/images.py, _PROVIDER_IMAGE_MAX_BYTES,
# 0.3.285), and hosted APIs take no larger image; no benchmark image here comes near it.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
# Only the raster formats Inspect itself recognises in a provider's image (PNG, JPEG, GIF, WebP, BMP:
# `_sniff_image_mime_type`, same file) are opened; Pillow's other plugins are never tried. Some run
# external programs (EPS runs Ghostscript on the file's PostScript) or parse rarely used formats, and a
# `.jpg` name does not stop Pillow from choosing a plugin by the bytes. Pillow's JPEG opener also reads a
# multi-picture JPEG (format "MPO", phone photos); "MPO" itself is no key Pillow accepts in `formats`.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
# Modes with more than 8 bits a channel: PIL's `convert("RGB")` clips them (a 16-bit grey PNG, `I;16`, becomes
# almost all white) rather than rescaling, and a served model's server (vLLM decodes with the same
# `convert`) would see the same clipped pixels, so there is no conversion that both sides share. 32-bit
# integer (`I`) and float (`F`) pixels have no known range to rescale from at all. They are refused by name.
HIGH_DEPTH_MODES = ("I", "F")


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


def check_image_bytes(size: int, what: str = "image") -> None:
    """Raise ValueError when an image of `size` bytes is over MAX_IMAGE_BYTES (`what`: how the message names it)."""
    if size > MAX_IMAGE_BYTES:
        raise ValueError(f"{what} has {size:,} bytes (limit {MAX_IMAGE_BYTES:,})")


def _format_name(source: io.BytesIO | Path) -> str | None:
    """The format Pillow would take these bytes for, read from their first 16 bytes by the plugins' own
    signature checks (no plugin opens them): to name a refused format."""
    if isinstance(source, Path):
        with source.open("rb") as handle:
            prefix = handle.read(16)
    else:
        prefix = source.getvalue()[:16]
    Image.init()
    for name, (_, accept) in Image.OPEN.items():
        try:
            if accept is not None and accept(prefix) is True:
                return name
        except Exception:  # a plugin's check that cannot read a short prefix is no match
            continue
    return None


def _open_checked(source: io.BytesIO | Path) -> Image.Image:
    """Open an image of an accepted format and check its size and mode from the header, before any pixel
    is decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(source, formats=IMAGE_FORMATS)
        except Image.UnidentifiedImageError:
            found = _format_name(source)
            accepted = ", ".join(IMAGE_FORMATS)
            if found in IMAGE_FORMATS:  # an accepted format's signature that its opener could not read
                raise ValueError(
                    f"unreadable image: {found} data that cannot be opened (corrupt or truncated)"
                ) from None
            if found is not None:
                raise ValueError(
                    f"image format {found} is not accepted (by its first bytes; accepted: {accepted})"
                ) from None
            raise ValueError(f"unreadable image: not a {accepted} image") from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as ex:
            raise ValueError(f"image refused as a decompression bomb: {ex}") from None
        except Exception as ex:  # Pillow raises many types for corrupt data
            raise ValueError(f"unreadable image: {type(ex).__name__}: {ex}") from None
    try:
        check_image_size(*image.size)
        if image.mode in HIGH_DEPTH_MODES or image.mode.startswith("I;"):
            raise ValueError(
                f"image mode {image.mode} ({image.format}) has more than 8 bits a channel; converting it to RGB "
                "would clip its pixels: save it as 8-bit"
            )
    except ValueError:
        image.close()
        raise
    return image


def check_image_file(path: Path) -> None:
    """Check an image file's byte size, format, mode and pixel size from its header (no decoding):
    ValueError if any is out of bounds (the caller names the file and record, as loaders do with DataError)."""
    try:
        size = path.stat().st_size
    except OSError as ex:
        raise ValueError(f"cannot read image file: {ex.strerror or ex}") from None
    check_image_bytes(size)
    _open_checked(path).close()


def check_image_data(data: bytes) -> str:
    """Check image bytes as `check_image_file` checks a file, then verify their integrity (Pillow's `verify`,
    still no pixel kept): the format name, for a file written from them."""
    check_image_bytes(len(data))
    with _open_checked(io.BytesIO(data)) as image:
        image.verify()
        return image.format or "IMG"


def decode_image(uri: str) -> Image.Image:
    """Decode a data URI into a fully loaded RGB image, refusing images outside the bounds above (the
    payload's length is checked before it is decoded)."""
    if not uri.startswith("data:"):
        raise ValueError(f"expected a data URI, got {uri[:40]!r}")
    head, comma, data = uri.partition(",")
    if not comma:
        raise ValueError(f"bad data URI: no ',' after {head[:40]!r}")
    if len(data) > 4 * ((MAX_IMAGE_BYTES + 2) // 3):  # base64 of MAX_IMAGE_BYTES, padded
        raise ValueError(f"image data URI holds more than {MAX_IMAGE_BYTES:,} bytes ({len(data):,} base64 characters)")
    try:
        payload = base64.b64decode(data, validate=False)
    except binascii.Error as ex:
        raise ValueError(f"bad base64 image data: {ex}") from None
    check_image_bytes(len(payload))
    return _load_rgb(payload)


def read_image(path: Path | str) -> Image.Image:
    """A file's image exactly as `decode_image` gives it from a data URI of the same bytes (training reads the
    files its examples name; inference receives them as data URIs): same bounds, same RGB conversion. The
    caller names the file's example (training names it by line)."""
    try:
        size = Path(path).stat().st_size
        check_image_bytes(size)
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


class ContextOverflowError(RuntimeError):
    """A model's request exceeded its context window: the server refused it and there is no reply."""

    def __init__(self, role: str, step: str, model: str, message: str) -> None:
        self.role, self.step, self.model, self.server_message = role, step, model, message
        super().__init__(
            f"{role} model {model}, step {step}: the request exceeded the model's context window, so there is "
            f"no reply to use (the server said: {message[:300]})"
        )


def context_overflow(output: ModelOutput) -> str | None:
    """The server's message when `output` is a context-window overflow instead of a reply, else None.

    Inspect's providers turn a request the server refuses as too long into an output whose text IS the
    server's error message, with stop_reason "model_length" and no usage (vllm: an HTTP 400 "maximum context
    length" or "max_tokens must be at least 1"; sglang, openai's context_length_exceeded, groq, together, ...
    likewise). Scored as an answer, that error text would be judged like the model's words. A model that
    generated until its window was full also stops with "model_length" (anthropic's
    model_context_window_exceeded, bedrock, mistral, grok), but it reports the tokens it generated: that text
    is the model's own, cut short as a `max_tokens` stop cuts it, and stays a reply. So the rule: a
    "model_length" stop with no generated tokens (no usage, or 0 output tokens) is an overflow.
    """
    if not output.choices or output.choices[0].stop_reason != "model_length":
        return None
    if output.usage is not None and output.usage.output_tokens > 0:
        return None
    return output.completion or "(no message)"
