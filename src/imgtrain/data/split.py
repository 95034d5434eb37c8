"""Split Image Directory: one image directory into two parts, stratified by class (multi-label: by iterative
stratification, each class's share as even as the other classes of its images allow)."""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import check_seed
from ..errors import ParameterError
from ..files import building_dir
from ..params import is_number
from .image_directory import IMAGES_DIR, ImageDirectory, ImageRecord, single_label, write_image_directory

log = logging.getLogger(__name__)


def split_indices(
    labels: Sequence[str | list[str] | tuple[str, ...] | None], fraction: float, seed: int, stratify: bool = True
) -> list[int]:
    """Positions of the first part: floor(fraction x n) of them, drawn per class when `stratify` (iteratively when
    the labels are lists of classes)."""
    n = len(labels)
    total = math.floor(fraction * n + 1e-9)
    rng = np.random.default_rng(seed)
    if not stratify:
        return sorted(rng.permutation(n)[:total].tolist())
    if any(isinstance(label, list | tuple) for label in labels):
        return _iterative_indices([list(label or ()) for label in labels], fraction, total, rng)
    named = [single for label in labels if (single := single_label(label)) is not None]
    if len(named) < n:
        return sorted(rng.permutation(n)[:total].tolist())
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(named):
        groups.setdefault(label, []).append(i)
    names = sorted(groups)
    exact = [fraction * len(groups[c]) for c in names]
    quota = [math.floor(e + 1e-9) for e in exact]
    # Hand the images floor() left over to the classes with the largest remainders.
    by_remainder = sorted(range(len(names)), key=lambda k: (-(exact[k] - quota[k]), k))
    for k in by_remainder[: total - sum(quota)]:
        quota[k] += 1
    chosen: list[int] = []
    for name, q in zip(names, quota, strict=True):
        members = groups[name]
        chosen.extend(members[j] for j in rng.permutation(len(members))[:q])
    return sorted(chosen)


def _iterative_indices(label_sets: list[list[str]], fraction: float, total: int, rng: np.random.Generator) -> list[int]:
    """Iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011) into two parts, the first of exactly `total`
    images: the rarest class left is placed first, each of its images into the part that still wants most of that
    class (then most images, then at random); images with no class fill what is left."""
    n = len(label_sets)
    wanted = [total, n - total]
    by_class: dict[str, list[int]] = {}
    for i in rng.permutation(n).tolist():
        for name in label_sets[i]:
            by_class.setdefault(name, []).append(i)
    wanted_of = {name: [fraction * len(members), (1 - fraction) * len(members)] for name, members in by_class.items()}
    left = {name: len(members) for name, members in by_class.items()}
    rank = {name: r for r, name in enumerate(rng.permutation(sorted(by_class)).tolist())}
    part: dict[int, int] = {}
    while any(left.values()):
        rarest = min((name for name in left if left[name]), key=lambda name: (left[name], rank[name]))
        for i in by_class[rarest]:
            if i in part:
                continue
            if min(wanted) <= 0:
                chosen = 0 if wanted[1] <= 0 else 1
            else:
                want = wanted_of[rarest]
                keys = [(want[k], wanted[k], rng.random()) for k in (0, 1)]
                chosen = 0 if keys[0] > keys[1] else 1
            part[i] = chosen
            wanted[chosen] -= 1
            for name in label_sets[i]:
                wanted_of[name][chosen] -= 1
                left[name] -= 1
    for i in rng.permutation(n).tolist():
        if i not in part:
            chosen = 0 if wanted[0] > 0 else 1
            part[i] = chosen
            wanted[chosen] -= 1
    return sorted(i for i, k in part.items() if k == 0)


def split(
    src: str | Path,
    out1: str | Path,
    out2: str | Path,
    *,
    fraction: float = 0.9,
    seed: int = 1,
    stratify: bool = True,
    overwrite: bool = False,
) -> tuple[ImageDirectory, ImageDirectory]:
    """Write the first floor(fraction x n) images to `out1` and the rest to `out2`; same seed, same split."""
    if not is_number(fraction, 0.0, 1.0):
        raise ParameterError(
            f"fraction must be between 0 and 1, got {fraction!r}.",
            hint="give the share of images for the first output, e.g. 0.9.",
        )
    check_seed(seed)
    src, out1, out2 = Path(src), Path(out1), Path(out2)
    if out1.resolve() == out2.resolve():
        raise ParameterError(f"The two outputs are the same path {out1}.", hint="name two different outputs.")
    directory = ImageDirectory.open(src)
    first = set(split_indices([r.label for r in directory], fraction, seed, stratify and directory.labeled))
    parts: tuple[list[ImageRecord], list[ImageRecord]] = ([], [])
    for i, record in enumerate(directory):
        parts[0 if i in first else 1].append(record)
    with (
        building_dir(out1, overwrite, [src], ImageDirectory.open) as tmp1,
        building_dir(out2, overwrite, [src], ImageDirectory.open) as tmp2,
    ):
        for tmp, records in zip((tmp1, tmp2), parts, strict=True):
            _place_images(directory.root, tmp, records)
            write_image_directory(tmp, directory.classes if directory.labeled else [], records, directory.task)
    for out, records in zip((out1, out2), parts, strict=True):
        if not records:
            log.warning("%s received no images (fraction %s of %d images)", out, fraction, len(directory))
    log.info("split %d images: %d to %s, %d to %s", len(directory), len(parts[0]), out1, len(parts[1]), out2)
    return ImageDirectory.open(out1), ImageDirectory.open(out2)


def _place_images(src_root: Path, dest_root: Path, records: list[ImageRecord]) -> None:
    """Hard-link each image into place (instant, no extra space), copying where links fail."""
    (dest_root / IMAGES_DIR).mkdir(exist_ok=True)
    for r in records:
        target = dest_root / r.path
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src_root / r.path, target)
        except OSError:
            shutil.copyfile(src_root / r.path, target)
