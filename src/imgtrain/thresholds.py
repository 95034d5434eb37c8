"""Multi-label decisions: each class's probability threshold, chosen on the validation set to maximise that class's F1.

A class with fewer than MIN_POSITIVES validation images keeps DEFAULT_THRESHOLD: an F1 over two or three images
would pick a threshold that fits those images, not the class. Numpy only: score, serve and export read the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .errors import ParameterError
from .params import is_number

DEFAULT_THRESHOLD = 0.5
#: The fewest validation images of a class for its own threshold.
MIN_POSITIVES = 5
_ABOVE_ZERO, _BELOW_ONE = float(np.nextafter(0.0, 1.0)), float(np.nextafter(1.0, 0.0))


def choose_thresholds(
    probabilities: np.ndarray, targets: np.ndarray, min_positives: int = MIN_POSITIVES
) -> list[float]:
    """One threshold per class (column): an image has the class when its probability is at least the threshold.

    Each is the midpoint between two neighbouring validation probabilities that gives the class its highest F1 (of
    the best, the one nearest DEFAULT_THRESHOLD); DEFAULT_THRESHOLD for a class with fewer than `min_positives`
    positive images."""
    return [
        _best_threshold(probabilities[:, k], targets[:, k] > 0.5)
        if int((targets[:, k] > 0.5).sum()) >= min_positives
        else DEFAULT_THRESHOLD
        for k in range(probabilities.shape[1])
    ]


def _best_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """The F1-maximising cut of one class's scores (see choose_thresholds)."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positive[order]
    true_positives = np.cumsum(hits)  # predicting the first j+1 ranked images positive
    f1 = 2 * true_positives / (np.arange(1, len(ranked) + 1) + hits.sum())
    # only cut between two different scores: equal scores get the same answer
    distinct = np.append(ranked[:-1] > ranked[1:], True)
    f1 = np.where(distinct, f1, -1.0)
    best = f1.max()
    cuts = [
        (ranked[j] + ranked[j + 1]) / 2 if j + 1 < len(ranked) else ranked[j] / 2
        for j in np.flatnonzero(np.isclose(f1, best))
    ]
    best_cut = float(min(cuts, key=lambda cut: abs(cut - DEFAULT_THRESHOLD)))
    # saturated sigmoids (1.0 next to the float below it, or 0.0 at the bottom) put the cut on 1 or 0 after
    # rounding; a threshold lies strictly inside (0, 1), so it takes the nearest float that does
    return min(max(best_cut, _ABOVE_ZERO), _BELOW_ONE)


def check_thresholds(value: object, num_classes: int) -> tuple[float, ...]:
    """A model directory's thresholds: one number in (0, 1) per class; ValueError saying what is wrong."""
    if not isinstance(value, list) or len(value) != num_classes:
        raise ValueError(f"thresholds must be a list of {num_classes} numbers, one per class")
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1 and math.isfinite(v) for v in value
    ):
        raise ValueError("each threshold must be a number between 0 and 1")
    return tuple(float(v) for v in value)


def check_threshold(value: object) -> float | None:
    """One threshold for every class (score / serve --threshold): None, or a number between 0 and 1; ParameterError
    saying so otherwise."""
    if value is None:
        return None
    if not is_number(value, 0, 1) or value in (0, 1):
        raise ParameterError(
            f"threshold must be a number between 0 and 1 (both left out), got {value!r}.",
            hint="e.g. 0.5: an image gets every class whose probability is at least 0.5; leave it out for the "
            "thresholds chosen on the validation set.",
        )
    return float(value)


def predicted_classes(classes: Sequence[str], probabilities: Sequence[float], thresholds: Sequence[float]) -> list[str]:
    """The classes whose probability reaches their threshold, in class order (possibly none)."""
    return [c for c, p, t in zip(classes, probabilities, thresholds, strict=True) if p >= t]
