"""Evaluate Model: accuracy, precision / recall / F1, log loss, confusion matrix, and plots of the errors; a
multi-label model's scores (a `labels` column) are evaluated by multilabel_metrics, with their own figures."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration import CALIBRATION_BINS, calibration
from ..config import PROBABILITY_PREFIX, SCORED_LABELS
from ..errors import InvalidDatasetError, NotLabeledDatasetError, ParameterError
from ..files import atomic_write_json, building_dir
from ..jsonfiles import open_text, parse_json
from .confusion import count_pairs, for_plot, matrix_json
from .multilabel_figures import write_multilabel_figures
from .multilabel_metrics import (
    class_list,
    compute_multilabel_metrics,
    multilabel_summary,
    parse_multilabel,
    row_probabilities,
)

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.json"
CONFUSION_JSON = "confusion_matrix.json"
CONFUSION_PNG = "confusion_matrix.png"
RELIABILITY_PNG = "reliability.png"
ERRORS_PNG = "most_confident_errors.png"
EXPLANATIONS_DIR = "explanations"
EPSILON = 1e-15
#: From this ratio of the largest class's images to the smallest's, the summary leads with per-class recall.
IMBALANCED = 3.0


def read_scores(path: str | Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The classes (from the probability columns) and rows of a scores file (CSV or JSON lines)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            with open_text(path) as f:
                rows = [parse_json(line) for line in f if line.strip()]
            columns = list(rows[0]) if rows else []
        else:
            with open_text(path, newline="") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise InvalidDatasetError(
            f"The scores file {path} cannot be read: {exc}.", hint="give a file written by `imgtrain score`."
        ) from None
    classes = [c[len(PROBABILITY_PREFIX) :] for c in columns if c.startswith(PROBABILITY_PREFIX)]
    if not classes or SCORED_LABELS not in columns:
        raise InvalidDatasetError(
            f"{path} has no '{PROBABILITY_PREFIX}<class>' / '{SCORED_LABELS}' columns.",
            hint="give a file written by `imgtrain score`.",
        )
    if "label" not in columns and "labels" not in columns:
        raise NotLabeledDatasetError(
            f"The scores in {path} have no true-label column ('label', or a multi-label model's 'labels').",
            hint="score a labeled image directory (one converted from class folders or a "
            "manifest with labels) to evaluate.",
        )
    if not rows:
        raise InvalidDatasetError(f"The scores file {path} has no rows.")
    return classes, rows


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Multi-class metrics from true class indices (n,) and probabilities (n, k) over `classes`."""
    n, k = probs.shape
    y_pred = probs.argmax(1)
    support = np.bincount(y_true, minlength=k)
    predicted = np.bincount(y_pred, minlength=k)
    hits = np.bincount(y_true[y_true == y_pred], minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, hits / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    present = support > 0
    weights = support / support.sum()
    metrics: dict[str, Any] = {
        "images": int(n),
        "accuracy": float(hits.sum() / n),
        "log_loss": float(np.mean(-np.log(np.clip(probs[np.arange(n), y_true], EPSILON, 1.0)))) + 0.0,  # never -0
        "macro_avg": {
            name: float(values[present].mean())
            for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
        },
        "weighted_avg": {
            name: float((values * weights).sum())
            for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
        },
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": matrix_json(*count_pairs(y_true, y_pred, k), classes, "predicted class", "predicted"),
    }
    counts = support[present]
    metrics["imbalance_ratio"] = float(counts.max() / counts.min())
    metrics["calibration"] = calibration(probs.max(1), y_pred == y_true)
    if k > 5:
        top5 = np.argsort(-probs, axis=1, kind="stable")[:, :5]
        metrics["top5_accuracy"] = float((top5 == y_true[:, None]).any(1).mean())
    return metrics


def _parse(rows: list[dict[str, Any]], classes: list[str]) -> tuple[np.ndarray, np.ndarray, list[int], int]:
    """True indices, probabilities, positions of scored rows, and how many rows had no score."""
    index = {c: i for i, c in enumerate(classes)}
    scored = [PROBABILITY_PREFIX + c for c in classes]  # the model's classes, before unknown labels are added
    y, probs, kept, unscored, problems = [], [], [], 0, []
    for lineno, row in enumerate(rows, 2):
        if not isinstance(row, dict):
            problems.append(f"row {lineno}: not an object with the score columns")
            continue
        if row.get("error") or row.get(SCORED_LABELS) in (None, ""):
            unscored += 1
            continue
        label = row.get("label")
        if label in (None, ""):
            raise NotLabeledDatasetError(
                f"Row {lineno} of the scores has no true label.", hint="evaluate scores of a labeled image directory."
            )
        label = str(label)
        if label not in index:  # a class the model never saw: always wrong, but counted
            index[label] = len(classes)
            classes.append(label)
        missing = [key for key in scored if key not in row]
        if missing:  # never shift the other columns into its place
            problems.append(f"row {lineno}: no {missing[0]!r}")
            continue
        p, problem = row_probabilities(row, scored)
        if p is None:
            problems.append(f"row {lineno}: {problem}")
            continue
        y.append(index[label])
        probs.append(p)
        kept.append(lineno - 2)
    if problems:
        raise InvalidDatasetError("The scores are invalid:\n" + "\n".join(f"  - {p}" for p in problems[:20]))
    if not y:
        raise InvalidDatasetError("No row of the scores has a score to evaluate.")
    width = len(classes)
    matrix = np.array([p + [0.0] * (width - len(p)) for p in probs], dtype=np.float64)
    return np.array(y, dtype=np.int64), matrix, kept, unscored


def evaluate(
    scores: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    max_errors_shown: int = 16,
    model: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a scores file; write metrics.json, the confusion matrix (JSON, PNG) and the errors grid to `out`;
    with the `model` that made the scores, also Grad-CAM explanations of its errors in out/explanations/."""
    scores, out = Path(scores), Path(out)
    trained = None
    if model is not None:
        from ..models.model_directory import open_model_directory

        trained = open_model_directory(model)
    classes, rows = read_scores(scores)
    if trained is not None and list(trained.classes) != classes:
        raise _not_its_scores(scores, classes, model, list(trained.classes))
    rows, measured, unknown, unscored, write_figures = _measure(rows, classes, max_errors_shown)
    metrics = {"format": "imgtrain.metrics", "format_version": 1, "scores": str(scores), "unscored": unscored}
    metrics.update(measured)
    if unknown:
        metrics["unknown_labels"] = unknown
        log.warning(
            "%d rows of %s have a label the model has no class for (%s): each counts as an error",
            sum(unknown.values()),
            scores,
            ", ".join(list(unknown)[:10]),
        )
    with building_dir(out, overwrite, inputs=[scores] + ([Path(model)] if model is not None else [])) as tmp:
        atomic_write_json(tmp / METRICS_NAME, metrics)
        write_figures(tmp, metrics)
        if trained is not None:
            from .explain import explain_rows, log_explained

            explained = explain_rows(
                trained, rows, tmp / EXPLANATIONS_DIR, errors=max_errors_shown // 2, correct=max_errors_shown // 4
            )
    if trained is not None:
        log_explained(explained, out / EXPLANATIONS_DIR)
    if unscored:
        log.warning("%d rows had no score (unreadable images) and were left out", unscored)
    return metrics


def _measure(
    rows: list[dict[str, Any]], classes: list[str], max_errors_shown: int
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, int], int, Callable[[Path, dict[str, Any]], None]]:
    """(the rows, a multi-label model's cells as lists; the metrics; the images of each label the model has no class
    for; the rows without a score; what writes the figures of the metrics into a folder)."""
    scored_classes = len(classes)
    if isinstance(rows[0], dict) and "labels" in rows[0]:  # a multi-label model's; CSV cells joined by ';' -> lists
        rows = [
            {**r, "labels": class_list(r.get("labels")), SCORED_LABELS: class_list(r.get(SCORED_LABELS))}
            if isinstance(r, dict)
            else r
            for r in rows
        ]
        truth, probs, given, kept, unscored = parse_multilabel(rows, classes)
        unknown = {c: int(truth[:, scored_classes + i].sum()) for i, c in enumerate(classes[scored_classes:])}
        return (
            rows,
            compute_multilabel_metrics(truth, probs, given, classes),
            unknown,
            unscored,
            lambda folder, metrics: write_multilabel_figures(
                folder, metrics, classes, rows, kept, truth, probs, given, max_errors_shown
            ),
        )
    y_true, probs, kept, unscored = _parse(rows, classes)
    unknown = {c: int((y_true == scored_classes + i).sum()) for i, c in enumerate(classes[scored_classes:])}

    def write_figures(folder: Path, metrics: dict[str, Any]) -> None:
        atomic_write_json(folder / CONFUSION_JSON, metrics["confusion_matrix"])
        _write_figures(folder, metrics, classes, rows, kept, y_true, probs, max_errors_shown)

    return rows, compute_metrics(y_true, probs, classes), unknown, unscored, write_figures


def _not_its_scores(
    scores: Path, classes: list[str], model: str | Path | None, model_classes: list[str]
) -> ParameterError:
    """The error for scores that another model made (their classes differ)."""
    return ParameterError(
        f"The scores {scores} have the classes {classes[:10]}, the model {model} "
        f"{model_classes[:10]}: it did not make them.",
        hint="give --model the model directory that scored the images.",
    )


def _write_figures(
    folder: Path,
    metrics: dict[str, Any],
    classes: list[str],
    rows: list[dict[str, Any]],
    kept: list[int],
    y_true: np.ndarray,
    probs: np.ndarray,
    max_errors_shown: int,
) -> None:
    """The confusion matrix, the reliability diagram and the grid of the most confidently wrong predictions
    (`kept`: the row of each scored image)."""
    from ..plots import plot_confusion_matrix, plot_image_grid, plot_reliability

    shown, shown_classes, which = for_plot(metrics["confusion_matrix"])
    plot_confusion_matrix(shown, shown_classes, folder / CONFUSION_PNG, title="Confusion matrix" + which)
    plot_reliability(metrics["calibration"], folder / RELIABILITY_PNG)
    y_pred = probs.argmax(1)
    wrong = [j for j in np.argsort(-probs.max(1), kind="stable") if y_pred[j] != y_true[j]][:max_errors_shown]
    plot_image_grid(
        [
            (
                rows[kept[j]].get("path"),
                f"true {classes[y_true[j]]}\npredicted {classes[y_pred[j]]} ({probs[j, y_pred[j]]:.2f})",
            )
            for j in wrong
        ],
        folder / ERRORS_PNG,
        title="Most confidently wrong predictions",
    )


def summary(metrics: dict[str, Any]) -> str:
    """A few lines for people: the headline numbers and the weakest classes."""
    if metrics.get("task") == "multilabel":
        return multilabel_summary(metrics)
    lines = [
        f"images evaluated:  {metrics['images']}"
        + (f" ({metrics['unscored']} unscored left out)" if metrics.get("unscored") else "")
    ]
    ratio = metrics.get("imbalance_ratio", 1.0)
    if ratio >= IMBALANCED:  # accuracy then mostly says how the largest class fares: per-class recall first
        lines.append(
            f"classes imbalanced {ratio:.1f}:1; macro recall (balanced accuracy) "
            f"{metrics['macro_avg']['recall']:.4f}; recall per class: "
            + ", ".join(f"{c} {v['recall']:.3f}" for c, v in metrics["per_class"].items() if v["support"])
        )
    lines.append(f"accuracy:          {metrics['accuracy']:.4f}")
    if "top5_accuracy" in metrics:
        lines.append(f"top-5 accuracy:    {metrics['top5_accuracy']:.4f}")
    lines += [
        f"log loss:          {metrics['log_loss']:.4f}",
        "macro avg:         precision {precision:.4f}  recall {recall:.4f}  f1 {f1:.4f}".format(**metrics["macro_avg"]),
        "weighted avg:      precision {precision:.4f}  recall {recall:.4f}  f1 {f1:.4f}".format(
            **metrics["weighted_avg"]
        ),
    ]
    if "calibration" in metrics:
        lines.append(
            f"calibration error: {metrics['calibration']['ece']:.4f} (ECE, {CALIBRATION_BINS} bins; 0 = "
            "confidences match accuracy)"
        )
    if metrics.get("unknown_labels"):
        lines.append(
            f"unknown labels:    {sum(metrics['unknown_labels'].values())} images labeled with a class the "
            "model does not know (" + ", ".join(metrics["unknown_labels"]) + "), each counted as an error"
        )
    worst = sorted(((v["f1"], c) for c, v in metrics["per_class"].items() if v["support"]))[:3]
    lines.append("lowest f1:         " + ", ".join(f"{c} {f:.3f}" for f, c in worst))
    return "\n".join(lines)
