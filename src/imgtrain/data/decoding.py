"""Image files decoded for a model: read at reduced scale when the transformation's resize shrinks them, resized
once, and kept in an on-disk cache so that later epochs read the small image instead of decoding the photo again.

A cache entry is the uint8 RGB image after the resize, exactly what decoding would give again, so a run with the
cache learns bit for bit what it learns without it. Entries are found by the file's identity (device, inode, size,
modification time), the resize and Pillow's version. Each holds a checksum of its pixels and the SHA-256 of its
source's size, first and last 64 KiB (`source_digest`): an entry copied, left or crafted under another image's key is
rebuilt, not served (docs/reliability.md says what this does and does not defend against).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL
from PIL import Image

if TYPE_CHECKING:  # torch is imported where a tensor is made: convert keeps small images without loading it
    import torch
    from torchvision.transforms import v2

from .imaging import (
    MAX_IMAGE_PIXELS,
    BadImage,
    decode_rgb,
    open_reduced,
    read_image_file,
    rgb_tensor,
    to_rgb,
)

log = logging.getLogger(__name__)

CACHE_ENV = "IMGTRAIN_CACHE_DIR"
#: Entry layout: magic (with the format version), width, height, CRC-32 of the pixels, the source's digest
#: (`source_digest`), then H x W x 3 bytes.
MAGIC = b"imgtrain-rgb\x00\x02"
_HEADER = struct.Struct("<14sIII32s")
#: How much of each end of a source file its digest reads: a cache hit reads at most twice this of the source.
DIGEST_BLOCK = 64 * 1024
#: Only images with at least this many times the resized image's pixels are cached: below it, decoding the file
#: again costs about as much as reading the entry.
MIN_CACHE_RATIO = 4


class ImageChanged(BadImage):
    """The file is not the image the index describes: it was replaced after convert."""


def check_indexed_size(actual: tuple[int, int], expected: tuple[int, int] | None) -> None:
    """ImageChanged when an image's (width, height) is not the one its image directory's index recorded (training
    and scoring plan batches and bound memory from the indexed sizes, so a file replaced after convert must not
    slip through); nothing when `expected` is None."""
    if expected is not None and tuple(actual) != tuple(expected):
        raise ImageChanged(
            f"it is {actual[0]}x{actual[1]} pixels but the image directory's index says "
            f"{expected[0]}x{expected[1]}: the file changed after convert; run `imgtrain convert` again"
        )


def default_cache_dir() -> Path:
    """$IMGTRAIN_CACHE_DIR, else imgtrain/decoded under $XDG_CACHE_HOME (~/.cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "imgtrain" / "decoded"


def resized_size(size: int, width: int, height: int) -> tuple[int, int]:
    """(width, height) after torchvision's Resize(size): the short side becomes `size`, the long one follows."""
    short, long = sorted((width, height))
    new_short, new_long = size, int(size * long / max(short, 1))
    return (new_short, new_long) if width <= height else (new_long, new_short)


def interpolation(size: int) -> v2.InterpolationMode:
    """Bilinear, except for a 1-pixel target: torch 2.14's uint8 bilinear kernel fails an internal assert making 1x1."""
    from torchvision.transforms import v2

    return v2.InterpolationMode.BILINEAR if size > 1 else v2.InterpolationMode.NEAREST


def decode_resized(
    data: bytes,
    size: int,
    expected: tuple[int, int] | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    check: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Image bytes as an upright uint8 CHW tensor whose short side is resized to `size`.

    `expected` is the (width, height) an image directory's index recorded: ImageChanged when the file differs.
    `check` is called with the full (width, height) before anything is resized, to refuse sizes the resize would
    blow up.
    """
    img, full = open_reduced(data, size, max_pixels)
    if check is not None:
        check(*full)
    check_indexed_size(full, expected)
    return resize_exact(rgb_of(img), size, full)


def rgb_of(img: Image.Image) -> torch.Tensor:
    """A decoded image as an upright RGB uint8 CHW tensor, or BadImage saying why it cannot be converted."""
    return rgb_tensor(rgb_image(img))


def rgb_image(img: Image.Image) -> Image.Image:
    """A decoded image upright in 8-bit RGB, or BadImage saying why it cannot be converted."""
    try:
        return to_rgb(img)
    except Exception as exc:
        raise BadImage(f"cannot convert {img.mode} image to RGB ({type(exc).__name__}: {exc})") from None


def resize_exact(tensor: torch.Tensor, size: int, full: tuple[int, int]) -> torch.Tensor:
    """An image, decoded in full or at reduced scale, resized to exactly the size torchvision's Resize(size) makes of
    its full (width, height): the same size either way, so batch shapes never depend on how it was decoded."""
    from torchvision.transforms import v2

    width, height = resized_size(size, *full)
    return v2.functional.resize(tensor, [height, width], interpolation(size), antialias=True)


def decode_full(
    data: bytes, expected: tuple[int, int] | None = None, max_pixels: int = MAX_IMAGE_PIXELS
) -> torch.Tensor:
    """Image bytes as an upright uint8 CHW tensor at full size (ImageChanged as in `decode_resized`)."""
    img = decode_rgb(data, max_pixels)
    check_indexed_size(img.size, expected)
    return rgb_tensor(img)


@dataclass(frozen=True)
class DecodedCache:
    """Resized images on disk, one file per image and resize; written atomically, checked on every read."""

    root: Path

    def worth_keeping(self, size: int, width: int, height: int) -> bool:
        """Whether an image of width x height is cached for a resize to `size`: only if it shrinks enough."""
        out_w, out_h = resized_size(size, width, height)
        return width * height >= MIN_CACHE_RATIO * out_w * out_h

    def keep(self, path: Path, data: bytes, size: int, tensor: torch.Tensor) -> None:
        """Store `tensor`, the file `path` (whose bytes are `data`) decoded and resized to `size`, as its entry
        (convert does this)."""
        with contextlib.suppress(OSError):
            self._store(self._entry(path, size), source_digest(data), tensor)

    def load(self, path: Path, size: int, width: int, height: int) -> torch.Tensor:
        """The image file `path` (indexed as width x height) resized to `size`: from the cache, or decoded and
        stored when it is worth keeping."""
        if not self.worth_keeping(size, width, height):
            return decode_resized(read_image_file(path), size, (width, height))
        try:
            entry, digest = self._entry(path, size), _file_digest(path)
        except OSError:
            return decode_resized(read_image_file(path), size, (width, height))
        pixels = _read_entry(entry, *resized_size(size, width, height), digest)
        if pixels is not None:
            import torch

            return torch.from_numpy(pixels).permute(2, 0, 1)
        data = read_image_file(path)
        tensor = decode_resized(data, size, (width, height))
        self._store(entry, source_digest(data), tensor)
        return tensor

    def _entry(self, path: Path, size: int) -> Path:
        info = os.stat(path)
        key = f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{size}:{PIL.__version__}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.root / digest[:2] / f"{digest}.rgb"

    def _store(self, entry: Path, digest: bytes, tensor: torch.Tensor) -> None:
        """Write an entry beside its place and rename it in; a failure (disk full, read-only) only loses the entry."""
        pixels = np.ascontiguousarray(tensor.permute(1, 2, 0).numpy())
        header = _HEADER.pack(MAGIC, pixels.shape[1], pixels.shape[0], zlib.crc32(pixels.data), digest)
        tmp = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".entry-", dir=entry.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(pixels.data)
            os.replace(tmp, entry)
        except OSError as exc:
            log.debug("decoded-image cache entry %s not written: %s", entry, exc)
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def usage(self) -> tuple[int, int]:
        """(entries, bytes) in the whole cache."""
        count = total = 0
        for folder in self.root.glob("??"):
            for entry in folder.glob("*.rgb"):
                with contextlib.suppress(OSError):
                    total += entry.stat().st_size
                    count += 1
        return count, total


def source_digest(data: bytes) -> bytes:
    """SHA-256 of a source file's size, first and last DIGEST_BLOCK bytes: what ties a cache entry to its image."""
    return _digest(len(data), data[:DIGEST_BLOCK], data[max(DIGEST_BLOCK, len(data) - DIGEST_BLOCK) :])


def _file_digest(path: Path) -> bytes:
    """`source_digest` of the file at `path`, reading only its two ends; OSError for anything but a regular file (a
    FIFO is opened without waiting for a writer, and never read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        size = info.st_size
        head = f.read(DIGEST_BLOCK)
        f.seek(max(DIGEST_BLOCK, size - DIGEST_BLOCK))
        tail = f.read(DIGEST_BLOCK)
    return _digest(size, head, tail)


def _digest(size: int, head: bytes, tail: bytes) -> bytes:
    return hashlib.sha256(b"%d:" % size + head + tail).digest()


def _read_entry(entry: Path, width: int, height: int, digest: bytes) -> np.ndarray | None:
    """The pixels of a sound entry of this size made from the source of `digest`; None when it is missing, short, of
    another size or source, or damaged."""
    try:
        data = entry.read_bytes()
    except OSError:
        return None
    if len(data) != _HEADER.size + width * height * 3:
        return None
    magic, w, h, crc, source = _HEADER.unpack_from(data)
    pixels = memoryview(data)[_HEADER.size :]
    if magic != MAGIC or (w, h) != (width, height) or source != digest or zlib.crc32(pixels) != crc:
        return None
    return np.frombuffer(data, np.uint8, offset=_HEADER.size).reshape(height, width, 3).copy()


def load_for_model(path: Path, width: int, height: int, size: int | None, cache: DecodedCache | None) -> torch.Tensor:
    """An image file of an image directory as the uint8 CHW tensor a transformation continues from: resized to
    `size` when the transformation starts with a resize (through `cache` when given), else at full size."""
    if size is None:
        return decode_full(read_image_file(path), (width, height))
    if cache is None:
        return decode_resized(read_image_file(path), size, (width, height))
    return cache.load(path, size, width, height)


def report_usage(cache: DecodedCache | None) -> None:
    """Log how much the decoded-image cache holds, when it holds anything."""
    if cache is None:
        return
    count, size = cache.usage()
    if count:
        log.info(
            "decoded-image cache: %d images, %.1f MB in %s (delete it any time; $%s moves it)",
            count,
            size / 2**20,
            cache.root,
            CACHE_ENV,
        )
