"""Convert's import step: each candidate decoded once (bad images named), copied or moved into the image directory
being built, and photos kept resized in the decoded-image cache for training and scoring."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import TransformSpec
from ..parallel import process_map
from .decoding import DecodedCache, resize_exact, rgb_image
from .image_directory import IMAGES_DIR, ImageRecord
from .imaging import BadImage, MissingDecoder, header_size, is_image_name, open_reduced, read_image_file, rgb_tensor
from .readers import Candidate, LeftOut

log = logging.getLogger(__name__)

#: The resize of the default transformation: what convert keeps photos at in the decoded-image cache.
DEFAULT_RESIZE = TransformSpec().size
#: The extension of a file whose name has none of an image, from the format its bytes are in.
_FORMAT_EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "BMP": ".bmp",
    "PPM": ".ppm",
    "TIFF": ".tif",
    "WEBP": ".webp",
    "MPO": ".jpg",
    "HEIF": ".heic",
}


@dataclass(frozen=True)
class ImportTask:
    """One file to import, as a worker process receives it."""

    file: str
    dest_stem: str  # the path it is written to, less the extension
    move: bool  # the file is ours (extracted from an archive): moved rather than copied
    cache_root: str | None  # the decoded-image cache's folder, or None to keep nothing there


@dataclass(frozen=True)
class ImportOutcome:
    """What became of one file: imported (its size and extension), or left out and why."""

    ok: bool
    width: int = 0
    height: int = 0
    extension: str = ""
    reason: str = ""
    missing_decoder: bool = False  # left out as a HEIF image without pillow-heif: not a bad image

    @classmethod
    def imported(cls, width: int, height: int, extension: str) -> ImportOutcome:
        """An image written into the image directory with `extension`."""
        return cls(True, width, height, extension)

    @classmethod
    def left_out(cls, reason: str, missing_decoder: bool = False) -> ImportOutcome:
        """A file not imported, and why."""
        return cls(False, reason=reason, missing_decoder=missing_decoder)


@dataclass(frozen=True)
class ImportResult:
    """The records of the images imported, the bad images, and the HEIF images left out for want of their decoder."""

    records: list[ImageRecord]
    bad: list[LeftOut]
    undecodable: list[LeftOut]


def import_images(
    candidates: tuple[Candidate, ...],
    out: Path,
    own_files: Path,
    workers: int | None,
    progress: bool,
    cache_root: str | None,
) -> ImportResult:
    """Import every candidate into OUT/images/ in `workers` processes, numbered in order; files under `own_files`
    (extracted by convert) are moved, others copied. Ids are the candidates' when each has a distinct one."""
    (out / IMAGES_DIR).mkdir()
    given = [c.id for c in candidates if c.id is not None]
    ids = given if len(set(given)) == len(candidates) else list(range(len(candidates)))
    digits = max(6, len(str(len(candidates))))
    tasks = [
        ImportTask(str(c.file), str(out / IMAGES_DIR / f"{k:0{digits}d}"), c.file.is_relative_to(own_files), cache_root)
        for k, c in enumerate(candidates)
    ]
    result = ImportResult([], [], [])
    if cache_root:
        _import_torch_for_photos(candidates, DecodedCache(Path(cache_root)))
    outcomes = process_map(_import_one, tasks, workers, desc="convert", progress=progress)
    for k, (c, ident, outcome) in enumerate(zip(candidates, ids, outcomes, strict=True)):
        if outcome.ok:
            path = f"{IMAGES_DIR}/{k:0{digits}d}{outcome.extension}"
            label = list(c.label) if isinstance(c.label, tuple) else c.label  # a multi-label image's classes
            result.records.append(ImageRecord(ident, path, label, outcome.width, outcome.height, c.source))
        else:
            (result.undecodable if outcome.missing_decoder else result.bad).append(LeftOut(c.source, outcome.reason))
    return result


def _import_one(task: ImportTask) -> ImportOutcome:
    """Decode one file and copy (or, for our own extracted files, move) it to `dest_stem` + extension.

    The image is decoded for the default transformation's resize (a JPEG at reduced scale: every byte is still
    read and checked); with a cache folder, a photo that resize shrinks is kept there resized, so training and
    scoring start from it.
    """
    size = DEFAULT_RESIZE
    try:
        data = read_image_file(task.file)
        img, (width, height) = open_reduced(data, size)
        fmt = img.format
        rgb = rgb_image(img)
    except MissingDecoder as exc:
        return ImportOutcome.left_out(str(exc), missing_decoder=True)
    except BadImage as exc:
        return ImportOutcome.left_out(str(exc))
    except Exception as exc:  # noqa: BLE001 - a format quirk Pillow cannot handle: still a bad image, not a crash
        return ImportOutcome.left_out(f"cannot decode ({type(exc).__name__}: {exc})")
    suffix = Path(task.file).suffix.lower()
    ext = suffix if is_image_name(task.file) else _FORMAT_EXTENSIONS.get(fmt or "", ".img")
    dest = task.dest_stem + ext
    if task.move:
        os.replace(task.file, dest)
    else:
        with open(dest, "wb") as f:
            f.write(data)
    cache = DecodedCache(Path(task.cache_root)) if task.cache_root else None
    if cache and cache.worth_keeping(size, width, height):
        cache.keep(Path(dest), data, size, resize_exact(rgb_tensor(rgb), size, (width, height)))
    return ImportOutcome.imported(width, height, ext)


def _import_torch_for_photos(candidates: tuple[Candidate, ...], cache: DecodedCache, peek: int = 8) -> None:
    """Import torch here, before the workers start, when the first images are photos to cache (each is resized with
    torch): the workers then share it instead of each importing it (seconds and 200 MB apiece). Small images need
    no torch at all."""
    for c in candidates[:peek]:
        try:
            width, height = header_size(read_image_file(c.file))
        except BadImage:  # named by the worker that decodes it
            continue
        if cache.worth_keeping(DEFAULT_RESIZE, width, height):
            log.info("loading torch to keep the photos resized in the decoded-image cache")
            import torchvision.transforms.v2  # noqa: F401

            return
