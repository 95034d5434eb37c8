"""The image directory format: images plus a versioned index; open, validate, write (no torch: data.dataset).

Layout (documented in docs/formats.md)::

    DIR/imgtrain-images.json   meta: format, format_version, labeled, classes, num_images (version 2: task)
    DIR/images.jsonl           one JSON object per image: id, path, label, width, height, source
    DIR/images/...             the image files

A multi-label directory (version 2, task "multilabel") gives each image a list of classes, possibly empty.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from PIL import Image

from .. import __version__
from ..errors import InvalidDatasetError, NotLabeledDatasetError, list_problems
from ..files import atomic_write_json, atomic_write_text
from ..jsonfiles import open_text, parse_json, read_versioned_json
from ..params import is_integer
from .decoding import check_indexed_size
from .imaging import BadImage, load_rgb

if TYPE_CHECKING:
    import torch

    from .dataset import ImageDataset

META_NAME = "imgtrain-images.json"
INDEX_NAME = "images.jsonl"
IMAGES_DIR = "images"
FORMAT = "imgtrain.image_directory"
#: Single-label directories are still written as version 1, which every imgtrain reads; a multi-label one is
#: version 2, which adds "task".
FORMAT_VERSION = 1
MULTILABEL_VERSION = 2
READ_VERSIONS = (FORMAT_VERSION, MULTILABEL_VERSION)
SINGLE_LABEL, MULTILABEL = "single_label", "multilabel"
TASKS = (SINGLE_LABEL, MULTILABEL)
FINGERPRINT_BYTES = 4096  # read from each end of every image to tell one image directory from another


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image of an image directory; `path` is relative to the directory, POSIX style."""

    id: int
    path: str
    label: str | list[str] | None  # a list (possibly empty) in a multi-label directory
    width: int
    height: int
    source: str | None = None


def safe_relative_path(path: str) -> bool:
    """True when `path` is relative, POSIX, and stays inside its base folder."""
    if not path or "\\" in path or "\x00" in path:
        return False
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and pure.parts[:1] != ("",)


def write_image_directory(
    root: Path, classes: Sequence[str], records: Sequence[ImageRecord], task: str | None = None
) -> None:
    """Write the index and meta file of an image directory whose images are already in `root`; multi-label when
    `task` says so or a record's label is a list."""
    labeled = bool(records) and all(r.label is not None for r in records)
    if not records:
        labeled = bool(classes)
    multilabel = task == MULTILABEL or any(isinstance(r.label, list) for r in records)
    lines = [json.dumps(asdict(r), ensure_ascii=False) for r in records]
    atomic_write_text(Path(root) / INDEX_NAME, "".join(line + "\n" for line in lines))
    task_fields = {"task": MULTILABEL} if multilabel else {}
    atomic_write_json(
        Path(root) / META_NAME,
        {
            "format": FORMAT,
            "format_version": MULTILABEL_VERSION if multilabel else FORMAT_VERSION,
            **task_fields,
            "labeled": labeled or multilabel,
            "classes": list(classes),
            "num_images": len(records),
            "index": INDEX_NAME,
            "created_by": f"imgtrain {__version__}",
        },
    )


class ImageDirectory:
    """An opened, validated image directory: its classes and image records."""

    def __init__(
        self,
        root: Path,
        classes: Sequence[str],
        records: Sequence[ImageRecord],
        labeled: bool,
        task: str = SINGLE_LABEL,
    ):
        self.root = Path(root)
        self.classes: tuple[str, ...] = tuple(classes)
        self.records: tuple[ImageRecord, ...] = tuple(records)
        self.labeled = labeled
        self.task = task

    @property
    def multilabel(self) -> bool:
        """Whether each image has a list of classes (possibly empty) rather than one."""
        return self.task == MULTILABEL

    @classmethod
    def open(cls, path: str | Path) -> ImageDirectory:
        """Open and validate the image directory at `path`; raise InvalidDatasetError saying what is wrong."""
        root = Path(path)
        meta = _read_meta(root)
        classes, task = meta["classes"], meta.get("task", SINGLE_LABEL)
        records, problems = _read_index(root, classes, meta["labeled"], task == MULTILABEL)
        if not problems and len(records) != meta["num_images"]:
            problems.append(f"{META_NAME} says {meta['num_images']} images, {INDEX_NAME} lists {len(records)}")
        if problems:
            raise InvalidDatasetError(
                f"The image directory {root} is damaged ({len(problems)} problems):\n{list_problems(problems)}",
                hint=f"recreate it with `imgtrain convert SOURCE {root} --overwrite`.",
            )
        return cls(root, classes, records, meta["labeled"], task)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        kind = f"{len(self.classes)} classes" if self.labeled else "unlabeled"
        kind += ", multi-label" if self.multilabel else ""
        return f"ImageDirectory({str(self.root)!r}, {len(self)} images, {kind})"

    def image_path(self, index: int) -> Path:
        """The file of the image at position `index`."""
        return self.root / self.records[index].path

    def load(self, index: int) -> Image.Image:
        """The image at position `index` as upright 8-bit RGB."""
        path = self.image_path(index)
        record = self.records[index]
        try:
            return load_indexed(path, record.width, record.height)
        except BadImage as exc:
            raise InvalidDatasetError(
                f"Image {path} of {self.root} cannot be read: {exc}.",
                hint="restore the file, or recreate the directory with `imgtrain convert`.",
            ) from None

    def fingerprint(self) -> str:
        """A digest of the index (classes; each image's id, path, label, size) and of each image file's length,
        first and last 4 KB: another directory with the same counts, or the same one edited, gives another
        digest, at the cost of 8 KB read per image rather than every byte."""
        digest = hashlib.sha256(json.dumps(self.classes, ensure_ascii=False).encode())
        for r in self.records:
            digest.update(json.dumps([r.id, r.path, r.label, r.width, r.height]).encode())
            try:
                with open(self.root / r.path, "rb") as f:
                    length = os.fstat(f.fileno()).st_size
                    digest.update(length.to_bytes(8, "little") + f.read(FINGERPRINT_BYTES))
                    if length > 2 * FINGERPRINT_BYTES:
                        f.seek(-FINGERPRINT_BYTES, os.SEEK_END)
                    digest.update(f.read(FINGERPRINT_BYTES))
            except OSError:
                digest.update(b"missing")  # named when the image is loaded
        return digest.hexdigest()[:32]

    def class_counts(self) -> dict[str, int]:
        """Number of images per class, in class order (multi-label: the images that have the class)."""
        counts = dict.fromkeys(self.classes, 0)
        for r in self.records:
            for label in label_list(r.label):
                counts[label] += 1
        return counts

    def require_single_label(self, what: str) -> ImageDirectory:
        """This directory; InvalidDatasetError when it is multi-label and `what` reads single-label data only."""
        if self.multilabel:
            raise InvalidDatasetError(
                f"The image directory {self.root} is multi-label (each image has a list of classes); {what} reads "
                "single-label image directories only in this version of imgtrain.",
                hint="convert a manifest with one label per image, or class folders, for this step.",
            )
        return self

    def require_labels(self, role: str = "training") -> None:
        """Raise NotLabeledDatasetError when this directory has no labels."""
        if not self.labeled:
            raise NotLabeledDatasetError(
                f"The {role} image directory {self.root} has no labels.",
                hint="convert a folder in class-sub-folder layout (SRC/<class>/<image>) or a manifest "
                "with a label column.",
            )

    def dataset(
        self,
        transform: Callable[[torch.Tensor], Any] | None = None,
        classes: Sequence[str] | None = None,
        multilabel: bool | None = None,
    ) -> ImageDataset:
        """A torch Dataset of (image, label index) pairs; label -1 when unlabeled; in a multi-label directory (or
        with `multilabel`, in any labeled one) the label is the image's classes as a 0/1 vector (float32).

        Images are uint8 CHW tensors before `transform`. `classes` maps labels to
        indices (default: this directory's own classes).
        """
        from .dataset import ImageDataset

        return ImageDataset(self, transform, classes, multilabel)


def load_indexed(path: Path, width: int, height: int) -> Image.Image:
    """Read an image of an image directory, refusing one whose size is not the size its index recorded.

    Training and scoring plan batches and bound memory from the indexed sizes, so a file replaced
    after convert must not slip through.
    """
    img = load_rgb(path)
    check_indexed_size(img.size, (width, height))
    return img


def _read_meta(root: Path) -> dict[str, Any]:
    meta_path = root / META_NAME
    if not root.is_dir():
        raise InvalidDatasetError(
            f"{root} is not an image directory: it {'is a file' if root.exists() else 'does not exist'}.",
            hint=f"create one with `imgtrain convert SOURCE {root}`.",
        )
    if not meta_path.is_file():
        hint = f"create one with `imgtrain convert {root} OUT`."
        raise InvalidDatasetError(f"{root} is not an imgtrain image directory: it has no {META_NAME}.", hint=hint)
    meta = read_versioned_json(
        meta_path, FORMAT, READ_VERSIONS, InvalidDatasetError, f"recreate it with `imgtrain convert SOURCE {root}`."
    )
    problems = []
    if meta.get("task", SINGLE_LABEL) not in TASKS or (meta.get("task") == MULTILABEL) != (
        meta["format_version"] == MULTILABEL_VERSION
    ):
        problems.append(f"'task' must be {MULTILABEL!r} in a version-2 directory, and absent in a version-1 one")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        problems.append("'classes' must be a list of non-empty strings")
    elif len(set(classes)) != len(classes):
        problems.append("'classes' lists a class twice")
    if not isinstance(meta.get("labeled"), bool):
        problems.append("'labeled' must be true or false")
    n = meta.get("num_images")
    if not is_integer(n, 0):
        problems.append("'num_images' must be a non-negative integer")
    if meta.get("index", INDEX_NAME) != INDEX_NAME:
        problems.append(f"'index' must be {INDEX_NAME!r}")
    if problems:
        raise InvalidDatasetError(f"{meta_path} is invalid:\n{list_problems(problems)}")
    return meta


def _read_index(root: Path, classes: list[str], labeled: bool, multilabel: bool) -> tuple[list[ImageRecord], list[str]]:
    index_path = root / INDEX_NAME
    known = set(classes)
    records: list[ImageRecord] = []
    problems: list[str] = []
    seen_ids: set[int] = set()
    try:
        handle = open_text(index_path)
    except OSError as exc:
        return [], [f"{INDEX_NAME} cannot be read: {exc.strerror or exc}"]
    with handle:
        try:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{INDEX_NAME} line {lineno}"
                try:
                    raw = parse_json(line)
                    record = ImageRecord(**raw) if isinstance(raw, dict) else None
                except (json.JSONDecodeError, TypeError):
                    record = None
                if record is None:
                    problems.append(f"{where}: not an image record")
                    continue
                problem = _record_problem(record, known, labeled, seen_ids, multilabel)
                if problem is None and not (root / record.path).is_file():
                    problem = f"image file {record.path} is missing"
                if problem:
                    problems.append(f"{where}: {problem}")
                    continue
                seen_ids.add(record.id)
                records.append(record)
        except UnicodeDecodeError as exc:
            problems.append(f"{INDEX_NAME} is not UTF-8 text ({exc})")
    return records, problems


def single_label(label: str | list[str] | tuple[str, ...] | None) -> str | None:
    """The one class of an image of single-label data (None when unlabeled); multi-label data is refused before any
    single-label step reads it, so a list here is a bug."""
    assert not isinstance(label, list | tuple), "multi-label data reached a single-label step"
    return label


def label_list(label: str | Sequence[str] | None) -> list[str]:
    """An image's classes as a list: [] when unlabeled, [label] for one label, the list itself for several."""
    if label is None:
        return []
    return [label] if isinstance(label, str) else list(label)


def _record_problem(r: ImageRecord, known: set[str], labeled: bool, seen_ids: set[int], multilabel: bool) -> str | None:
    if not is_integer(r.id, 0):
        return f"id {r.id!r} is not a non-negative integer"
    if r.id in seen_ids:
        return f"id {r.id} appears twice"
    if not isinstance(r.path, str) or not safe_relative_path(r.path):
        return f"path {r.path!r} is not a relative path inside the directory"
    if not (is_integer(r.width, 1) and is_integer(r.height, 1)):
        return f"width/height {r.width!r}x{r.height!r} are not positive integers"
    if r.source is not None and not isinstance(r.source, str):
        return "source must be a string or null"
    if multilabel:
        if not isinstance(r.label, list) or not all(isinstance(c, str) and c in known for c in r.label):
            return f"label {r.label!r} is not a list of the classes"
        if len(set(r.label)) != len(r.label):
            return f"label {r.label!r} names a class twice"
    elif labeled:
        if not isinstance(r.label, str) or r.label not in known:
            return f"label {r.label!r} is not one of the classes"
    elif r.label is not None:
        return "an unlabeled directory's images must have label null"
    return None
