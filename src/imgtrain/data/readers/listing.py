"""What a reader hands convert: the files to import (`Candidate`), the files left aside, and names made text."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Candidate:
    """A file to import: where it is, the name users know it by, its label and optional id."""

    file: Path
    source: str
    label: str | tuple[str, ...] | None  # a tuple (possibly empty) for a multi-label source
    id: int | None = None


@dataclass(frozen=True)
class LeftOut:
    """An image convert leaves out, by the name users know it by, and why."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass(frozen=True)
class Listing:
    """A source's images to import and the files left aside (no image extension, or symbolic links); once named as
    text, also the images left out because their class folder name is not UTF-8."""

    candidates: tuple[Candidate, ...]
    ignored: tuple[str, ...] = ()
    misnamed: tuple[LeftOut, ...] = ()

    def as_text(self) -> Listing:
        """This listing with every name as text, for the report and the index; an image whose class folder name is
        not UTF-8 moves to `misnamed` (a class name must be text; shown as \\xNN two such folders could become one
        class)."""
        kept, misnamed = [], list(self.misnamed)
        for c in self.candidates:
            source = printable(c.source)
            if isinstance(c.label, str) and printable(c.label) != c.label:
                reason = f"the class folder name '{printable(c.label)}' is not UTF-8; rename it"
                misnamed.append(LeftOut(source, reason))
            else:
                kept.append(dataclasses.replace(c, source=source))
        return Listing(tuple(kept), tuple(printable(name) for name in self.ignored), tuple(misnamed))


class Reader(Protocol):
    """Reads one kind of source into the images convert imports."""

    def read(self) -> Listing:
        """The source's images, or InvalidDatasetError naming what is wrong with it."""
        ...


def printable(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by Python as surrogates) shown as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_all_or_none_labeled(found: list[Candidate], problems: list[str]) -> None:
    """Add to `problems` the unlabeled images of a source where other images have a label, and the images with one
    label where others have a list (a source is single-label or multi-label, not both)."""
    unlabeled = [c.source for c in found if c.label is None]
    if unlabeled and len(unlabeled) != len(found):
        problems.extend(f"{name}: no label while other images have one" for name in unlabeled)
    lists = [c.source for c in found if isinstance(c.label, tuple)]
    if lists and len(lists) != len(found) - len(unlabeled):
        problems.extend(
            f"{c.source}: one label while other images have a list" for c in found if isinstance(c.label, str)
        )
