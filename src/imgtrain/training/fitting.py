"""What is fitted on the whole validation set once training ends, for the weights to be saved: the temperature
(imgtrain.calibration; a multi-label model's: one per class) and a multi-label model's decision thresholds
(imgtrain.thresholds)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..calibration import class_temperature_report, describe, temperature_report
from ..devices import autocast_for
from ..thresholds import choose_thresholds
from .job import Job
from .state import RunState

log = logging.getLogger(__name__)


def fit_on_validation(
    job: Job, state: RunState, device: torch.device, whole: DataLoader
) -> tuple[dict[str, Any] | None, list[float] | None]:
    """(the temperature report, a multi-label model's thresholds) of the weights to be saved, fitted on `whole`
    (every validation image): the report None when calibration is not asked for, the thresholds None for a
    single-label model. A multi-label model's thresholds are chosen on its calibrated probabilities."""
    logits, labels = _validation_logits(state, device, whole)
    report = None
    if job.config.calibrate:
        report = (
            class_temperature_report(logits, labels, job.classes)
            if job.multilabel
            else temperature_report(logits, labels)
        )
        log.info("%s", describe(report))
    if not job.multilabel:
        return report, None
    temperatures = np.array(report["temperatures"]) if report is not None else 1.0
    thresholds = choose_thresholds(1 / (1 + np.exp(-logits / temperatures)), labels)
    log.info("decision thresholds: %s", ", ".join(f"{c} {t:.3f}" for c, t in zip(job.classes, thresholds, strict=True)))
    return report, thresholds


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
