"""Manifests that name their images by URL, as Azure AutoML's JSON lines do (`{"image_url": "s3://bucket/a.png",
"label": [...]}`, any URL fsspec reads): each image is downloaded beside a copy of the manifest whose paths are
made local, which convert then reads as any local manifest; each image keeps its URL as its `source`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path, PurePosixPath

from ..errors import InvalidDatasetError
from ..files import atomic_write_text
from ..jsonfiles import parse_json, read_text
from ..progress import progress_bar
from . import remote
from .image_directory import list_problems
from .readers.manifest import CSV_SUFFIX, MANIFEST_SUFFIXES, PATH_KEYS


def _rows(manifest: Path) -> tuple[list[dict] | None, list[str]]:
    """(the rows, as dicts, of a manifest that names an image by URL; or None) and the column or key of each path."""
    if not manifest.is_file() or not manifest.name.lower().endswith(MANIFEST_SUFFIXES):
        return None, []
    try:
        text = read_text(manifest, "utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None, []  # the manifest's reader names what is wrong with it
    if manifest.suffix.lower() == CSV_SUFFIX:
        rows: list[dict] = list(csv.DictReader(text.splitlines()))
    else:
        try:
            rows = [parse_json(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            return None, []
    if not all(isinstance(row, dict) for row in rows):
        return None, []  # the reader names the line that is not an object
    keys = [next((k for k in row if str(k).strip().lower() in PATH_KEYS), "") for row in rows]
    if not any(remote.is_remote(str(row.get(k, ""))) for row, k in zip(rows, keys, strict=True)):
        return None, []
    return rows, keys


def stage_urls(manifest: Path, dest: Path, progress: bool = True) -> tuple[Path, dict[str, str]]:
    """(the manifest convert reads, {its local path of each downloaded image: the image's URL}): `manifest` itself
    and {} when it names no image by URL; else a copy in `dest` beside the images, downloaded there."""
    rows, keys = _rows(manifest)
    if rows is None:
        return manifest, {}
    paths = [str(row.get(k, "")) for row, k in zip(rows, keys, strict=True)]
    local = [p for p in paths if not remote.is_remote(p)]
    if local:
        raise InvalidDatasetError(
            f"The manifest {manifest} names some images by URL and {len(local)} by a path:\n"
            + list_problems([f"{p[:120]}: a path among URLs" for p in local]),
            hint="name every image by its URL, or put every image beside the manifest and name it by a relative path.",
        )
    urls: dict[str, str] = {}  # local name -> URL, one download per URL
    named: dict[str, str] = {}
    for row, key in zip(rows, keys, strict=True):
        url = str(row[key]).strip()
        if url not in named:
            named[url] = f"{len(named):06d}-{PurePosixPath(url.split('?')[0]).name or 'image'}"
            urls[named[url]] = url
        row[key] = named[url]
    with progress_bar(len(urls), "download", "img", progress) as bar:
        for name, url in urls.items():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(remote.read_object(url))
            bar.update(1)
    staged = dest / manifest.name
    if manifest.suffix.lower() == CSV_SUFFIX:
        text = io.StringIO()
        writer = csv.DictWriter(text, list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(staged, text.getvalue())
    else:
        atomic_write_text(staged, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return staged, {str(dest / name): url for name, url in urls.items()}
