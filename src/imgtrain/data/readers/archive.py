"""Archives (.zip, .tar and compressed tars): unpacked safely, then read as a folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .. import archives
from .folder import read_folder
from .listing import Listing


@dataclass(frozen=True)
class ArchiveReader:
    """An archive of class folders or of a flat folder, unpacked into `extract_dir`."""

    archive: Path
    extract_dir: Path

    def read(self) -> Listing:
        """The archive's images, named ARCHIVE/<member path>; members left aside come first among the ignored."""
        left_aside = archives.extract(self.archive, self.extract_dir)
        listing = read_folder(_unwrap(self.extract_dir), self.archive, names_from=self.extract_dir)
        return dataclasses.replace(listing, ignored=(*left_aside, *listing.ignored))


def _unwrap(root: Path) -> Path:
    """Step into an archive's single top folder when that folder holds the class folders."""
    if not root.is_dir():
        return root
    entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if (
        len(entries) == 1
        and entries[0].is_dir()
        and any(p.is_dir() and not p.name.startswith(".") for p in entries[0].iterdir())
    ):
        return entries[0]
    return root
