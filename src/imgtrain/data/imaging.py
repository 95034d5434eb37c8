"""Decoding one image file: validation, and the one RGB conversion used everywhere."""

from __future__ import annotations

import functools
import io
import math
import os
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:
    import torch

#: HEIF / HEIC, the iPhone's default format: decoded by pillow-heif (libheif), an optional dependency.
HEIF_EXTENSIONS = frozenset({".heic", ".heif"})
HEIF_INSTALL = "pip install 'imgtrain[heic]'"
IMAGE_EXTENSIONS = (
    frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}) | HEIF_EXTENSIONS
)
#: The only Pillow decoders ever used, whatever a file's name or bytes claim: EPS (Ghostscript), PDF, and
#: Pillow's other decoders are never reached (PPM also reads PGM). HEIF files go to pillow-heif's alone.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "PPM", "TIFF", "WEBP")
#: The major brands of the `ftyp` box that starts a HEIF file (ISO/IEC 23008-12): HEVC stills and sequences.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"})

#: Images with more pixels than this are refused as possible decompression bombs
#: (Pillow's own warning threshold: about 9,500 x 9,500).
MAX_IMAGE_PIXELS = 89_478_485
#: No accepted image file is near this; /dev/zero or a huge file named .png is refused before reading.
MAX_FILE_BYTES = 1 << 30

_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}


class BadImage(Exception):
    """An image file that cannot be used; the message says why."""


class ImageTooLarge(BadImage):
    """An image over the pixel limit, or a decompression bomb: readable, but refused for its size."""


class ImageTooSmall(BadImage):
    """An image the transformation leaves smaller than the network can take (its pooling would leave nothing)."""


class MissingDecoder(BadImage):
    """A HEIF image while pillow-heif, its decoder, is not installed."""


def is_heif(data: bytes) -> bool:
    """Whether the bytes start as a HEIF file does (an `ftyp` box with a HEIF brand), whatever the file's name."""
    return data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS


@functools.cache
def heif_decoder() -> bool:
    """Whether pillow-heif is installed; the first call in a process registers its opener with Pillow."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def is_image_name(name: str) -> bool:
    """True when the file name has one of the accepted image extensions, in any case."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def open_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode image bytes fully, refusing empty, truncated, non-image and oversized inputs."""
    img = _checked_header(data, max_pixels)
    _load(img)
    return img


def open_reduced(
    data: bytes, short_side: int, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode image bytes for a resize of the short side to `short_side`; also return the full upright size.

    A JPEG is decoded at the smallest DCT scale (1/2, 1/4 or 1/8: Pillow's draft mode) that keeps its short
    side at least `short_side` long: about 3x faster for a 12-megapixel photo resized to 256, and every byte
    of the file is still read and checked. Other formats, and progressive JPEGs, decode in full.
    """
    img = _checked_header(data, max_pixels)
    width, height = img.size
    if img.format == "JPEG" and min(width, height) >= 2 * short_side:
        scale = short_side / min(width, height)
        img.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
    _load(img)  # before EXIF: reading a PNG's EXIF loads the image, which must fail here, as BadImage
    try:
        turned = img.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    except Exception:  # unreadable EXIF: to_rgb names the problem
        turned = False
    return img, (height, width) if turned else (width, height)


def header_size(data: bytes) -> tuple[int, int]:
    """An image's (width, height) read from its header, nothing decoded; BadImage as `open_image` raises it."""
    return _checked_header(data, MAX_IMAGE_PIXELS).size


def _checked_header(data: bytes, max_pixels: int) -> Image.Image:
    """The opened image, its header checked (nothing decoded yet)."""
    if not data:
        raise BadImage("empty file")
    formats: tuple[str, ...] = IMAGE_FORMATS
    if is_heif(data):  # pillow-heif is imported only when a HEIF file comes
        if not heif_decoder():
            raise MissingDecoder(f"a HEIF (HEIC) image, and its decoder pillow-heif is not installed: {HEIF_INSTALL}")
        formats = ("HEIF",)
    try:
        with warnings.catch_warnings():  # our own limit below refuses these images anyway
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image is a possible decompression bomb ({exc})") from None
    except Exception as exc:  # Pillow raises many kinds for garbage input
        raise BadImage(f"not a readable image ({type(exc).__name__}: {exc})") from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise BadImage(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (a decompression bomb, or an image to downscale first)"
        )
    return img


def _load(img: Image.Image) -> None:
    try:
        img.load()
    except Exception as exc:
        raise BadImage(f"image data is corrupt or truncated ({type(exc).__name__}: {exc})") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Return `img` upright and in 8-bit RGB, the same way for every source format.

    EXIF orientation is applied; transparency is composited on white; 16-bit and
    32-bit grayscale are scaled to 8 bits instead of clipped.
    """
    if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        # in the narrow types, in place: three int64 copies took 24 bytes a pixel where the limits assume 3
        values = np.asarray(img)
        if values.dtype.kind == "u" and values.dtype.itemsize == 2:
            narrow = (values // 257).astype(np.uint8)
        else:
            wide = np.array(values, dtype=np.int32)
            np.clip(wide, 0, 65535, out=wide)
            wide //= 257
            narrow = wide.astype(np.uint8)
        return Image.fromarray(narrow, "L").convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(img, dtype=np.float64))
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def decode_rgb(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode bytes into an upright 8-bit RGB image, or raise BadImage saying why."""
    img = open_image(data, max_pixels)
    try:
        return to_rgb(img)
    except Exception as exc:
        raise BadImage(f"cannot convert {img.mode} image to RGB ({type(exc).__name__}: {exc})") from None


def read_image_file(path: str | Path) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES; BadImage for a device, FIFO or socket (never
    read: /dev/zero would fill memory, a FIFO would hang), a folder, or a file too large to be an image."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting for a writer
    except OSError as exc:
        raise BadImage(f"cannot read file ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadImage("not a regular file (a device, FIFO, socket or folder)")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageTooLarge(f"the file is {info.st_size:,} bytes; at most {MAX_FILE_BYTES:,} are read")
        try:
            return f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise BadImage(f"cannot read file ({exc.strerror or exc})") from None


def load_rgb(path: Path) -> Image.Image:
    """Read an image file as upright 8-bit RGB (see `to_rgb`)."""
    return decode_rgb(read_image_file(path))


def rgb_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB image as the uint8 CHW tensor the transformations take."""
    import torch  # here, not at the top: convert, split and audit read images without loading torch

    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()
