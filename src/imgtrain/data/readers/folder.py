"""Plain folders: class folders (SRC/<class>/<image>) or a flat folder of unlabeled images."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...errors import InvalidDatasetError
from ..image_directory import list_problems
from ..imaging import IMAGE_EXTENSIONS, is_image_name
from .listing import Candidate, Listing


@dataclass(frozen=True)
class FolderReader:
    """A class folder (top-level sub-folder = class) or a flat folder (unlabeled)."""

    root: Path

    def read(self) -> Listing:
        """The folder's images, named by their path inside it."""
        return read_folder(self.root, self.root)


def read_folder(root: Path, src: Path, names_from: Path | None = None) -> Listing:
    """The images under `root` (class folders or flat), with `src` in errors; with `names_from`, each is named
    `src`/its path from `names_from` (an archive's members by their path in the archive), else by its path from
    `root`. Symbolic links, to files or folders, are listed and never followed (they may lead outside SRC)."""
    top_level: list[Candidate] = []
    nested: list[Candidate] = []
    ignored: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        links = sorted(d for d in dirnames if (here / d).is_symlink()) + sorted(
            f for f in filenames if (here / f).is_symlink()
        )
        ignored.extend(f"{rel_dir / name} (symbolic link: not followed)" for name in links)
        skipped = sorted(d for d in dirnames if d not in links and (d.startswith(".") or d == "__MACOSX"))
        ignored.extend(f"{rel_dir / name}/ (hidden folder: not read)" for name in skipped)
        dirnames[:] = sorted(d for d in dirnames if d not in skipped and d not in links)
        for fname in sorted(filenames):
            path = here / fname
            if fname.startswith(".") and fname not in links:
                ignored.append(f"{rel_dir / fname} (hidden file: not read)")
            if fname.startswith(".") or fname in links or not path.is_file():
                continue
            shown = str(src / path.relative_to(names_from)) if names_from else str(path.relative_to(root))
            if not is_image_name(fname):
                ignored.append(shown)
            elif rel_dir.parts:
                nested.append(Candidate(path, shown, rel_dir.parts[0]))
            else:
                top_level.append(Candidate(path, shown, None))
    return Listing(tuple(_one_layout(src, top_level, nested)), tuple(ignored))


def _one_layout(src: Path, top_level: list[Candidate], nested: list[Candidate]) -> list[Candidate]:
    """The images of a folder that holds either class folders or images, not both, and holds some."""
    if top_level and nested:
        raise InvalidDatasetError(
            f"{src} mixes images at its top level ({', '.join(c.source for c in top_level[:3])}"
            f"{', ...' if len(top_level) > 3 else ''}) with class sub-folders.",
            hint="move every image into a class folder (SRC/<class>/<image>) for labeled data, or keep "
            "all images at the top level for unlabeled data.",
        )
    found = nested or top_level
    if not found:
        raise InvalidDatasetError(
            f"No images found in {src}.",
            hint="images need one of the extensions " + ", ".join(sorted(IMAGE_EXTENSIONS)) + ".",
        )
    return found


def folder_images(src: Path) -> tuple[list[Candidate], list[str]]:
    """The images of a plain folder as convert reads them (class folders or flat; links listed, never followed), their
    names as text, and the files left aside; InvalidDatasetError as convert raises it, and for a class folder whose
    name is not UTF-8."""
    listing = read_folder(src, src).as_text()
    if listing.misnamed:
        raise InvalidDatasetError(
            f"{len(listing.misnamed)} images of {src} cannot be labeled:\n"
            f"{list_problems([str(m) for m in listing.misnamed])}"
        )
    return list(listing.candidates), list(listing.ignored)
