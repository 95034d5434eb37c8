"""Convert to Image Directory: folders, archives, manifests and Azure designer directories (read by data.readers)
become an imgtrain image directory (imported by data.ingest), with a report of what was left out."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
import unicodedata
from pathlib import Path

from ..errors import InvalidDatasetError
from ..files import atomic_write_json, building_dir
from . import remote
from .decoding import DecodedCache, default_cache_dir, report_usage
from .image_directory import MULTILABEL, ImageDirectory, label_list, list_problems, write_image_directory
from .imaging import HEIF_INSTALL
from .ingest import ImportResult, import_images
from .manifest_urls import stage_urls
from .readers import Candidate, LeftOut, Listing, create_reader, folder_images, printable

# folder_images and printable are imported from here by inference.scoring.
__all__ = ["REPORT_NAME", "Candidate", "convert", "folder_images", "printable"]

log = logging.getLogger(__name__)

REPORT_NAME = "convert-report.json"


def convert(
    src: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    skip_invalid: bool = False,
    allow_outside: bool = False,
    workers: int | None = None,
    progress: bool = True,
    cache: bool = True,
) -> ImageDirectory:
    """Turn a folder, archive, manifest or designer image directory into an imgtrain image directory.

    `src` may be a URL (s3://, az://, gs://, any fsspec URL: data.remote), copied in first. Every image is
    decoded once here; with `cache`, photos are kept resized in the decoded-image cache too. Bad images
    raise InvalidDatasetError naming them and nothing is written, unless `skip_invalid`, which leaves them
    out and lists them in OUT/convert-report.json.
    """
    started = time.perf_counter()
    url = str(src) if remote.is_remote(src) else None
    src, out = Path(src), Path(out)
    if url is None and not src.exists():
        raise InvalidDatasetError(f"The source {src} does not exist.", hint="check the path.")
    with building_dir(out, overwrite, inputs=[] if url else [src], validate=ImageDirectory.open) as tmp:
        if url is not None:  # copied inside the output being built: an interrupted convert leaves nothing
            src = remote.stage(url, tmp / ".download", progress)
        src, image_urls = stage_urls(src, tmp / ".download" / "by-url", progress)
        listing = create_reader(src, tmp / ".extract", allow_outside).read()
        if url is not None:
            listing = _named_by_url(listing, src, url)
        listing = _sources_by_url(listing, image_urls)
        listing = listing.as_text()
        imported = import_images(
            listing.candidates, tmp, tmp / ".extract", workers, progress, str(default_cache_dir()) if cache else None
        )
        bad = [*listing.misnamed, *imported.bad]
        shutil.rmtree(tmp / ".extract", ignore_errors=True)
        shutil.rmtree(tmp / ".download", ignore_errors=True)
        _check_usable(src, listing, imported, bad, skip_invalid)
        classes = sorted({label for r in imported.records for label in label_list(r.label)})
        multilabel = any(isinstance(c.label, tuple) for c in listing.candidates)
        write_image_directory(tmp, classes, imported.records, MULTILABEL if multilabel else None)
        _write_report(
            tmp / REPORT_NAME,
            remote.display(url) if url else str(src),
            len(imported.records),
            bad + imported.undecodable,
            listing.ignored,
            look_alike_classes(classes),
        )
    _log_outcome(out, imported, classes, len(bad), listing.ignored, time.perf_counter() - started)
    report_usage(DecodedCache(default_cache_dir()) if cache else None)
    return ImageDirectory.open(out)


def _check_usable(src: Path, listing: Listing, imported: ImportResult, bad: list[LeftOut], skip_invalid: bool) -> None:
    """Refuse a source with bad images (unless `skip_invalid`) or with no image left to write."""
    if bad and not skip_invalid:
        raise InvalidDatasetError(
            f"{len(bad)} of {len(listing.candidates) + len(listing.misnamed)} images in {src} cannot be used; nothing "
            "was written:\n" + list_problems([str(b) for b in bad]),
            hint="fix or remove these files, or pass skip_invalid=True to leave them out.",
            cli_hint="fix or remove these files, or pass --skip-invalid to leave them out.",
        )
    if not imported.records:
        raise InvalidDatasetError(
            f"None of the images in {src} can be used.",
            hint=HEIF_INSTALL if imported.undecodable else "check the files.",
        )


def _log_outcome(
    out: Path, imported: ImportResult, classes: list[str], bad: int, ignored: tuple[str, ...], seconds: float
) -> None:
    """What convert wrote, and what it left out and where that is listed."""
    images, undecodable = len(imported.records), len(imported.undecodable)
    if bad:
        log.warning("skipped %d invalid images; see %s", bad, out / REPORT_NAME)
    if ignored:
        log.warning(
            "ignored %d files (no image extension, symbolic links, hidden files and folders), e.g. %s",
            len(ignored),
            list(ignored[:3]),
        )
    for names in look_alike_classes(classes):
        log.warning(
            "the classes %s differ only in letter case or Unicode form (NFC/NFD): they are separate classes; "
            "rename the folders (or labels) to one spelling if they are one class",
            " and ".join(repr(n) for n in names),
        )
    if undecodable:
        log.warning(
            "left out %d HEIF (HEIC) images: their decoder pillow-heif is not installed (%s); see %s",
            undecodable,
            HEIF_INSTALL,
            out / REPORT_NAME,
        )
    log.info(
        "converted %d images (%s) in %.1fs into %s",
        images,
        f"{len(classes)} classes" if classes else "unlabeled",
        seconds,
        out,
    )


def _named_by_url(listing: Listing, staged: Path, url: str) -> Listing:
    """A staged remote source's listing, its images named by their URL rather than by where they were staged."""
    prefix, shown = str(staged), remote.display(url)
    return dataclasses.replace(
        listing,
        candidates=tuple(
            dataclasses.replace(c, source=shown + c.source[len(prefix) :]) if c.source.startswith(prefix) else c
            for c in listing.candidates
        ),
    )


def _sources_by_url(listing: Listing, image_urls: dict[str, str]) -> Listing:
    """A listing whose images were downloaded by their URLs (manifest_urls), each named by its URL."""
    if not image_urls:
        return listing
    return dataclasses.replace(
        listing,
        candidates=tuple(
            dataclasses.replace(c, source=remote.display(image_urls[str(c.file)])) if str(c.file) in image_urls else c
            for c in listing.candidates
        ),
    )


def look_alike_classes(classes: list[str]) -> list[list[str]]:
    """Groups of class names a person reads as one: equal once in one Unicode form (NFC) and case-folded ("Cat" and
    "cat", "é" composed and decomposed)."""
    groups: dict[str, list[str]] = {}
    for name in classes:
        groups.setdefault(unicodedata.normalize("NFC", name).casefold(), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _write_report(
    path: Path,
    source: str,
    images: int,
    left_out: list[LeftOut],
    ignored: tuple[str, ...],
    look_alike: list[list[str]],
) -> None:
    """OUT/convert-report.json: the source, how many images were written, every file left out and why, and the
    class names that differ only in case or Unicode form."""
    atomic_write_json(
        path,
        {
            "format": "imgtrain.convert_report",
            "format_version": 1,
            "source": source,
            "images": images,
            "skipped": [{"source": b.source, "reason": b.reason} for b in left_out],
            "ignored_non_images": list(ignored),
            "look_alike_classes": look_alike,
        },
    )
