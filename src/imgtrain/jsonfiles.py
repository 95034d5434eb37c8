"""Reading JSON documents a user may hand imgtrain: one parser for JSON and JSON lines (nesting too deep is malformed
JSON, not a RecursionError), and the versioned `format` / `format_version` check of imgtrain's own documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ImgtrainError


def parse_json(text: str | bytes) -> Any:
    """json.loads, where JSON nested too deeply for Python's parser is a JSONDecodeError like any other malformed
    JSON (a RecursionError crashed every reader of a file a user gives: manifests, indexes, scores)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None


def format_problem(
    data: Any, fmt: str, version: int | tuple[int, ...], kinds: dict[str, str] | None = None
) -> str | None:
    """What keeps `data` from being a document of format `fmt` at `version` (or one of several versions this
    imgtrain reads); None when it is one."""
    kind = data.get("format") if isinstance(data, dict) else None
    if kind != fmt:
        known = (kinds or {}).get(kind) if isinstance(kind, str) else None  # a hand-edited format may be anything
        return f"it is {known}" if known else f"it is not a {fmt} document (format {str(kind)[:60]!r})"
    versions = version if isinstance(version, tuple) else (version,)
    found = data.get("format_version")
    if found not in versions:
        readable = " or ".join(map(str, versions))
        return (
            f"it has format_version {found!r}; this imgtrain reads {readable} (upgrade imgtrain, or recreate it "
            "with this version)"
        )
    return None


def read_versioned_json(
    path: Path,
    fmt: str,
    version: int | tuple[int, ...],
    error: type[ImgtrainError],
    hint: str | None = None,
    kinds: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON object in `path` if it is of format `fmt` at `version`; otherwise `error` saying what it is."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path} does not exist.", hint) from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{path} is not readable JSON: {str(exc)[:200]}.", hint) from None
    problem = format_problem(data, fmt, version, kinds)
    if problem:
        raise error(f"{path} cannot be used: {problem}.", hint)
    return data


def is_imgtrain_json(path: Path, fmt: str) -> bool:
    """Whether `path` is a JSON document of imgtrain's format `fmt` (for check_output's `ours`)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(1 << 20))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("format") == fmt
