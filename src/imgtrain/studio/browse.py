"""The studio's file browser: one folder of the root at a time, each entry named by the kind of source convert would
read it as (the CLI's rule, data.readers), never a path outside the root."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.archives import archive_kind
from ..data.image_directory import META_NAME
from ..data.imaging import is_image_name
from ..data.readers import MANIFEST_SUFFIXES
from ..data.readers.designer import DESIGNER_META
from .registry import RUNS_DIR, STATE_DIR
from .runner import BadRequest, inside_root

#: The kinds of entry: what convert reads each as, or "folder" (none of these: open it to look inside).
CLASS_FOLDERS = "class folders"
IMAGE_DIRECTORY = "image directory"
DESIGNER_DIRECTORY = "designer directory"
UNLABELED = "images, unlabeled"
ARCHIVE = "archive"
MANIFEST = "manifest"
FOLDER = "folder"

#: At most this many directory entries are looked at to tell what one folder holds (a folder may hold millions of
#: images, at any depth); past it the counts are lower bounds ("lower_bound": true) ...
LOOK_AT = 2000
#: ... and at most this many for a whole listing, shared among its folders, each getting at least LOOK_AT_LEAST.
LOOK_AT_IN_ALL = 100_000
LOOK_AT_LEAST = 200
#: The most bytes of an image directory's imgtrain-images.json read for its counts (it is a few hundred).
MAX_META_BYTES = 1 << 20
#: Folders convert's folder reader never descends into (besides hidden ones).
SKIPPED_FOLDERS = ("__MACOSX",)
#: The studio's own folders at the root: its state, and the runs' outputs.
STUDIO_FOLDERS = (STATE_DIR, RUNS_DIR)


def list_sources(root: Path, relative: str) -> dict[str, Any]:
    """One level of a folder of the root: `{"path", "entries": [{"name", "path", "kind", "images"?, "classes"?,
    "lower_bound"?, "problem"?}], "hint"}`, each entry's kind what convert would read it as. Hidden entries, the
    studio's own folders and links leading out of the root are left out. BadRequest 403 outside the root, 404
    missing, 400 not a folder."""
    root = root.resolve()
    folder = root if relative in ("", ".") else inside_root(root, relative, "path")
    if not folder.is_dir():
        raise BadRequest(400, f"{relative!r} is not a folder.")
    shown = folder.relative_to(root).as_posix()
    itself = _directory_kind(folder)
    if itself is not None:
        return {
            "path": shown,
            "entries": [],
            "hint": f"{shown} is itself a source ({itself}): choose it in the folder above.",
        }
    try:
        children = sorted(_visible(folder, at_root=folder == root), key=lambda e: e.name)
    except OSError as exc:
        return {"path": shown, "entries": [], "hint": f"{shown} cannot be read ({exc.strerror or exc})."}
    entries = []
    budget = LOOK_AT_IN_ALL
    for k, child in enumerate(children):
        share = max(LOOK_AT_LEAST, min(LOOK_AT, budget // (len(children) - k)))
        entry, looked = _entry(root, child, share)
        budget -= looked
        if entry is not None:
            entries.append(entry)
    return {"path": shown, "entries": entries, "hint": _hint(root, folder, entries)}


def _visible(folder: Path, at_root: bool) -> list[os.DirEntry[str]]:
    """The entries of `folder` a user may choose: not hidden, not the studio's own folders at the root."""
    with os.scandir(folder) as it:
        return [e for e in it if not e.name.startswith(".") and not (at_root and e.name in STUDIO_FOLDERS)]


def _entry(root: Path, child: os.DirEntry[str], budget: int) -> tuple[dict[str, Any] | None, int]:
    """What `child` is as a source (None for a file that is none, or a link out of the root), and how many
    directory entries were looked at to tell."""
    path = Path(child.path)
    try:
        if not path.resolve().is_relative_to(root):
            return None, 0
        is_dir = child.is_dir()  # a link inside the root is followed here, as `inside_root` follows it on use
    except OSError:
        return None, 0
    entry: dict[str, Any] = {"name": child.name, "path": path.relative_to(root).as_posix()}
    if not is_dir:
        kind = ARCHIVE if archive_kind(path) else MANIFEST if child.name.lower().endswith(MANIFEST_SUFFIXES) else None
        return ({**entry, "kind": kind} if kind and _is_file(path) else None), 0
    kind = _directory_kind(path)
    if kind == IMAGE_DIRECTORY:
        return {**entry, "kind": kind, **_indexed_counts(path)}, 0
    if kind is not None:
        return {**entry, "kind": kind}, 0
    look = _look(path, budget)
    return {**entry, **look.described()}, look.looked


def _directory_kind(folder: Path) -> str | None:
    """ "designer directory" or "image directory" when the folder is one (told apart as create_reader does)."""
    if _is_file(folder / DESIGNER_META):
        return DESIGNER_DIRECTORY
    if _is_file(folder / META_NAME):
        return IMAGE_DIRECTORY
    return None


def _is_file(path: Path) -> bool:
    """Whether `path` is a file (links followed); False where it cannot be told (a folder that cannot be read)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _indexed_counts(folder: Path) -> dict[str, int]:
    """An image directory's images and classes as its imgtrain-images.json says (nothing when it cannot say)."""
    try:
        with open(folder / META_NAME, "rb") as f:
            meta = json.loads(f.read(MAX_META_BYTES))
        counts = {"images": int(meta["num_images"])}
        if meta.get("labeled"):
            counts["classes"] = len(meta["classes"])
        return counts
    except (OSError, ValueError, TypeError, KeyError):  # a damaged directory: convert or train names what is wrong
        return {}


@dataclass
class _Look:
    """What a bounded look into a folder found: images at its top, images under each top-level sub-folder."""

    budget: int
    looked: int = 0
    top_level: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    capped: bool = False
    holds_directories: bool = False  # a sub-folder is an image or designer directory: a source of its own

    def described(self) -> dict[str, Any]:
        """The entry's kind and counts: the CLI's rule (data.readers.folder), which refuses a folder that holds both
        images at its top and class sub-folders with images: offered as a folder to open, with the problem. A folder
        with an image or designer directory among its sub-folders is a folder of sources to open, not class folders
        (convert would read that directory's own files as one class)."""
        labeled = {name: n for name, n in self.classes.items() if n}
        more = {"lower_bound": True} if self.capped else {}
        if self.holds_directories:
            return {"kind": FOLDER}
        if labeled and self.top_level:
            return {
                "kind": FOLDER,
                "problem": "it mixes images at its top level with class sub-folders; move every image into a class "
                "folder (<class>/<image>) for labeled data, or keep all images at the top level for unlabeled data",
            }
        if labeled:
            return {"kind": CLASS_FOLDERS, "images": sum(labeled.values()), "classes": len(labeled), **more}
        if self.top_level:
            return {"kind": UNLABELED, "images": self.top_level, **more}
        return {"kind": FOLDER}


def _look(folder: Path, budget: int) -> _Look:
    """Look at most `budget` directory entries into `folder`: its top level first, then each top-level sub-folder
    in turn with a fair share of what is left. Links and hidden entries are passed over, as convert passes them."""
    look = _Look(budget)
    subfolders = []
    for entry in _scan(folder, look):
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in SKIPPED_FOLDERS:
                subfolders.append(entry)
        elif is_image_name(entry.name) and entry.is_file(follow_symlinks=False):
            look.top_level += 1
    for k, sub in enumerate(sorted(subfolders, key=lambda e: e.name)):
        left = look.budget - look.looked
        if left <= 0:
            look.capped = True
            break
        if _directory_kind(Path(sub.path)):
            look.holds_directories = True
            break
        look.classes[sub.name] = _count_images(
            Path(sub.path), look, look.looked + max(1, left // (len(subfolders) - k))
        )
    return look


def _count_images(folder: Path, look: _Look, stop_at: int) -> int:
    """The images at any depth under `folder` (links and hidden entries passed over), looking until `look.looked`
    reaches `stop_at` (then `look.capped`)."""
    found, pending = 0, [folder]
    while pending:
        for entry in _scan(pending.pop(), look, stop_at):
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in SKIPPED_FOLDERS:
                    pending.append(Path(entry.path))
            elif is_image_name(entry.name) and entry.is_file(follow_symlinks=False):
                found += 1
        if look.looked >= stop_at and pending:
            look.capped = True
            break
    return found


def _scan(folder: Path, look: _Look, stop_at: int | None = None) -> list[os.DirEntry[str]]:
    """The visible entries of `folder`, counted into `look.looked`, until it reaches `stop_at` (the whole budget
    unless given; then `look.capped`); none for a folder that cannot be read."""
    stop_at = look.budget if stop_at is None else stop_at
    found = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if look.looked >= stop_at:
                    look.capped = True
                    break
                look.looked += 1
                if not entry.name.startswith("."):
                    found.append(entry)
    except OSError:  # an unreadable folder holds nothing convert could read either
        pass
    return found


def _hint(root: Path, folder: Path, entries: list[dict[str, Any]]) -> str | None:
    """What to do when the listing offers no source: nothing here, or only folders to open."""
    if any(e["kind"] != FOLDER for e in entries):
        return None
    where = str(root) if folder == root else str(folder)
    if not entries:
        return (
            f"nothing here yet: put a folder of class sub-folders (one per label) under {where}, or a .zip of one"
            if folder == root
            else f"nothing to train on in {where}: put a folder of class sub-folders (one per label) here, or a .zip "
            "of one"
        )
    return (
        "no source here itself: open a folder to look inside (a source is a folder of class sub-folders, one per "
        "label; an image directory; a folder of images; an archive or a manifest)"
    )
