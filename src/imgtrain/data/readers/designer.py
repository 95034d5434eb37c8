"""Azure ML designer image directories: _meta.yaml (read without YAML aliases), images.lst and the image files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from ...errors import InvalidDatasetError
from ...jsonfiles import open_text, parse_json, read_text
from ...params import is_integer
from ..image_directory import list_problems, safe_relative_path
from .listing import Candidate, Listing, check_all_or_none_labeled

#: The file that makes a folder a designer image directory.
DESIGNER_META = "_meta.yaml"

#: The designer's _meta.yaml is a few lines; anything near this is not one.
MAX_META_BYTES = 64 * 1024


class NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases (`*name`): a few hundred bytes of nested aliases expand to gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed here", self.peek_event().start_mark
            )
        return super().compose_node(parent, index)


@dataclass(frozen=True)
class DesignerDirectoryReader:
    """An image directory written by the Azure ML designer (_meta.yaml + images.lst + image/)."""

    root: Path

    def read(self) -> Listing:
        """The images images.lst lists, with their category as label and their id when it is one."""
        image_list = _image_list_name(self.root)
        found: list[Candidate] = []
        problems: list[str] = []
        for lineno, line in _lines(self.root / image_list):
            candidate = _candidate(self.root, line, f"{image_list} line {lineno}", problems)
            if candidate is not None:
                found.append(candidate)
        check_all_or_none_labeled(found, problems)
        if problems:
            raise InvalidDatasetError(
                f"The designer image directory {self.root} is invalid:\n{list_problems(problems)}"
            )
        if not found:
            raise InvalidDatasetError(f"The designer image directory {self.root} lists no images.")
        return Listing(tuple(found))


def _image_list_name(root: Path) -> str:
    """The image list _meta.yaml names (images.lst by default), once _meta.yaml is read safely and checked."""
    path = root / DESIGNER_META
    try:
        if path.stat().st_size > MAX_META_BYTES:
            raise InvalidDatasetError(
                f"{path} is {path.stat().st_size:,} bytes; a designer _meta.yaml is a few "
                f"lines (at most {MAX_META_BYTES:,} bytes are read)."
            )
        meta = yaml.load(read_text(path), Loader=NoAliasLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidDatasetError(f"{path} cannot be read: {str(exc)[:300]}.") from None
    if not isinstance(meta, dict) or meta.get("type") != "ImageDirectory":
        raise InvalidDatasetError(f"{path} does not describe a designer ImageDirectory ('type: ImageDirectory').")
    image_list = meta.get("image_list", "images.lst")
    if not isinstance(image_list, str) or not safe_relative_path(image_list):
        raise InvalidDatasetError(f"{path}: image_list {image_list!r} is not a relative path.")
    return image_list


def _lines(image_list: Path) -> list[tuple[int, str]]:
    """The non-blank lines of the image list, with their line numbers."""
    try:
        with open_text(image_list) as f:
            return [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidDatasetError(f"{image_list} cannot be read: {exc}.") from None


def _candidate(root: Path, line: str, where: str, problems: list[str]) -> Candidate | None:
    """The image one line of the image list describes, or None with what is wrong added to `problems`."""
    try:
        row = parse_json(line)
        name = row["image_info"]["file_name"]
    except (json.JSONDecodeError, KeyError, TypeError):
        problems.append(f"{where}: no image_info.file_name")
        return None
    label, ident = row.get("category"), row.get("id")
    if not isinstance(name, str) or not safe_relative_path(name):
        problems.append(f"{where}: file_name {name!r} is not a relative path inside {root}")
    elif label is not None and not isinstance(label, str | int):
        problems.append(f"{where}: category {label!r} is not a string")
    elif isinstance(label, str) and not label.strip():
        problems.append(f"{where}: the category is empty")
    else:
        ident = ident if is_integer(ident, 0) else None
        return Candidate(root / name, name, None if label is None else str(label), ident)
    return None
