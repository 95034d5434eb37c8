"""The files of a multi-label evaluation besides metrics.json: each class's 2x2 confusion (JSON, PNG), the
co-occurrence of true and given classes, the precision-recall curves, the reliability of the per-class decisions and
the most confidently wrong images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write_json
from .confusion import for_plot
from .multilabel_metrics import precision_recall_curve

CONFUSION_JSON = "confusion_matrix.json"
CLASS_CONFUSION_PNG = "class_confusion.png"
CO_OCCURRENCE_PNG = "co_occurrence.png"
PRECISION_RECALL_PNG = "precision_recall.png"
RELIABILITY_PNG = "reliability.png"
ERRORS_PNG = "most_confident_errors.png"
#: More curves than this in one plot cannot be told apart: the classes with most images are drawn.
MAX_CURVES = 12


def write_multilabel_figures(
    folder: Path,
    metrics: dict[str, Any],
    classes: list[str],
    rows: list[dict[str, Any]],
    kept: list[int],
    truth: np.ndarray,
    probs: np.ndarray,
    given: np.ndarray,
    max_errors_shown: int,
) -> None:
    """Write the figures (`kept`: the row of each scored image)."""
    from ..plots import (
        plot_class_confusions,
        plot_confusion_matrix,
        plot_image_grid,
        plot_precision_recall,
        plot_reliability,
    )

    per_class = {c: v["confusion"] for c, v in metrics["per_class"].items()}
    atomic_write_json(
        folder / CONFUSION_JSON,
        {
            "task": "multilabel",
            "classes": list(classes),
            "per_class": {c: [[v["tn"], v["fp"]], [v["fn"], v["tp"]]] for c, v in per_class.items()},
            "rows_are": "true: without, with the class",
            "columns_are": "given: without, with the class",
            "co_occurrence": metrics["co_occurrence"],
        },
    )
    plot_class_confusions(per_class, folder / CLASS_CONFUSION_PNG)
    shown, shown_classes, which = for_plot(metrics["co_occurrence"])
    plot_confusion_matrix(
        shown,
        shown_classes,
        folder / CO_OCCURRENCE_PNG,
        title="Co-occurrence: true class (rows) and class given (columns)" + which,
        xlabel="class given",
    )
    drawn = sorted(range(len(classes)), key=lambda k: -int(truth[:, k].sum()))[:MAX_CURVES]
    plot_precision_recall(
        {
            f"{classes[k]} (AP {metrics['per_class'][classes[k]]['average_precision']:.2f})": precision_recall_curve(
                probs[:, k], truth[:, k]
            )
            for k in drawn
            if truth[:, k].any()
        },
        folder / PRECISION_RECALL_PNG,
    )
    plot_reliability(metrics["calibration"], folder / RELIABILITY_PNG)
    wrongness = np.where(truth != given, np.where(given, probs, 1 - probs), 0).max(1)
    wrong = [j for j in np.argsort(-wrongness, kind="stable") if wrongness[j] > 0][:max_errors_shown]
    plot_image_grid(
        [(rows[kept[j]].get("path"), _caption(classes, truth[j], given[j])) for j in wrong],
        folder / ERRORS_PNG,
        title="Most confidently wrong images",
    )


def _caption(classes: list[str], truth: np.ndarray, given: np.ndarray) -> str:
    """What an image lacked and what it was wrongly given."""
    missed = [c for c, t, g in zip(classes, truth, given, strict=True) if t and not g]
    extra = [c for c, t, g in zip(classes, truth, given, strict=True) if g and not t]
    return "\n".join(
        part
        for part in (f"missed {', '.join(missed)}" if missed else "", f"wrongly {', '.join(extra)}" if extra else "")
        if part
    )
