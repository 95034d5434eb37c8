"""An existing imgtrain image directory, imported again (its ids, labels and sources kept)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..image_directory import ImageDirectory
from .listing import Candidate, Listing


@dataclass(frozen=True)
class ImageDirectoryReader:
    """An imgtrain image directory (with its index file), validated as any other reader of it validates it."""

    root: Path

    def read(self) -> Listing:
        """The directory's images, named by the source each came from (else by their path)."""
        directory = ImageDirectory.open(self.root)
        return Listing(
            tuple(Candidate(self.root / r.path, r.source or r.path, _label(r.label), r.id) for r in directory)
        )


def _label(label: str | list[str] | None) -> str | tuple[str, ...] | None:
    """A record's label as a candidate's (a multi-label image's list as a tuple)."""
    return tuple(label) if isinstance(label, list) else label
