"""Experiment tracking: per-epoch metrics to TensorBoard event files and, optionally, MLflow."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, TrackingError

log = logging.getLogger(__name__)

# history row key -> the name shown in TensorBoard / MLflow
SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/validation",
    "train_top1": "accuracy/train_top1",
    "val_top1": "accuracy/validation_top1",
    "val_top5": "accuracy/validation_top5",
    "lr": "learning_rate",
    "images_per_second": "speed/images_per_second",
}


@dataclass
class Tracker:
    """Where a training run reports each epoch; does nothing when neither destination is asked for."""

    writer: Any = None
    mlflow: Any = None
    runs: list = field(default_factory=list)

    def epoch(self, row: dict[str, Any]) -> None:
        scalars = {name: row[key] for key, name in SCALARS.items() if row.get(key) is not None}
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, row["epoch"])
            self.writer.flush()
        if self.mlflow is not None:
            self.mlflow.log_metrics(
                {name.replace("/", "_"): value for name, value in scalars.items()}, step=row["epoch"]
            )

    def close(self, status: str = "FINISHED") -> None:
        if self.writer is not None:
            self.writer.close()
        if self.mlflow is not None:
            self.mlflow.end_run(status=status)


def open_tracker(log_dir: str | Path | None, use_mlflow: bool, params: dict[str, Any], run_name: str) -> Tracker:
    """Start the asked-for destinations; a missing package is a clear error before training starts."""
    tracker = Tracker()
    if log_dir is not None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MissingDependencyError(
                "--log-dir needs the tensorboard package.",
                hint="pip install 'imgtrain[tracking]', or leave out --log-dir.",
            ) from None
        tracker.writer = SummaryWriter(log_dir=str(log_dir))
        tracker.writer.add_text("hyperparameters", "\n".join(f"    {k}: {v}" for k, v in params.items()), 0)
        log.info("TensorBoard event files in %s (view: tensorboard --logdir %s)", log_dir, log_dir)
    if use_mlflow:
        try:
            import mlflow
        except ImportError:
            raise MissingDependencyError(
                "--mlflow needs the mlflow package.", hint="pip install mlflow, or leave out --mlflow."
            ) from None
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # ./mlruns, as MLflow users know it; mlflow 3 would default to ./mlflow.db and refuses file stores
            # unless this is set
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri(Path("mlruns").resolve().as_uri())
        try:
            mlflow.start_run(run_name=run_name)
            mlflow.log_params(params)
        except Exception as exc:  # a tracking server that is down, a store this mlflow cannot write ...
            if tracker.writer is not None:
                tracker.writer.close()
            raise TrackingError(
                f"MLflow cannot log to {mlflow.get_tracking_uri()}: {str(exc)[:300]}",
                hint="check MLFLOW_TRACKING_URI, or leave out --mlflow.",
            ) from None
        tracker.mlflow = mlflow
        log.info("MLflow run %s logged to %s", run_name, mlflow.get_tracking_uri())
    return tracker
