"""The studio's file browser: the sources under a folder of the root that a run can train on, never a path outside."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data.imaging import is_image_name
from .registry import STATE_DIR
from .runner import BadRequest, inside_root

#: Archives and manifests the file browser offers besides folders.
SOURCE_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".csv", ".jsonl", ".json", ".ndjson")
#: How many entries of a folder are looked at to tell what it holds (a folder may hold millions of images).
LOOK_AT = 50


def list_sources(root: Path, relative: str, depth: int = 3, limit: int = 500) -> dict[str, Any]:
    """The sources under a folder of the root, `depth` levels down: image directories, datasets (a folder whose
    sub-folders hold images: class folders), folders of images, archives and manifests. Links out of the root
    are not offered."""
    folder = inside_root(root, relative, "path") if relative not in ("", ".") else root
    if not folder.is_dir():
        raise BadRequest(400, f"{relative!r} is not a folder.")
    entries: list[dict[str, str]] = []
    _collect_sources(root, folder, depth, entries, limit)
    return {"path": str(folder.relative_to(root)), "entries": entries}


def _collect_sources(root: Path, folder: Path, depth: int, entries: list[dict[str, str]], limit: int) -> None:
    """Append the sources in `folder` to `entries` (up to `limit` of them), descending into the other folders."""
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if len(entries) >= limit or entry.name.startswith(".") or entry.name == STATE_DIR:
            continue
        if not entry.resolve().is_relative_to(root):
            continue
        path = str(entry.relative_to(root))
        if entry.is_file():
            if entry.name.lower().endswith(SOURCE_SUFFIXES):
                entries.append({"name": entry.name, "path": path, "kind": "archive or manifest"})
        elif (entry / "imgtrain-images.json").is_file():
            entries.append({"name": entry.name, "path": path, "kind": "image directory"})
        elif _holds_class_folders(entry):
            entries.append({"name": entry.name, "path": path, "kind": "class folders"})
        elif _holds_images(entry):
            entries.append({"name": entry.name, "path": path, "kind": "images, unlabeled"})
        elif depth > 1:
            _collect_sources(root, entry, depth - 1, entries, limit)


def _holds_class_folders(folder: Path) -> bool:
    return _any_first_entry(folder, lambda child: child.is_dir() and _holds_images(child))


def _holds_images(folder: Path) -> bool:
    return _any_first_entry(folder, lambda child: is_image_name(child.name))


def _any_first_entry(folder: Path, passes: Callable[[Path], bool]) -> bool:
    """Whether one of the first LOOK_AT entries of `folder` passes; False for a folder that cannot be read."""
    try:
        return any(passes(child) for child in itertools.islice(folder.iterdir(), LOOK_AT))
    except OSError:
        return False
