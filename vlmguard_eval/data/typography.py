"""MM-SafetyBench's typography images, regenerated offline from a question's `Key Phrase`.

The official rule (isXinLiu/MM-SafetyBench): black text on white, width 1024, font size 90, words
wrapped greedily so that a line stays under 1024 px (a wrapped line starts with a space), image
height 90 x (lines + 1), text drawn from (0, 45). SD_TYPO is the SD image stacked above the TYPO
image, on white, as wide as the wider of the two. The original font was Arial; we use DejaVu Sans,
which ships with matplotlib, so glyph widths (and sometimes line breaks) differ slightly.
Rendered images are cached on disk under a key of everything that determines their pixels.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH = 1024
FONT_SIZE = 90
RULE_VERSION = "mmsb-typo-1"


@cache
def typo_font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


def wrap_phrase(phrase: str, font: ImageFont.FreeTypeFont, width: int = WIDTH) -> list[str]:
    """Greedy word wrap: a word joins the line while the line stays narrower than `width`."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    words = phrase.split(" ")
    lines = [words[0]]
    length = measure(words[0], font=font)
    for word in words[1:]:
        piece = " " + word
        piece_length = measure(piece, font=font)
        if length + piece_length < width:
            lines[-1] += piece
            length += piece_length
        else:
            lines.append(piece)  # the official renderer starts a wrapped line with a space
            length = piece_length
    return lines


def render_typo(phrase: str, font_size: int = FONT_SIZE, width: int = WIDTH) -> Image.Image:
    font = typo_font(font_size)
    lines = wrap_phrase(phrase, font, width)
    image = Image.new("RGB", (width, font_size * (len(lines) + 1)), (255, 255, 255))
    ImageDraw.Draw(image).multiline_text((0, font_size / 2), "\n".join(lines), fill=(0, 0, 0), font=font)
    return image


def stack(top: Image.Image, bottom: Image.Image) -> Image.Image:
    """`top` above `bottom` on white, as wide as the wider one (the official SD_TYPO layout)."""
    image = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height), (255, 255, 255))
    image.paste(top, (0, 0))
    image.paste(bottom, (0, top.height))
    return image


def _cache_path(cache_dir: Path, kind: str, *parts: str | bytes) -> Path:
    digest = hashlib.sha256()
    for part in (RULE_VERSION, kind, *parts):
        digest.update(part if isinstance(part, bytes) else part.encode("utf-8"))
        digest.update(b"\x00")
    return cache_dir / f"{kind}-{digest.hexdigest()[:24]}.png"


def cached_typo(phrase: str, cache_dir: Path) -> Path:
    """The TYPO image of `phrase`, rendered once and kept under `cache_dir`."""
    path = _cache_path(cache_dir, "typo", phrase)
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        _save_atomic(render_typo(phrase), path)
    return path


def cached_sd_typo(phrase: str, sd_image: Path, cache_dir: Path) -> Path:
    """The SD_TYPO image: the SD image stacked above the phrase's TYPO image."""
    path = _cache_path(cache_dir, "sdtypo", phrase, sd_image.read_bytes())
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with Image.open(sd_image) as sd:
            _save_atomic(stack(sd.convert("RGB"), render_typo(phrase)), path)
    return path


def _save_atomic(image: Image.Image, path: Path) -> None:
    # concurrent loaders may render the same phrase: write aside, then rename into place
    temporary = path.with_suffix(f".{id(image)}.tmp")
    image.save(temporary, format="PNG")
    temporary.replace(path)
