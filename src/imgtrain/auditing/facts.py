"""What the audit reads from each image, once: a content hash, perceptual hashes, a thumbnail.

Each image gets the SHA-256 of its bytes (exact duplicates), 64-bit perceptual hashes (DCT hash,
imagehash.phash) of the whole image and of six crops of it (the centre at 90% and 80%, the four corners at
90%), so that a resized, re-encoded or slightly cropped copy (up to about 5% off each side) still lands
within a few bits of one of them, and a small RGB thumbnail as features for the label check.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.imaging import BadImage, open_reduced, read_image_file, to_rgb

HASH_SIDE = 128  # images are reduced to this long side before hashing: the DCT hash looks at 32x32 anyway
CROPS = 7
THUMBNAIL = 16  # the label check's features: THUMBNAIL x THUMBNAIL x 3 pixels


@dataclass(frozen=True)
class Facts:
    """One image's facts; `error` says why there are none."""

    sha256: str = ""
    hashes: np.ndarray | None = None  # (CROPS,) uint64: the whole image first
    thumbnail: np.ndarray | None = None  # (THUMBNAIL * THUMBNAIL * 3,) uint8
    error: str | None = None


def _crops(img: Image.Image) -> list[Image.Image]:
    """The whole image, its centre at 90% and 80%, and its four corners at 90%."""
    w, h = img.size
    out = [img]
    for scale in (0.9, 0.8):
        dw, dh = round(w * (1 - scale) / 2), round(h * (1 - scale) / 2)
        out.append(img.crop((dw, dh, w - dw, h - dh)))
    cw, ch = round(w * 0.9), round(h * 0.9)
    for x, y in ((0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch)):
        out.append(img.crop((x, y, x + cw, y + ch)))
    return out


def perceptual_hashes(img: Image.Image) -> np.ndarray:
    """The DCT hashes of the whole image and of its crops, as 64-bit integers."""
    import imagehash

    gray = img.convert("L")
    gray.thumbnail((HASH_SIDE, HASH_SIDE))
    values = [int.from_bytes(np.packbits(imagehash.phash(c).hash.ravel()).tobytes(), "big") for c in _crops(gray)]
    return np.array(values, dtype=np.uint64)


def read_facts(path: str) -> Facts:
    """The facts of one image file (run in worker processes)."""
    try:
        data = read_image_file(Path(path))
        img, _ = open_reduced(data, HASH_SIDE)
        img = to_rgb(img)
    except BadImage as exc:
        return Facts(error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a decoder's own error: the image is unreadable, the audit goes on
        return Facts(error=f"{type(exc).__name__}: {exc}")
    thumbnail = np.asarray(img.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR), dtype=np.uint8).ravel()
    return Facts(hashlib.sha256(data).hexdigest(), perceptual_hashes(img), thumbnail)
