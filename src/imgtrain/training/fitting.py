"""What is fitted on the whole validation set once training ends, for the weights to be saved: the temperature
(imgtrain.calibration) and a multi-label model's decision thresholds (imgtrain.thresholds)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..calibration import describe, temperature_report
from ..devices import autocast_for
from ..thresholds import choose_thresholds
from .job import Job
from .state import RunState

log = logging.getLogger(__name__)


def calibrate(job: Job, state: RunState, device: torch.device, whole: DataLoader) -> dict[str, Any] | None:
    """The temperature report of the weights to be saved, fitted on `whole` (every validation image); None when
    not asked for, or for a multi-label model (per-class calibration is not done yet, and the log says so)."""
    if not job.config.calibrate:
        return None
    if job.multilabel:
        log.info("no temperature: calibrating a multi-label model (per class) is not done yet")
        return None
    logits, labels = _validation_logits(state, device, whole)
    report = temperature_report(logits, labels)
    log.info("%s", describe(report))
    return report


def fit_thresholds(job: Job, state: RunState, device: torch.device, whole: DataLoader) -> list[float] | None:
    """A multi-label model's decision threshold per class, chosen on `whole` for the weights to be saved; None for a
    single-label model."""
    if not job.multilabel:
        return None
    logits, targets = _validation_logits(state, device, whole)
    thresholds = choose_thresholds(1 / (1 + np.exp(-logits)), targets)
    log.info("decision thresholds: %s", ", ".join(f"{c} {t:.3f}" for c, t in zip(job.classes, thresholds, strict=True)))
    return thresholds


@torch.inference_mode()
def _validation_logits(state: RunState, device: torch.device, whole: DataLoader) -> tuple[np.ndarray, np.ndarray]:
    """The weights to be saved (the best epoch's) put in `state.net`, and its logits and the labels of `whole`."""
    if state.best is not None:
        state.net.load_state_dict(state.best)
    state.net.eval()
    logits, labels = [], []
    with autocast_for(device, state.precision):
        for images, targets in whole:
            logits.append(state.net(images.to(device)).float().cpu())
            labels.append(targets)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()
