"""Manifests: a CSV (path,label or path,labels) or JSON-lines ({"path": ..., "label": ...}) file listing images by
path. A label that is a list (JSON lines), or a 'labels' column of classes joined by ';' (CSV), makes the source
multi-label; an empty list means "none of the classes". Azure AutoML's JSON lines ({"image_url": ..., "label":
[...]}) read as they are."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ...config import LABEL_SEPARATOR
from ...errors import InvalidDatasetError
from ...jsonfiles import open_text, parse_json
from ...params import is_integer
from ..image_directory import list_problems
from .listing import Candidate, Listing, check_all_or_none_labeled, printable

CSV_SUFFIX = ".csv"
JSON_LINES_SUFFIXES = (".jsonl", ".json", ".ndjson")
#: Azure AutoML's manifests name the image "image_url" (relative to the manifest here).
PATH_KEYS = ("path", "image_url")
MANIFEST_SUFFIXES = (CSV_SUFFIX, *JSON_LINES_SUFFIXES)


@dataclass(frozen=True)
class CsvManifestReader:
    """A CSV manifest with a header line naming a 'path' column and optionally a 'label' one, or a 'labels' one
    holding each image's classes joined by ';' (any case)."""

    manifest: Path
    allow_outside: bool = False

    def read(self) -> Listing:
        """The images the manifest lists, paths relative to its folder (kept inside it unless `allow_outside`)."""
        rows: list[tuple[int, dict]] = []
        try:
            with open_text(self.manifest, "utf-8-sig", newline="") as f:
                reader = csv.DictReader(f)
                fields = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
                if "path" not in fields:
                    raise InvalidDatasetError(
                        f"The manifest {self.manifest} has no 'path' column (columns: {reader.fieldnames}).",
                        hint="start the CSV with a header line 'path,label' (label is optional).",
                    )
                if "label" in fields and "labels" in fields:
                    raise InvalidDatasetError(
                        f"The manifest {self.manifest} has both a 'label' and a 'labels' column.",
                        hint="keep 'label' (one class per image) or 'labels' (classes joined by ';'), not both.",
                    )
                for lineno, row in enumerate(reader, 2):
                    label: str | list[str] | None = row.get(fields["label"]) if "label" in fields else None
                    if "labels" in fields:
                        cell = row.get(fields["labels"]) or ""
                        label = [name for name in (n.strip() for n in cell.split(LABEL_SEPARATOR)) if name]
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
            with open_text(self.manifest, "utf-8-sig") as f:  # a byte-order mark is read past, as in a CSV
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = parse_json(line)
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
        path = next((row[key] for key in PATH_KEYS if key in row), None)
        label, problem = _label(row.get("label"))
        if not isinstance(path, str) or not path.strip():
            problems.append(f"line {lineno}: no path")
        elif "://" in path:
            problems.append(
                f"line {lineno}: {path[:80]!r} is a URL; put the images beside the manifest and name "
                "them by relative paths"
            )
        elif problem:
            problems.append(f"line {lineno}: {problem}")
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


def _label(raw: object) -> tuple[str | tuple[str, ...] | None, str | None]:
    """A row's label: one class name, a tuple of them (multi-label, possibly empty) or None; or what is wrong."""
    if is_integer(raw):
        raw = str(raw)
    if isinstance(raw, str):
        return raw.strip() or None, None
    if raw is None:
        return None, None
    if not isinstance(raw, list):
        return None, f"label {raw!r:.80} is neither a class name nor a list of them"
    names = [str(n) if is_integer(n) else n for n in raw]
    if not all(isinstance(n, str) and n.strip() for n in names):
        return None, f"label {raw!r:.80} must list class names"
    stripped = tuple(n.strip() for n in names)
    if len(set(stripped)) != len(stripped):
        return None, f"label {raw!r:.80} names a class twice"
    return stripped, None


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
