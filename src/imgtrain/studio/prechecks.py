"""What the studio checks before any work, so that a run is refused rather than failing later: the images a source
holds and which of them convert would refuse (a quick scan, remembered while the files stay as they are), whether
the pretrained weights will be found, the batch size against the training images, the validation classes against
the training classes. Plain functions: no FastAPI here, and torch is loaded only by `weights_problem`."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..data.archives import archive_kind
from ..data.decoding import rgb_image
from ..data.image_directory import INDEX_NAME, META_NAME, ImageDirectory, label_list
from ..data.imaging import HEIF_INSTALL, BadImage, MissingDecoder, open_reduced, read_image_file
from ..data.ingest import DEFAULT_RESIZE
from ..data.readers import Candidate, Listing, create_reader
from ..data.readers.designer import DESIGNER_META
from ..errors import InvalidDatasetError, NotLabeledDatasetError, ParameterError, PretrainedWeightsError, list_problems

#: How many unreadable images a SourceFacts names (`unreadable_count` says how many there are in all).
NAMED = 20
#: How many sources' facts are remembered, and how many image files' verdicts (a few dozen bytes each).
REMEMBERED_SOURCES = 64
REMEMBERED_FILES = 1_000_000

#: A file's verdict: None (convert imports it), or ("bad" | "undecodable", why convert leaves it out).
Verdict = tuple[str, str] | None


@dataclass(frozen=True)
class SourceFacts:
    """What convert would make of a source: the images it would import and their classes (empty for unlabeled
    images), the images it would refuse (the first NAMED, with why), and what it would leave aside."""

    images: int  # what convert imports: the unreadable and undecodable images left out
    classes: dict[str, int]
    unreadable: list[str]  # paths inside the source, as convert names them; the first NAMED
    labeled: bool
    unreadable_count: int = 0  # every unreadable image, named or not
    reasons: dict[str, str] = field(default_factory=dict)  # why, for each one named
    undecodable: int = 0  # HEIF images while pillow-heif is not installed: convert leaves them out, refusing nothing
    ignored: int = 0  # files convert passes over: no image extension (.MOV, Thumbs.db), symbolic links
    multilabel: bool = False  # each image has a list of classes: `classes` counts the images having each


_lock = threading.Lock()
_sources: dict[tuple, SourceFacts] = {}
_verdicts: dict[tuple, Verdict] = {}
_digests: dict[tuple, str] = {}


def scan_source(path: Path) -> SourceFacts:
    """The facts of the local source at `path` (a folder, archive, manifest, designer or image directory): listed by
    convert's own reader, each image decoded as convert decodes it (at reduced scale, in threads). An image
    directory's come from its index. Remembered while the listing and every file's size and modification time stay
    the same. InvalidDatasetError as convert raises it for a source it cannot read (no images, a mixed layout...)."""
    path = Path(path).resolve()
    if not path.exists():
        raise InvalidDatasetError(f"The source {path} does not exist.", hint="check the path.")
    key: tuple
    if path.is_dir() and not (path / DESIGNER_META).is_file() and (path / META_NAME).is_file():
        key = ("index", str(path), _stat_key(path / META_NAME), _stat_key(path / INDEX_NAME))
        return _remembered(key, lambda: _indexed_facts(path))
    if path.is_file() and archive_kind(path):
        return _remembered(("archive", str(path), _stat_key(path)), lambda: _archive_facts(path))
    listing = create_reader(path, path.parent / "unused").read().as_text()  # only an archive unpacks anything
    key = ("listing", str(path), _signature(listing))
    return _remembered(key, lambda: _facts(path, listing, _verdicts_of([c.file for c in listing.candidates])))


def unreadable_problem(facts: SourceFacts, skip_invalid: bool, source: str) -> str | None:
    """What convert would refuse the source `source` for: unreadable images (unless `skip_invalid` leaves them
    out), or no image left to import; None when it would convert it."""
    if facts.unreadable_count and not skip_invalid:
        total = facts.images + facts.unreadable_count + facts.undecodable
        listed = list_problems([f"{name}: {facts.reasons[name]}" for name in facts.unreadable])
        if facts.unreadable_count > len(facts.unreadable):
            listed += f"\n  ... and {facts.unreadable_count - len(facts.unreadable)} more"
        error = InvalidDatasetError(
            f"{facts.unreadable_count} of {total} images in {source} cannot be used:\n{listed}",
            hint='tick "Skip unreadable images" (skip_invalid) to leave them out, or fix or remove these files.',
        )
        return str(error)
    if facts.images == 0:
        error = InvalidDatasetError(
            f"None of the images in {source} can be used.",
            hint=HEIF_INSTALL if facts.undecodable else "check the files.",
        )
        return str(error)
    return None


def _remembered(key: tuple, scan: Callable[[], SourceFacts]) -> SourceFacts:
    """The facts remembered under `key`, else scanned now and remembered."""
    with _lock:
        known = _sources.get(key)
    if known is not None:
        return known
    facts = scan()
    with _lock:
        if len(_sources) >= REMEMBERED_SOURCES:
            _sources.clear()
        _sources[key] = facts
    return facts


def _stat_key(path: Path) -> tuple[int, int, int]:
    """A file's identity and version: inode, size, modification time (zeros for a file that cannot be read)."""
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def _signature(listing: Listing) -> str:
    """A digest of a listing: each image's name, label, file and that file's `_stat_key`, and what was left aside."""
    digest = hashlib.sha256(f"{len(listing.ignored)} {listing.misnamed}".encode("utf-8", "surrogateescape"))
    for c in listing.candidates:
        digest.update(repr((c.source, c.label, str(c.file), _stat_key(c.file))).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _indexed_facts(path: Path) -> SourceFacts:
    """An image directory's facts from its index (its images were checked when it was written)."""
    directory = ImageDirectory.open(path)
    classes = {c: n for c, n in directory.class_counts().items() if n} if directory.labeled else {}
    return SourceFacts(
        images=len(directory),
        classes=classes,
        unreadable=[],
        labeled=directory.labeled,
        multilabel=directory.multilabel,
    )


def _archive_facts(archive: Path) -> SourceFacts:
    """An archive's facts: unpacked aside as convert unpacks it, scanned, removed (its files' verdicts forgotten)."""
    with tempfile.TemporaryDirectory(prefix="imgtrain-scan-") as extract:
        listing = create_reader(archive, Path(extract) / "extract").read().as_text()
        return _facts(archive, listing, _verdicts_of([c.file for c in listing.candidates], remember=False))


def _verdicts_of(files: Sequence[Path], remember: bool = True) -> list[Verdict]:
    """Each file's verdict: remembered ones looked up by path and `_stat_key`, the others decoded in threads (Pillow
    decodes without holding the GIL)."""
    keys = [(str(f), *_stat_key(f)) for f in files]
    with _lock:
        known = {k: _verdicts[k] for k in keys if k in _verdicts} if remember else {}
    todo = [i for i, k in enumerate(keys) if k not in known]
    workers = min(32, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = dict(zip(todo, pool.map(_verdict, [files[i] for i in todo]), strict=True))
    if remember:
        with _lock:
            if len(_verdicts) + len(found) > REMEMBERED_FILES:
                _verdicts.clear()
            _verdicts.update({keys[i]: v for i, v in found.items() if keys[i][1:] != (0, 0, 0)})
    return [known[k] if k in known else found[i] for i, k in enumerate(keys)]


def _verdict(file: Path) -> Verdict:
    """Whether convert imports `file`: decoded exactly as its import step decodes it (data.ingest: read, decoded
    for the default resize, a JPEG at reduced scale with every byte still read, made upright RGB)."""
    try:
        rgb_image(open_reduced(read_image_file(file), DEFAULT_RESIZE)[0])
    except MissingDecoder as exc:
        return ("undecodable", str(exc))
    except BadImage as exc:
        return ("bad", str(exc))
    except Exception as exc:  # noqa: BLE001 - a format quirk Pillow cannot handle: a bad image, as convert says
        return ("bad", f"cannot decode ({type(exc).__name__}: {exc})")
    return None


def _facts(source: Path, listing: Listing, verdicts: list[Verdict]) -> SourceFacts:
    """A source's facts from its listing and each image's verdict; names relative to the source."""
    prefix = f"{source}/"

    def name(c: Candidate | str) -> str:
        shown = c if isinstance(c, str) else c.source
        return shown[len(prefix) :] if shown.startswith(prefix) else shown

    counts: Counter[str] = Counter()
    unreadable = [(name(m.source), m.reason) for m in listing.misnamed]
    undecodable = 0
    for c, verdict in zip(listing.candidates, verdicts, strict=True):
        if verdict is None:
            counts.update(label_list(c.label))
        elif verdict[0] == "undecodable":
            undecodable += 1
        else:
            unreadable.append((name(c), verdict[1]))
    labeled = bool(listing.misnamed) or any(c.label is not None for c in listing.candidates)
    return SourceFacts(
        images=sum(v is None for v in verdicts),
        classes=dict(sorted(counts.items())) if labeled else {},
        unreadable=[n for n, _ in unreadable[:NAMED]],
        labeled=labeled,
        unreadable_count=len(unreadable),
        multilabel=any(isinstance(c.label, list | tuple) for c in listing.candidates),
        reasons=dict(unreadable[:NAMED]),
        undecodable=undecodable,
        ignored=len(listing.ignored),
    )


def weights_problem(family: str, model_name: str, offline: bool = False) -> str | None:
    """None when the pretrained ImageNet weights of `model_name` will be there when the run needs them: already in
    the cache the library reads (torch's hub cache, models.weights) with the hash their file name gives, or not yet
    but downloadable, which the library takes for granted unless offline (`offline`, or IMGTRAIN_OFFLINE=1, as
    models.weights decides: no check can tell without the network whether a download would succeed). Otherwise what
    to do: the file to put in which folder, or untick pretrained."""
    # imported here: the weights' file name is torchvision's, and torchvision loads torch (the server loads it on the
    # first check of a pretrained network, as it does for the form's list of networks)
    from ..models import weights as pretrained
    from ..models.architectures import Architecture

    try:
        Architecture(family, model_name)
    except ParameterError as exc:
        return str(exc)
    file = pretrained.imagenet_weights(model_name)
    offline = pretrained.offline_requested(offline)
    where = f"put {file.path.name} in {file.path.parent} (from {file.url})"
    if file.path.is_file():
        digest = _sha256(file.path)
        if digest.startswith(file.sha256_prefix):
            return None
        error = PretrainedWeightsError(
            f"The cached weights {file.path} have SHA-256 {digest}, not {file.sha256_prefix}... as {file.url} "
            "names it.",
            hint=f"delete the file and {where if offline else 'run again to download it afresh'}, or untick "
            "pretrained.",
        )
        return str(error)
    if not offline:
        return None  # the run downloads it once, hash-checked, into that cache
    error = PretrainedWeightsError(
        f"The pretrained weights of {model_name}, {file.path.name}, are not in {file.path.parent} and imgtrain is "
        f"offline ({pretrained.OFFLINE_ENV}).",
        hint=f"{where}, or untick pretrained.",
    )
    return str(error)


def _sha256(path: Path) -> str:
    """The file's SHA-256, remembered while its size and modification time stay the same (weights files are large)."""
    key = ("sha256", str(path), *_stat_key(path))
    with _lock:
        known = _digests.get(key)
    if known is None:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        known = digest.hexdigest()
        with _lock:
            _digests[key] = known
    return known


def batch_problem(batch_size: int, train_images: int) -> str | None:
    """The library's refusal (training.prechecks) of a batch larger than the training images, or None."""
    if batch_size <= train_images:
        return None
    if train_images == 0:
        return str(InvalidDatasetError("There are no training images.", hint="give the training a source of images."))
    error = ParameterError(
        f"batch_size {batch_size} is larger than the {train_images} training images.",
        hint=f"use a batch size of at most {train_images}.",
    )
    return str(error)


def classes_problem(
    train_classes: Mapping[str, int] | Iterable[str], valid_classes: Mapping[str, int] | Iterable[str]
) -> str | None:
    """The library's refusals (training.prechecks) of the training and validation classes, or None: training images
    without labels or of fewer than two classes, validation classes the training images have none of (named).
    Each is a class -> count mapping (a class counted 0 has no images) or the classes' names."""
    train, valid = _present(train_classes), _present(valid_classes)
    if not train:
        error: Exception = NotLabeledDatasetError(
            "The training images have no labels.",
            hint="give a folder in class-sub-folder layout (SRC/<class>/<image>) or a manifest with a label column.",
        )
        return str(error)
    if len(train) < 2:
        error = InvalidDatasetError(
            f"The training images are of {len(train)} class ({sorted(train)[0]}); a classifier needs at least 2.",
            hint="add images of other classes.",
        )
        return str(error)
    extra = sorted(valid - train)
    if extra:
        error = InvalidDatasetError(
            f"The validation images have classes the training images have no images of: {extra}.",
            hint="remove those images from validation, or add training images of those classes (a split with a "
            "larger fraction, or more images of them).",
        )
        return str(error)
    return None


def _present(classes: Mapping[str, int] | Iterable[str]) -> set[str]:
    """The classes with images: a mapping's classes counted above 0, or every name given."""
    if isinstance(classes, Mapping):
        return {c for c, n in classes.items() if n}
    return set(classes)
