"""Manifests: a CSV (path,label) or JSON-lines ({"path": ..., "label": ...}) file listing images by path."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ...errors import InvalidDatasetError
from ...params import is_integer
from ..image_directory import list_problems
from .listing import Candidate, Listing, check_all_or_none_labeled, printable

CSV_SUFFIX = ".csv"
JSON_LINES_SUFFIXES = (".jsonl", ".json", ".ndjson")
MANIFEST_SUFFIXES = (CSV_SUFFIX, *JSON_LINES_SUFFIXES)


@dataclass(frozen=True)
class CsvManifestReader:
    """A CSV manifest with a header line naming a 'path' column and optionally a 'label' one (any case)."""

    manifest: Path
    allow_outside: bool = False

    def read(self) -> Listing:
        """The images the manifest lists, paths relative to its folder (kept inside it unless `allow_outside`)."""
        rows: list[tuple[int, dict]] = []
        try:
            with self.manifest.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                fields = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
                if "path" not in fields:
                    raise InvalidDatasetError(
                        f"The manifest {self.manifest} has no 'path' column (columns: {reader.fieldnames}).",
                        hint="start the CSV with a header line 'path,label' (label is optional).",
                    )
                for lineno, row in enumerate(reader, 2):
                    label = row.get(fields["label"]) if "label" in fields else None
                    rows.append((lineno, {"path": row.get(fields["path"]), "label": label}))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InvalidDatasetError(f"The manifest {self.manifest} cannot be read: {exc}.") from None
        return _listing(self.manifest, rows, self.allow_outside)


@dataclass(frozen=True)
class JsonLinesManifestReader:
    """A JSON-lines manifest: one object per line with a "path" and optionally a "label"; blank lines skipped."""

    manifest: Path
    allow_outside: bool = False

    def read(self) -> Listing:
        """The images the manifest lists, paths relative to its folder (kept inside it unless `allow_outside`)."""
        rows: list[tuple[int, dict]] = []
        problems = []
        try:
            with self.manifest.open(encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        problems.append(f"line {lineno}: not JSON ({exc.msg})")
                        continue
                    if not isinstance(row, dict):
                        problems.append(f"line {lineno}: not a JSON object")
                        continue
                    rows.append((lineno, row))
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidDatasetError(f"The manifest {self.manifest} cannot be read: {exc}.") from None
        if problems:
            raise InvalidDatasetError(
                f"The manifest {self.manifest} is invalid:\n{list_problems(problems)}",
                hint='write one object per line: {"path": "a/b.png", "label": "cat"}.',
            )
        return _listing(self.manifest, rows, self.allow_outside)


def _listing(manifest: Path, rows: list[tuple[int, dict]], allow_outside: bool) -> Listing:
    """The candidates of a manifest's (line number, row) pairs; InvalidDatasetError naming every bad row."""
    base = manifest.parent
    problems: list[str] = []
    found: list[Candidate] = []
    for lineno, row in rows:
        path, label = row.get("path"), row.get("label")
        if is_integer(label):
            label = str(label)
        if isinstance(label, str):
            label = label.strip() or None
        if not isinstance(path, str) or not path.strip():
            problems.append(f"line {lineno}: no path")
        elif label is not None and not isinstance(label, str):
            problems.append(f"line {lineno}: label {label!r} is not a string")
        else:
            found.append(Candidate(base / path.strip(), path.strip(), label))
    check_all_or_none_labeled(found, problems)
    if problems:
        raise InvalidDatasetError(
            f"The manifest {manifest} is invalid:\n{list_problems(problems)}",
            hint="give every row a path, and either every row a label or none.",
        )
    if not found:
        raise InvalidDatasetError(f"The manifest {manifest} lists no images.", hint="add rows 'path,label'.")
    if not allow_outside:
        _check_inside(manifest, found)
    return Listing(tuple(found))


def _check_inside(manifest: Path, candidates: list[Candidate]) -> None:
    """Manifest paths stay in the manifest's folder (after resolving `..` and links) unless allowed."""
    base = manifest.parent.resolve()
    outside = [c.source for c in candidates if not c.file.resolve().is_relative_to(base)]
    if outside:
        raise InvalidDatasetError(
            f"{len(outside)} paths in the manifest {manifest} lead outside its folder {base}:\n"
            f"{list_problems([printable(p) for p in outside])}",
            hint="give paths relative to the manifest's folder, or pass allow_outside=True to read files anywhere.",
            cli_hint="give paths relative to the manifest's folder, or pass --allow-outside-paths to read files "
            "anywhere.",
        )
