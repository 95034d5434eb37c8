"""Evaluate Model for a multi-label model's scores: each image's true classes (`labels`) against the classes it was
given ('Scored Labels') and each class's sigmoid probability.

Reported: micro and macro precision / recall / F1, each class's average precision and their mean (mAP, over the
classes that have images), Hamming loss, exact-match (subset) accuracy, a per-class table with each class's 2x2
confusion, and the co-occurrence of true and given classes. NumPy only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..calibration import calibration
from ..config import LABEL_SEPARATOR, PROBABILITY_PREFIX, SCORED_LABELS
from ..errors import InvalidDatasetError, NotLabeledDatasetError
from .confusion import DENSE_MAX_CLASSES, count_pairs, matrix_json

EPSILON = 1e-15


def class_list(value: Any) -> list[str] | None:
    """A cell of the `labels` or 'Scored Labels' column as a list of classes: a JSON list, or a CSV cell joined by
    LABEL_SEPARATOR ("" = no class); None when it is neither."""
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return value
    if isinstance(value, str):
        return [c for c in value.split(LABEL_SEPARATOR) if c]
    return None


def parse_multilabel(
    rows: list[dict[str, Any]], classes: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int], int]:
    """(truth, probabilities, given) as (images, classes) arrays, the position of each scored row and how many rows
    had no score. A true class the model does not know is added to `classes`: never given, probability 0."""
    scored = [PROBABILITY_PREFIX + c for c in classes]
    truth, probs, given, kept, unscored, problems = [], [], [], [], 0, []
    for lineno, row in enumerate(rows, 2):
        if not isinstance(row, dict):
            problems.append(f"row {lineno}: not an object with the score columns")
            continue
        if row.get("error") or row.get(scored[0]) in (None, ""):
            unscored += 1
            continue
        labels, answer = class_list(row.get("labels")), class_list(row.get(SCORED_LABELS))
        if labels is None:
            raise NotLabeledDatasetError(
                f"Row {lineno} of the scores has no list of true classes ('labels').",
                hint="evaluate scores of a labeled image directory.",
            )
        if answer is None or not set(answer) <= set(classes[: len(scored)]):
            problems.append(f"row {lineno}: '{SCORED_LABELS}' is not a list of the model's classes")
            continue
        classes.extend(c for c in dict.fromkeys(labels) if c not in classes)
        p, problem = row_probabilities(row, scored)
        if p is None:
            problems.append(f"row {lineno}: {problem}")
            continue
        truth.append(set(labels))
        given.append(set(answer))
        probs.append(p)
        kept.append(lineno - 2)
    if problems:
        raise InvalidDatasetError("The scores are invalid:\n" + "\n".join(f"  - {p}" for p in problems[:20]))
    if not probs:
        raise InvalidDatasetError("No row of the scores has a score to evaluate.")
    width = len(classes)
    matrix = np.array([p + [0.0] * (width - len(p)) for p in probs], dtype=np.float64)
    return _hot(truth, classes), matrix, _hot(given, classes), kept, unscored


def row_probabilities(row: dict[str, Any], keys: list[str]) -> tuple[list[float] | None, str]:
    """A scores row's probabilities under `keys` (strings of a CSV, or numbers), or None and what is wrong with them."""
    try:
        if any(isinstance(row.get(key), bool) for key in keys):
            raise TypeError("true/false is not a probability")
        p = [float(row[key]) for key in keys]
    except (KeyError, TypeError, ValueError):
        return None, "probabilities are not numbers"
    if not all(math.isfinite(v) and 0 <= v <= 1 for v in p):
        return None, "probabilities outside 0-1"
    return p, ""


def most_confident_miss(probability: dict[str, float], truth: set[str], given: set[str]) -> tuple[float, str]:
    """(confidence, class) of an image's most confident wrong decision among the classes in `probability`: a class
    given that it lacks (its probability) or one it has and was not given (one minus it); (0, "") when none."""
    wrong = [(probability[c] if c in given else 1 - probability[c], c) for c in truth ^ given if c in probability]
    return max(wrong, default=(0.0, ""))


def _hot(sets: list[set[str]], classes: list[str]) -> np.ndarray:
    """(images, classes) booleans: whether each image's set holds each class."""
    return np.array([[c in s for c in classes] for s in sets], dtype=bool).reshape(len(sets), len(classes))


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """The area under one class's precision-recall steps (scikit-learn's average_precision_score): the precision at
    each positive's rank, averaged over the positives; None when the class has none. Tied scores share a rank."""
    if not positive.any():
        return None
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positive[order]
    last_of_tie = np.append(ranked[:-1] != ranked[1:], True)
    true_positives = np.cumsum(hits)[last_of_tie]
    predicted = (np.arange(1, len(ranked) + 1))[last_of_tie]
    precision = true_positives / predicted
    recall_steps = np.diff(np.concatenate([[0], true_positives])) / positive.sum()
    return float((recall_steps * precision).sum())


def precision_recall_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[list[float], list[float]]:
    """(recall, precision) at each distinct score of one class, highest score first (for the plot)."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positive[order]
    last_of_tie = np.append(ranked[:-1] != ranked[1:], True)
    true_positives = np.cumsum(hits)[last_of_tie]
    predicted = np.arange(1, len(ranked) + 1)[last_of_tie]
    recall = true_positives / max(int(positive.sum()), 1)
    return recall.tolist(), (true_positives / predicted).tolist()


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    total = precision + recall
    return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)


def compute_multilabel_metrics(
    truth: np.ndarray, probs: np.ndarray, given: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """Multi-label metrics (see the module's docstring) from (images, classes) truth, probabilities and answers."""
    n, _ = truth.shape
    tp = (truth & given).sum(0)
    fp = (~truth & given).sum(0)
    fn = (truth & ~given).sum(0)
    tn = (~truth & ~given).sum(0)
    support = truth.sum(0)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
    f1 = _f1(precision, recall)
    present = support > 0
    ap = [average_precision(probs[:, k], truth[:, k]) for k in range(len(classes))]
    micro_p = float(tp.sum() / max(tp.sum() + fp.sum(), 1))
    micro_r = float(tp.sum() / max(support.sum(), 1))
    chosen = np.clip(np.where(truth, probs, 1 - probs), EPSILON, 1.0)
    confidence = np.maximum(probs, 1 - probs)
    counts = support[present]
    return {
        "task": "multilabel",
        "images": int(n),
        "subset_accuracy": float((truth == given).all(1).mean()),
        "hamming_loss": float((truth != given).mean()),
        "log_loss": float(np.mean(-np.log(chosen))) + 0.0,  # binary cross-entropy per image and class; never -0
        "mean_average_precision": float(np.mean([a for a in ap if a is not None])) if any(present) else None,
        "micro_avg": {"precision": micro_p, "recall": micro_r, "f1": float(_f1(np.array(micro_p), np.array(micro_r)))},
        "macro_avg": {
            name: float(values[present].mean()) if present.any() else 0.0
            for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
        },
        "per_class": {
            c: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "average_precision": ap[k],
                "support": int(support[k]),
                "confusion": {"tp": int(tp[k]), "fp": int(fp[k]), "fn": int(fn[k]), "tn": int(tn[k])},
            }
            for k, c in enumerate(classes)
        },
        "co_occurrence": _co_occurrence(truth, given, list(classes)),
        "classes_per_image": {"true": float(truth.sum(1).mean()), "given": float(given.sum(1).mean())},
        "imbalance_ratio": float(counts.max() / counts.min()) if len(counts) else 1.0,
        "calibration": calibration(confidence.ravel(), ((probs >= 0.5) == truth).ravel()),
    }


def _pairs(truth: np.ndarray, given: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How many images have true class i and were given class j, as the non-zero (i, j) cells and their counts: a
    matrix product up to DENSE_MAX_CLASSES classes; past it, image by image, so that the cells follow the images."""
    k = truth.shape[1]
    if k <= DENSE_MAX_CLASSES:
        dense = (truth.T.astype(np.float64) @ given.astype(np.float64)).astype(np.int64)  # exact below 2**53
        cells = np.argwhere(dense > 0)
        return cells, dense[cells[:, 0], cells[:, 1]]
    pairs = [
        np.stack(np.meshgrid(np.flatnonzero(t), np.flatnonzero(g), indexing="ij"), -1).reshape(-1, 2)
        for t, g in zip(truth, given, strict=True)
    ]
    both = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    return count_pairs(both[:, 0], both[:, 1], k)


def _co_occurrence(truth: np.ndarray, given: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """The co-occurrence of true and given classes (confusion.matrix_json); its top confusions are the classes given
    that the image does not have."""
    return matrix_json(
        *_pairs(truth, given), classes, "given class", "given", confused=_pairs(truth, given & ~truth.astype(bool))
    )


def multilabel_summary(metrics: dict[str, Any]) -> str:
    """A few lines for people: the headline numbers and the weakest classes."""
    lines = [
        f"images evaluated:  {metrics['images']}"
        + (f" ({metrics['unscored']} unscored left out)" if metrics.get("unscored") else ""),
        f"exact match:       {metrics['subset_accuracy']:.4f} (subset accuracy: every class of the image right)",
        f"hamming loss:      {metrics['hamming_loss']:.4f} (share of image-class decisions wrong)",
    ]
    if metrics["mean_average_precision"] is not None:
        lines.append(
            f"mAP:               {metrics['mean_average_precision']:.4f} (mean average precision over classes)"
        )
    lines += [
        "micro avg:         precision {precision:.4f}  recall {recall:.4f}  f1 {f1:.4f}".format(**metrics["micro_avg"]),
        "macro avg:         precision {precision:.4f}  recall {recall:.4f}  f1 {f1:.4f}".format(**metrics["macro_avg"]),
        f"log loss:          {metrics['log_loss']:.4f} (binary cross-entropy per class)",
        f"classes per image: {metrics['classes_per_image']['true']:.2f} true, "
        f"{metrics['classes_per_image']['given']:.2f} given",
    ]
    if metrics.get("unknown_labels"):
        lines.append(
            f"unknown labels:    {sum(metrics['unknown_labels'].values())} image labels name a class the model does "
            "not know (" + ", ".join(metrics["unknown_labels"]) + "), each counted as missed"
        )
    worst = sorted(((v["f1"], c) for c, v in metrics["per_class"].items() if v["support"]))[:3]
    lines.append("lowest f1:         " + ", ".join(f"{c} {f:.3f}" for f, c in worst))
    return "\n".join(lines)
