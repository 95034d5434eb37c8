"""Safe file output: atomic writes, and output folders built aside then renamed into place.

A write that fails (disk full, read-only file system, no permission) raises OutputWriteError
naming the output, and leaves what was there before untouched.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import ImgtrainError, OutputExistsError, OutputWriteError, ParameterError
from .faults import crash_point


def write_failed(target: Path, exc: BaseException, kept: str = "") -> OutputWriteError:
    """The error for a failed write of `target`: says why, what was kept, and what to do."""
    reason = getattr(exc, "reason", None) or (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
    reason = re.sub(r".*I/O error: (.*?) \(os error \d+\).*", r"\1", reason)  # as safetensors' writer says it
    error = OutputWriteError(
        f"Writing {target} failed: {reason}.{' ' + kept if kept else ''}",
        hint="free some disk space, or choose an output you can write to, and run again.",
    )
    error.reason = reason
    return error


@contextlib.contextmanager
def reporting_write_errors(target: Path, kept: str = "") -> Iterator[None]:
    """Turn an OSError raised while writing `target` into OutputWriteError."""
    try:
        yield
    except OSError as exc:
        raise write_failed(target, exc, kept) from None


def make_parent(path: Path) -> None:
    """Create the folder that will hold `path`, or say clearly why it cannot be."""
    for ancestor in Path(path).absolute().parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputWriteError(
                    f"Cannot write {path}: {ancestor} is a file, not a folder.",
                    hint="choose an output path inside a folder.",
                )
            break
    with reporting_write_errors(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def current_umask() -> int:
    """This process's umask (read without changing it where /proc tells it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(path: str | Path, directory: bool = False) -> None:
    """Give a finished output the mode a plain `open` would have (0644 / 0755 under umask 022).

    Temporary files (mkstemp) and safetensors' writer create 0600; other accounts must be able
    to score or serve a model all the same.
    """
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_file(
    path: Path,
    kept: str = "The previous file, if any, is unchanged.",
    suffix: str = ".tmp",
    write_errors: tuple[type[BaseException], ...] = (),
    crash_at: tuple | None = None,
) -> Iterator[str]:
    """Yield a temporary file name beside `path`; what the block writes there replaces `path` at once.

    Readers see the old file or the new one, never half of it; on any failure the temporary file is
    removed and `path` is untouched. Disk full, quota, read-only and too-large errors from the block (and
    any of `write_errors`) become OutputWriteError naming `path` and saying what was `kept`.
    """
    path = Path(path)
    with reporting_write_errors(path, kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
    try:
        yield tmp
        with reporting_write_errors(path, kept):
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            publish(tmp)
            if crash_at:
                crash_point(*crash_at)
            os.replace(tmp, path)
    except BaseException as exc:
        if isinstance(exc, write_errors) or isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            raise write_failed(path, exc, kept) from None
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never half of it."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


_held = threading.local()  # real paths this thread holds the lock of


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold a lock on `out` (a hidden file beside it) so a second writer is refused, not interleaved.

    One lock per real folder, however it is named; re-entrant within a thread (train builds its
    model directory under the lock it took for the run). The lock file is removed on release.
    """
    out = Path(out)
    make_parent(out)
    real = out.resolve()
    held = _held.__dict__.setdefault("paths", set())
    if real in held:
        yield
        return
    lock = real.parent / f".{real.name}.lock"
    handle = _lock(lock, out)
    held.add(real)
    try:
        recover(out)
        yield
    finally:
        held.discard(real)
        with contextlib.suppress(OSError):
            lock.unlink()  # while still locked: whoever opened it meanwhile sees it gone and retries
        handle.close()


def _lock(lock: Path, out: Path):
    """An open, flock-ed handle on `lock`, the file that is there now (not one a releasing holder removed)."""
    import fcntl

    while True:
        with reporting_write_errors(out):
            handle = open(lock, "a")  # noqa: SIM115 - returned open: the lock lasts as long as the handle
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise OutputExistsError(
                f"Another imgtrain process is writing {out}.", hint="wait for it to finish, or choose another output."
            ) from None
        try:
            mine, there = os.fstat(handle.fileno()), os.stat(lock)
            if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                return handle
        except FileNotFoundError:
            pass
        handle.close()


def recover(out: Path) -> None:
    """Clean up after a writer of `out` that was killed: put back an output it had moved aside, drop half-built ones.

    Only safe while holding `exclusive(out)`.
    """
    prefix = glob.escape(f".{out.name}")
    for old in out.parent.glob(prefix + ".old-*"):
        if (old / "content").exists() and not (out.exists() or out.is_symlink()):
            os.rename(old / "content", out)
        shutil.rmtree(old, ignore_errors=True)
    for building in out.parent.glob(prefix + ".building-*"):
        shutil.rmtree(building, ignore_errors=True)
    for partial in out.parent.glob(prefix + ".*.tmp"):  # a file output's (atomic_file's) half-written copy
        if partial.is_file() and not partial.is_symlink():
            partial.unlink(missing_ok=True)


def _is_occupied(path: Path) -> bool:
    if path.is_dir():
        return any(path.iterdir())
    return path.exists() or path.is_symlink()


def within(path: str | Path, folder: str | Path) -> bool:
    """True when `path` is `folder` or lies inside it (links and `..` resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


#: What every folder imgtrain writes holds (image directory, model directories, export, report, checkpoint).
IMGTRAIN_MARKERS = (
    "imgtrain-images.json",
    "imgtrain-model.json",
    "imgtrain-export.json",
    "metrics.json",
    "checkpoint",
    "imgtrain-sweep.json",
)


def check_output(
    out: Path, overwrite: bool, inputs: Iterable[Path] = (), ours: Callable[[Path], bool] | None = None
) -> None:
    """Refuse an occupied output unless `overwrite`, and never an output that is, holds or lies in an input.

    `overwrite` replaces only what imgtrain wrote: a folder holding one of IMGTRAIN_MARKERS, or for a file output
    a regular file that `ours` recognizes; never a link, a device, a FIFO, or a file where a folder goes."""
    for inp in inputs:
        if within(inp, out):
            raise ParameterError(
                f"The output {out} is, or contains, the input {inp}; writing it would destroy the input.",
                hint="choose an output path outside the input.",
            )
        if within(out, inp):  # the next run over the input would read the output as part of it
            raise ParameterError(
                f"The output {out} lies inside the input {inp}.", hint="choose an output path outside the input."
            )
    if not overwrite and _is_occupied(out):
        raise OutputExistsError(
            f"The output {out} already exists and is not empty.",
            hint="choose another output path, or pass overwrite=True to replace it.",
            cli_hint="choose another output path, or pass --overwrite to replace it.",
        )
    if overwrite and _is_occupied(out):
        _check_replaceable(out, ours)


def _check_replaceable(out: Path, ours: Callable[[Path], bool] | None) -> None:
    """Refuse to replace `out` unless imgtrain wrote it (see check_output)."""
    what = None
    if out.is_symlink():
        what = "a symbolic link"
    elif out.is_dir():
        if not any((out / m).exists() for m in IMGTRAIN_MARKERS):
            what = "a folder that holds files imgtrain did not write"
    elif not out.is_file():
        what = "a special file (a FIFO, a device or a socket)"
    elif ours is None:
        what = "a file, where imgtrain writes a folder"
    elif not ours(out):
        what = "a file imgtrain did not write"
    if what:
        raise OutputExistsError(
            f"The output {out} already exists and is {what}; overwriting replaces only what imgtrain wrote.",
            hint="choose another output path, or remove it yourself.",
        )


def first_bytes(path: Path, size: int = 65536) -> bytes:
    """The first `size` bytes of a regular file (b"" when unreadable): enough to recognize what wrote it."""
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError:
        return b""


@contextlib.contextmanager
def building_dir(
    out: Path, overwrite: bool = False, inputs: Iterable[Path] = (), validate: Callable[[Path], object] | None = None
) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; on success it replaces `out`, on failure it vanishes.

    Readers of `out` never see a half-written folder, and a failed run leaves an
    existing `out` untouched. `validate` (the reader of what was built) runs before anything is
    replaced: an output its own reader would refuse never takes the place of a good one.
    """
    out = Path(out)
    inputs = list(inputs)
    check_output(out, overwrite, inputs)
    with exclusive(out):  # and a killed writer's half-built folder is removed
        kept = f"{out} is as it was before." if _is_occupied(out) else "Nothing was written."
        with reporting_write_errors(out, kept):
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
        with _replacing(out, tmp, overwrite, inputs, kept, validate):
            yield tmp


@contextlib.contextmanager
def _replacing(
    out: Path, tmp: Path, overwrite: bool, inputs: list[Path], kept: str, validate: Callable[[Path], object] | None
) -> Iterator[None]:
    """After the caller filled `tmp`: check it and move it into place; on any failure remove it."""
    try:
        yield
        crash_point("output-built")
        if validate is not None:
            try:
                validate(tmp)
            except ImgtrainError as exc:
                raise type(exc)(
                    f"What was built for {out} does not pass its own checks, so it was not written "
                    f"({exc.message}). {kept}",
                    exc.hint,
                ) from None
        publish(tmp, directory=True)
        check_output(out, overwrite, inputs)  # something may have appeared meanwhile
        _move_into_place(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS or isinstance(exc, OutputWriteError):
            raise write_failed(out, exc, kept) from None
        raise


# Errors of writing, not of reading the inputs (those say which input is wrong instead).
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _move_into_place(tmp: Path, out: Path) -> None:
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        out.rmdir()
    if not (out.exists() or out.is_symlink()):
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / "content")
    crash_point("output-swapping")
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old / "content", out)
        raise
    shutil.rmtree(old, ignore_errors=True)
