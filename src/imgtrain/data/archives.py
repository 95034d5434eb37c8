"""Safe extraction of .zip and .tar archives: nothing lands outside the destination."""

from __future__ import annotations

import functools
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import InvalidDatasetError
from ..files import WRITE_ERRNOS, write_failed
from .image_directory import list_problems
from .imaging import MAX_FILE_BYTES, is_image_name

#: An archive may hold at most this many members ...
MAX_MEMBERS = 1_000_000
#: ... and unpack to at most this many bytes (guards against zip bombs).
MAX_UNPACKED_BYTES = 64 * 1024**3
#: One member may unpack to at most what imgtrain reads of one image file.
MAX_MEMBER_BYTES = MAX_FILE_BYTES
#: Past this much unpacked, a member (zip) or the archive (tar) may expand at most MAX_RATIO times.
RATIO_FREE_BYTES = 64 * 1024**2
MAX_RATIO = 200

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz", ".gz", ".bz2", ".xz")
ZIP_SUFFIXES = (".zip",)


def archive_kind(path: Path) -> str | None:
    """'zip', 'tar' or None, from the file name."""
    name = path.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    return None


def _unsafe_reason(name: str) -> str | None:
    if not name or "\x00" in name:
        return "empty or invalid member name"
    pure = PurePosixPath(name)
    if pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in pure.parts:
        return "path leaves the archive ('..')"
    return None


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(name).parts)


class _Extractor:
    """Writes accepted members under `dest`, collecting refusals and enforcing limits."""

    def __init__(self, archive: Path, dest: Path):
        self.archive = archive
        self.dest = dest
        self.refused: list[str] = []
        self.ignored: list[str] = []
        self.members = 0
        self.unpacked = 0

    def count(self, name: str, size: int, packed: int) -> None:
        """Refuse, before unpacking it, a member that is too large or expands too much (by its declared sizes)."""
        self.members += 1
        self.unpacked += max(0, size)
        if self.members > MAX_MEMBERS or self.unpacked > MAX_UNPACKED_BYTES:
            raise self.bomb(
                f"holds more than {MAX_MEMBERS:,} members or unpacks to more than "
                f"{MAX_UNPACKED_BYTES / 1024**3:.0f} GiB"
            )
        if size > MAX_MEMBER_BYTES:
            raise self.bomb(f"has a member, {name}, of {size:,} bytes unpacked (at most {MAX_MEMBER_BYTES:,})")
        if size > RATIO_FREE_BYTES and size > MAX_RATIO * max(packed, 1):
            raise self.bomb(
                f"has a member, {name}, that expands {size / max(packed, 1):,.0f} times (at most {MAX_RATIO})"
            )

    def bomb(self, why: str) -> InvalidDatasetError:
        return InvalidDatasetError(
            f"The archive {self.archive} {why}; it is refused as a possible archive bomb, before unpacking it.",
            hint="unpack it yourself and convert the folder.",
        )

    def copy(self, name: str, src, target: Path) -> None:
        """Stream one member to `target`, stopping at MAX_MEMBER_BYTES whatever its header declared."""
        written = 0
        with open(target, "wb") as out:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > MAX_MEMBER_BYTES:
                    raise self.bomb(
                        f"has a member, {name}, larger than its header says (over {MAX_MEMBER_BYTES:,} bytes)"
                    )
                out.write(chunk)

    def take(self, name: str, reason: str | None, is_dir: bool, open_member, shown: str | None = None) -> None:
        """Refuse a member (with `reason`, listed as `shown`), skip a folder, or unpack a file."""
        if reason:
            self.refused.append(f"{shown or name}: {reason}")
            return
        if is_dir or self.refused:
            return
        target = self.accept(name)
        if target is not None:
            with open_member() as src:
                self.copy(name, src, target)

    def accept(self, name: str) -> Path | None:
        """The path to write member `name` to, or None to skip it."""
        if _hidden(name):
            return None
        if not is_image_name(name):
            self.ignored.append(name)
            return None
        target = self.dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def finish(self) -> list[str]:
        if self.refused:
            raise InvalidDatasetError(
                f"The archive {self.archive} has {len(self.refused)} members that would land outside the "
                f"output or are links; nothing was written:\n{list_problems(self.refused)}",
                hint="repack the archive with plain files and relative paths only.",
            )
        return self.ignored


def extract(archive: Path, dest: Path) -> list[str]:
    """Extract the image files of `archive` into `dest`; return the names of non-image members skipped.

    Absolute paths, '..', symlinks, hard links and device files are refused: the whole
    archive is rejected with InvalidDatasetError naming them.
    """
    kind = archive_kind(archive)
    try:
        if kind == "zip":
            return _extract_zip(archive, dest)
        return _extract_tar(archive, dest)
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, RuntimeError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:  # our disk is full, the archive is fine
            raise write_failed(dest, exc, "Nothing was written.") from None
        raise InvalidDatasetError(
            f"The archive {archive} cannot be read: {type(exc).__name__}: {exc}.",
            hint="check that the file is a complete .zip / .tar(.gz/.bz2/.xz) archive.",
        ) from None


def _extract_zip(archive: Path, dest: Path) -> list[str]:
    ex = _Extractor(archive, dest)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            ex.count(info.filename, info.file_size, info.compress_size)
            name = info.filename.replace("\\", "/")
            reason = _unsafe_reason(name)
            if reason is None and stat.S_ISLNK(info.external_attr >> 16):
                reason = "symbolic link"
            ex.take(name, reason, info.is_dir(), functools.partial(zf.open, info), shown=info.filename)
    return ex.finish()


def _extract_tar(archive: Path, dest: Path) -> list[str]:
    ex = _Extractor(archive, dest)
    packed = archive.stat().st_size  # a compressed tar has no per-member sizes: its ratio is the whole file's
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:
            ex.count(member.name, member.size, packed * member.size // max(ex.unpacked + member.size, 1))
            reason = _unsafe_reason(member.name)
            if reason is None and member.issym():
                reason = f"symbolic link to {member.linkname}"
            elif reason is None and member.islnk():
                reason = f"hard link to {member.linkname}"
            elif reason is None and not (member.isfile() or member.isdir()):
                reason = "device, fifo or other special file"
            ex.take(member.name, reason, member.isdir(), functools.partial(tf.extractfile, member))
    return ex.finish()
