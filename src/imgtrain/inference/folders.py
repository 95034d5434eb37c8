"""The plain local folders that score reads as convert would (class folders or flat), each image read when scored."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..data.image_directory import META_NAME, single_label
from ..data.imaging import read_image_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FolderImages:
    """The images of a plain local folder (class folders or flat, as convert reads them), each read when scored."""

    root: Path
    files: list[Path]
    paths: list[str]  # each file's absolute path as text (the scores' path column)
    sources: list[str]  # relative to root, as convert names them
    labels: list[str | None]  # the class folder; None for a flat folder

    def read(self, index: int) -> bytes:
        """The bytes of image `index`."""
        return read_image_file(self.files[index])


def is_plain_folder(path: str | Path) -> bool:
    """Whether `path` is a local folder that is neither an imgtrain image directory nor a designer one."""
    path = Path(path)
    return path.is_dir() and not (path / META_NAME).exists() and not (path / "_meta.yaml").exists()


def list_folder(path: str | Path) -> FolderImages:
    """The images of a plain folder in convert's order (so ids, sources and labels are those convert would give)."""
    from ..data.convert import folder_images, printable

    root = Path(path)
    found, ignored = folder_images(root)
    if ignored:
        log.warning(
            "ignored %d files of %s (no image extension, symbolic links, hidden files), e.g. %s",
            len(ignored),
            root,
            ignored[:3],
        )
    return FolderImages(
        root,
        [c.file for c in found],
        [printable(str(c.file.resolve())) for c in found],
        [c.source for c in found],
        [single_label(c.label) for c in found],  # class folders: one class each
    )
