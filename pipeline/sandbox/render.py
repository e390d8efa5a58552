"""Real, decodable images, fast: the prompt's text over a colour field derived from it.

    data = render_image(ImageSpec(...), thumbnails)    # bytes of a JPG, PNG or WEBP
    MIME_TYPES["PNG"]                                   # "image/png"

The same spec always gives the same bytes, so an image is a pure function of its task.
"""

from __future__ import annotations

import hashlib
import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = ["EXTENSIONS", "MIME_TYPES", "ImageSpec", "decode_reference", "render_image"]

MIME_TYPES = {"JPG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXTENSIONS = {"JPG": "jpg", "PNG": "png", "WEBP": "webp"}
_PIL_FORMATS = {"JPG": "JPEG", "PNG": "PNG", "WEBP": "WEBP"}
_THUMB = 160
_MAX_TEXT_LINES = 14


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """Everything an image is rendered from."""

    task_uuid: str
    index: int
    prompt: str
    width: int
    height: int
    output_format: str
    output_quality: int
    transparent: bool = False


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _colour(prompt: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


def _ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def _draw_text(draw: ImageDraw.ImageDraw, spec: ImageSpec, ink: tuple[int, int, int]) -> None:
    size = max(12, spec.width // 32)
    columns = max(10, int(spec.width / (size * 0.6)) - 4)
    lines = textwrap.wrap(spec.prompt, columns)[:_MAX_TEXT_LINES]
    draw.multiline_text((size, size * 3), "\n".join(lines), font=_font(size), fill=ink, spacing=size // 3)
    header = f"sandbox {spec.task_uuid} #{spec.index}  {spec.width}x{spec.height} {spec.output_format}"
    draw.text((size, size), header, font=_font(max(10, size // 2)), fill=ink)


def _paste_thumbnails(image: Image.Image, thumbnails: list[Image.Image | None]) -> None:
    draw = ImageDraw.Draw(image)
    x, y = 16, image.height - _THUMB - 16
    for thumb in thumbnails:
        if x + _THUMB > image.width:
            break
        if thumb is None:  # a URL reference: not fetched, shown as a frame
            draw.rectangle((x, y, x + _THUMB, y + _THUMB), outline=(128, 128, 128), width=4)
        else:
            image.paste(thumb.convert(image.mode), (x, y))
        x += _THUMB + 8


def decode_reference(data: bytes) -> Image.Image | None:
    """A thumbnail of an uploaded or inline reference image, or None if it does not decode."""
    try:
        with Image.open(io.BytesIO(data)) as source:
            source.draft("RGB", (_THUMB, _THUMB))  # JPEG: decode at a reduced scale, much faster
            return ImageOps.contain(source.convert("RGB"), (_THUMB, _THUMB))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def render_image(spec: ImageSpec, thumbnails: Sequence[Image.Image | None] = ()) -> bytes:
    """Encode the image of ``spec`` (with the references' thumbnails along the bottom)."""
    colour = _colour(spec.prompt)
    mode = "RGBA" if spec.transparent and spec.output_format != "JPG" else "RGB"
    image = Image.new(mode, (spec.width, spec.height), colour)
    if mode == "RGBA":  # a transparent margin shows the background was honoured
        image.paste((0, 0, 0, 0), (0, 0, spec.width, 8))
    _draw_text(ImageDraw.Draw(image), spec, _ink(colour))
    _paste_thumbnails(image, list(thumbnails))
    out = io.BytesIO()
    pil_format = _PIL_FORMATS[spec.output_format]
    if pil_format == "PNG":
        image.save(out, pil_format, compress_level=1)
    elif pil_format == "WEBP":
        image.save(out, pil_format, quality=spec.output_quality, method=0)
    else:
        image.save(out, pil_format, quality=spec.output_quality)
    return out.getvalue()
