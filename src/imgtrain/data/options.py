"""Convert to Image Directory's and Split Image Directory's parameters, declared once (params.param): the CLI's
options, the studio's forms and their checks are built from these declarations, as train's are."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import MAX_SEED
from ..params import check, param


@dataclass(frozen=True)
class ConvertOptions:
    """How convert reads a source (the source and the output are arguments, not parameters)."""

    skip_invalid: bool = param(
        False,
        "leave unreadable images out (listed in OUT/convert-report.json) instead of failing",
    )
    allow_outside_paths: bool = param(
        False,
        "let a manifest name files outside its own folder (absolute paths, ..); refused otherwise",
        studio=False,
    )
    workers: int | None = param(
        None, "worker processes reading images (default: one per CPU core)", low=0, metavar="N", studio=False
    )
    cache: bool = param(
        True,
        "also keep photos that the default transformation's resize (256) shrinks at least 4x resized in the "
        "decoded-image cache, so the first epoch of training and scoring start from them (see train --help)",
        studio=False,
    )

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class SplitOptions:
    """How split divides an image directory in two."""

    fraction: float = param(
        0.9, "share of images in the first part (training), 0-1; the count is rounded down", low=0.0, high=1.0
    )
    seed: int = param(1, "random seed; the same seed gives the same split", low=0, high=MAX_SEED, metavar="N")
    stratify: bool = param(True, "keep each class's share the same in both parts")

    def __post_init__(self) -> None:
        check(self)
