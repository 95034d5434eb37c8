"""Reading the text and JSON files a user may hand imgtrain: one way to open them (regular files of a bounded size
only: a FIFO hung, /dev/zero was read as one endless line), one parser for JSON and JSON lines (nesting too deep is
malformed JSON, not a RecursionError), and the versioned `format` / `format_version` check of imgtrain's own
documents."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, TextIO

from .errors import ImgtrainError

#: The largest manifest, index, list or document read (an index of ten million images is about 2 GB).
MAX_TEXT_BYTES = 4 * 2**30


def open_text(path: str | Path, encoding: str = "utf-8", newline: str | None = None) -> TextIO:
    """A text file a user named, opened for reading if it is a regular file of at most MAX_TEXT_BYTES (links
    followed); OSError otherwise, which every reader already turns into its named error."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting for a writer
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, a device or a socket is never read)", str(path))
        if info.st_size > MAX_TEXT_BYTES:
            raise OSError(errno.EFBIG, f"larger than {MAX_TEXT_BYTES // 2**30} GiB", str(path))
        return open(fd, encoding=encoding, newline=newline)  # noqa: SIM115 - the caller closes it
    except BaseException:
        os.close(fd)
        raise


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The whole of a text file a user named (open_text's rules)."""
    with open_text(path, encoding) as f:
        return f.read()


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
        data = parse_json(read_text(path))
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
