"""Calibration: how well confidences match accuracy, and temperature scaling to make them match.

Expected calibration error (ECE) and the reliability bins are what evaluate reports. Temperature scaling
(Guo et al., 2017) divides the logits by one number T fitted on held-out data: softmax(logits / T) keeps
every ranking and label, and T > 1 softens an overconfident model (T < 1 sharpens an underconfident one).
Train fits T on the validation set; the model directory stores it; score, serve, export and the studio
apply it. A multi-label model gets one T per class (class_temperature_report), each by the same rule. NumPy
only, so every stage may import it.

The rule (`temperature_report`, measured in docs/trust.md): no temperature below MIN_CALIBRATION_IMAGES
validation images, nor when every validation image is already right (the log loss then falls without end as
T shrinks: there is no minimum to find); otherwise T is fitted within FIT_RANGE, and kept only when the
temperatures fitted on all but one of CALIBRATION_FOLDS stratified folds lower the log loss of the fold left
out. The figures it reports are those of the left-out folds: images the fit did not see.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .params import is_number

CALIBRATION_BINS = 15
#: The temperatures a stored model may carry (older versions fitted over all of it).
TEMPERATURE_RANGE = (0.05, 20.0)
#: The temperatures a fit may pick (a stored one may lie in TEMPERATURE_RANGE).
FIT_RANGE = (0.1, 20.0)
#: Fewer validation images than this hold too few errors to say how confident the model should be.
MIN_CALIBRATION_IMAGES = 50
CALIBRATION_FOLDS = 5
_GOLDEN = (math.sqrt(5) - 1) / 2


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Expected calibration error (Guo et al., 2017): the top-1 confidences in `bins` equal-width bins, and the
    image-weighted mean gap between each bin's accuracy and its mean confidence; with the bins, for the diagram."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        row = {
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "images": count,
            "confidence": None,
            "accuracy": None,
        }
        if count:
            mean_confidence, accuracy = float(confidence[members].mean()), float(correct[members].mean())
            row["confidence"], row["accuracy"] = mean_confidence, accuracy
            ece += count / len(confidence) * abs(accuracy - mean_confidence)
        rows.append(row)
    return {"ece": float(ece), "bins": rows}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean cross-entropy of softmax(logits / temperature) against integer `labels`."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_norm - z[np.arange(len(z)), labels]))


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = FIT_RANGE, iterations: int = 80
) -> float:
    """The temperature within `bounds` of least negative log-likelihood on (logits, labels).

    The likelihood is convex in 1/T, so it has one minimum: a golden-section search over log T finds it
    without gradients, the same on every machine.
    """
    low, high = (math.log(t) for t in bounds)

    def loss(log_t: float) -> float:
        return negative_log_likelihood(logits, labels, math.exp(log_t))

    a, b = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(iterations):
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - _GOLDEN * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + _GOLDEN * (high - low)
            loss_b = loss(b)
    return math.exp((low + high) / 2)


def stratified_folds(labels: np.ndarray, folds: int) -> np.ndarray:
    """Each image's fold, 0 to folds - 1: dealt in turn within each class, so every fold holds every class."""
    order = np.argsort(labels, kind="stable")
    fold = np.empty(len(labels), dtype=np.int64)
    fold[order] = np.arange(len(labels)) % folds
    return fold


def cross_validated_temperatures(
    logits: np.ndarray, labels: np.ndarray, folds: int = CALIBRATION_FOLDS, bounds: tuple[float, float] = FIT_RANGE
) -> np.ndarray:
    """Per image, the temperature fitted on the folds it is not in."""
    fold = stratified_folds(labels, folds)
    temperatures = np.ones(len(labels))
    for f in range(folds):
        held_out = fold == f
        if held_out.any():
            temperatures[held_out] = fit_temperature(logits[~held_out], labels[~held_out], bounds)
    return temperatures


def _scores(logits: np.ndarray, labels: np.ndarray, temperature: float | np.ndarray) -> tuple[float, float]:
    """(Negative log-likelihood, ECE) of softmax(logits / temperature); a temperature per row or one for all."""
    t = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (len(labels),))[:, None]
    probs = softmax(logits / t)
    nll = negative_log_likelihood(logits / t, labels, 1.0)
    return nll, calibration(probs.max(1), (probs.argmax(1) == labels).astype(np.float64))["ece"]


def temperature_report(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    min_images: int = MIN_CALIBRATION_IMAGES,
    folds: int = CALIBRATION_FOLDS,
    bounds: tuple[float, float] = FIT_RANGE,
) -> dict[str, Any]:
    """The temperature train stores, by the module's rule, and why: with the log loss and ECE before and after
    on validation images the fit did not see (each scored with the temperature of the other folds)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    report: dict[str, Any] = {
        "method": "temperature scaling",
        "fitted_on": "validation",
        "images": n,
        "temperature": 1.0,
        "applied": False,
    }
    wrong = int((logits.argmax(1) != labels).sum()) if n else 0
    if n < min_images:
        return {**report, "reason": f"{n} validation images, fewer than the {min_images} a temperature needs"}
    if wrong == 0:
        return {
            **report,
            "reason": f"all {n} validation images are right, so no temperature is best: the log loss "
            "only falls as confidence grows",
        }
    before = _scores(logits, labels, 1.0)
    after = _scores(logits, labels, cross_validated_temperatures(logits, labels, folds, bounds))
    report.update(
        folds=folds,
        measured_on=f"held-out folds ({folds}-fold cross-validation)",
        nll_before=before[0],
        nll_after=after[0],
        ece_before=before[1],
        ece_after=after[1],
    )
    if after[0] >= before[0]:
        return {
            **report,
            "reason": "temperatures fitted on part of the validation images did not lower the log "
            f"loss on the rest ({before[0]:.4f} -> {after[0]:.4f})",
        }
    return {**report, "temperature": fit_temperature(logits, labels, bounds), "applied": True}


def class_temperature_report(
    logits: np.ndarray, targets: np.ndarray, classes: list[str] | tuple[str, ...], **rule: Any
) -> dict[str, Any]:
    """A multi-label model's temperature per class, each by the rule of temperature_report on that class alone:
    sigmoid(z / T) is the two-class softmax of (0, z) / T, so a class's decisions are a two-class problem."""
    logits = np.asarray(logits, dtype=np.float64)
    reports = {
        c: temperature_report(
            np.stack([np.zeros(len(logits)), logits[:, k]], axis=1),
            (np.asarray(targets)[:, k] > 0.5).astype(np.int64),
            **rule,
        )
        for k, c in enumerate(classes)
    }
    return {
        "method": "temperature scaling per class",
        "fitted_on": "validation",
        "images": len(logits),
        "temperatures": [r["temperature"] for r in reports.values()],
        "applied": any(r["applied"] for r in reports.values()),
        "classes": reports,
    }


def describe(report: dict[str, Any]) -> str:
    """One line for the log: the temperature kept and what it did to images the fit did not see, or why none."""
    if "classes" in report:
        return "; ".join(f"{c}: {describe(r)}" for c, r in report["classes"].items())
    if not report["applied"]:
        return f"not calibrated (temperature 1): {report['reason']}"
    return (
        f"calibrated: temperature {report['temperature']:.3f} from {report['images']} validation images; on "
        f"images the fit did not see, log loss {report['nll_before']:.4f} -> {report['nll_after']:.4f}, "
        f"calibration error {report['ece_before']:.4f} -> {report['ece_after']:.4f}"
    )


def check_temperature(value: Any) -> float:
    """A stored temperature if it is a number within TEMPERATURE_RANGE; ValueError saying so otherwise."""
    low, high = TEMPERATURE_RANGE
    if not is_number(value, low, high):
        raise ValueError(f"calibration.temperature must be a number from {low} to {high}, got {value!r}")
    return float(value)
