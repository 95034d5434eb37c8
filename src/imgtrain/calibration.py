"""Calibration: how well confidences match accuracy, and temperature scaling to make them match.

Expected calibration error (ECE) and the reliability bins are what evaluate reports. Temperature scaling
(Guo et al., 2017) divides the logits by one number T fitted on held-out data: softmax(logits / T) keeps
every ranking and label, and T > 1 softens an overconfident model (T < 1 sharpens an underconfident one).
Train fits T on the validation set; the model directory stores it; score, serve, export and the studio
apply it. NumPy only, so every stage may import it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

CALIBRATION_BINS = 15
#: The temperatures a fit may pick: beyond them the validation set says more about itself than about the model.
TEMPERATURE_RANGE = (0.05, 20.0)
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
        row = {"lower": float(edges[b]), "upper": float(edges[b + 1]), "images": count, "confidence": None,
               "accuracy": None}
        if count:
            row["confidence"], row["accuracy"] = float(confidence[members].mean()), float(correct[members].mean())
            ece += count / len(confidence) * abs(row["accuracy"] - row["confidence"])
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


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 80) -> float:
    """The temperature within TEMPERATURE_RANGE of least negative log-likelihood on (logits, labels).

    The likelihood is convex in 1/T, so it has one minimum: a golden-section search over log T finds it
    without gradients, the same on every machine.
    """
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)

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


def temperature_report(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Fit the temperature and say what it changed: negative log-likelihood and ECE, before and after."""
    labels = np.asarray(labels, dtype=np.int64)
    temperature = fit_temperature(logits, labels)
    report: dict[str, Any] = {"method": "temperature scaling", "temperature": temperature,
                              "fitted_on": "validation", "images": int(len(labels))}
    for when, t in (("before", 1.0), ("after", temperature)):
        probs = softmax(logits, t)
        report[f"nll_{when}"] = negative_log_likelihood(logits, labels, t)
        report[f"ece_{when}"] = calibration(probs.max(1), (probs.argmax(1) == labels).astype(np.float64))["ece"]
    return report


def check_temperature(value: Any) -> float:
    """A stored temperature if it is a number within TEMPERATURE_RANGE; ValueError saying so otherwise."""
    low, high = TEMPERATURE_RANGE
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"calibration.temperature must be a number from {low} to {high}, got {value!r}")
    return float(value)
