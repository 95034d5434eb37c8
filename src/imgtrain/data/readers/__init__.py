"""The sources Convert to Image Directory reads, one reader per kind, and `create_reader`, which picks the reader for a
source (the shape of timm's reader factory)."""

from __future__ import annotations

from pathlib import Path

from ...errors import InvalidDatasetError
from ..archives import archive_kind
from ..image_directory import META_NAME
from .archive import ArchiveReader
from .designer import DESIGNER_META, DesignerDirectoryReader
from .folder import FolderReader, folder_images
from .imgtrain_directory import ImageDirectoryReader
from .listing import Candidate, LeftOut, Listing, Reader, printable
from .manifest import CSV_SUFFIX, JSON_LINES_SUFFIXES, MANIFEST_SUFFIXES, CsvManifestReader, JsonLinesManifestReader

__all__ = [
    "MANIFEST_SUFFIXES",
    "Candidate",
    "LeftOut",
    "Listing",
    "Reader",
    "create_reader",
    "folder_images",
    "printable",
]


def create_reader(src: Path, extract_dir: Path, allow_outside: bool = False) -> Reader:
    """The reader for the local source `src`, told apart by what it is, so convert reads every kind alike.

    An archive unpacks into `extract_dir`; a manifest's paths stay inside its folder unless `allow_outside`.
    InvalidDatasetError for a source no reader takes.
    """
    if src.is_dir():
        if (src / DESIGNER_META).is_file():
            return DesignerDirectoryReader(src)
        if (src / META_NAME).is_file():
            return ImageDirectoryReader(src)
        return FolderReader(src)
    name = src.name.lower()
    if archive_kind(src):
        return ArchiveReader(src, extract_dir)
    if name.endswith(CSV_SUFFIX):
        return CsvManifestReader(src, allow_outside)
    if name.endswith(JSON_LINES_SUFFIXES):
        return JsonLinesManifestReader(src, allow_outside)
    raise InvalidDatasetError(
        f"{src} is not a source imgtrain can convert.",
        hint="give a folder, a .zip/.tar/.tar.gz/.tgz/.tar.bz2 archive, a .csv or .jsonl manifest, "
        "or a designer image directory (with _meta.yaml).",
    )
