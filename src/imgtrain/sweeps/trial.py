"""One trial of a sweep: its parameters drawn, then an ordinary training run into TRIALS/N that reports each
epoch's validation loss to the pruner, stops when pruned or out of budget, and resumes a killed trial's run."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig, TransformSpec
from ..errors import ImgtrainError, TrainingInterrupted
from ..faults import crash_point
from ..training.checkpoints import checkpoint_path
from .space import MODEL, SearchSpace
from .study import counts, optuna_module

log = logging.getLogger(__name__)

TRIALS = "trials"
#: a running trial stops unless its next epoch, this much slower than its last, still ends inside the budget
EPOCH_MARGIN = 1.25


class TrialFailed(Exception):
    """A trial that failed by its parameters (diverged, refused): recorded as failed; the sweep goes on."""


class TrialSurplus(Exception):
    """A trial started past --trials (two workers took the last one at once): dropped before it trains."""


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of this worker shares: the data, the training options not swept, the space, the budget."""

    out: Path
    train: str
    valid: str
    transform: TransformSpec | str | None
    base: TrainConfig
    space: SearchSpace
    deadline: float | None  # time.time() by which the sweep must end
    trials: int


def trial_folder(out: Path, number: int) -> Path:
    return out / TRIALS / str(number)


def objective(plan: TrialPlan, epoch_seconds: list[float]) -> Any:
    """The function Optuna calls for each trial: the trial's best validation loss (lower is better). Each epoch's
    wall time (the first's includes the trial's start) is appended to `epoch_seconds`."""
    optuna = optuna_module()

    def run(trial: Any) -> float:
        earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number and counts(t)]
        if len(earlier) >= plan.trials:
            trial.set_user_attr("surplus", f"{plan.trials} trials had started before it")
            raise TrialSurplus()
        values = plan.space.suggest(trial)
        model = values.pop(MODEL)
        folder, resuming = _folder(plan.out, trial)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("sweep", str(plan.out.resolve()))
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("folder", str(folder.relative_to(plan.out)))
        log.info("trial %d%s: %s", trial.number, " (resumed)" if resuming else "", _shown(model, values))
        config = dataclasses.replace(plan.base, **values, resume=resuming, overwrite=not resuming)
        stop = _Stopper(trial, plan.deadline, epoch_seconds, config.epochs, resuming)
        try:
            from ..training.loop import train

            result = train(model, plan.train, plan.valid, folder, config, plan.transform, on_epoch=stop)
        except TrainingInterrupted:
            trial.set_user_attr("orphaned", "stopped by a signal")
            raise
        except ImgtrainError as exc:
            trial.set_user_attr("failure", f"{type(exc).__name__}: {str(exc)[:500]}")
            log.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
            raise TrialFailed(str(exc)) from None
        best = result.best
        trial.set_user_attr("val_top1", best["val_top1"])
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("epochs_run", len(result.history))
        if stop.out_of_time:
            trial.set_user_attr("stopped_by_budget", True)
        log.info(
            "trial %d %s: validation loss %.4f, top-1 %.4f (epoch %d of %d)",
            trial.number,
            "pruned" if stop.pruned else "finished",
            best["val_loss"],
            best["val_top1"],
            result.best_epoch,
            len(result.history),
        )
        if stop.pruned:
            raise optuna.TrialPruned()
        return float(best["val_loss"])

    return run


class _Stopper:
    """Reports each epoch's validation loss; says stop when the pruner prunes or the next epoch would miss the
    budget."""

    def __init__(self, trial: Any, deadline: float | None, epoch_seconds: list[float], epochs: int, resuming: bool):
        self.trial, self.deadline, self.epoch_seconds, self.epochs = trial, deadline, epoch_seconds, epochs
        self.pruned = self.out_of_time = False
        self.last = time.time()
        retry_of = trial.user_attrs.get("retry_of")
        if resuming and retry_of is not None:  # the interrupted trial's epochs count for the pruner, as for training
            earlier = trial.study.get_trials(deepcopy=False)
            for step, value in next(t for t in earlier if t.number == retry_of).intermediate_values.items():
                trial.report(value, step)

    def __call__(self, row: dict[str, Any]) -> bool:
        now = time.time()
        seconds, self.last = now - self.last, now
        self.epoch_seconds.append(seconds)
        self.trial.report(row["val_loss"], row["epoch"])
        crash_point("sweep-trial", self.trial.number, row["epoch"])
        if row["epoch"] >= self.epochs:  # its last epoch: the trial is complete, whatever the pruner says
            return False
        if self.trial.should_prune():
            self.pruned = True
        elif self.deadline is not None and now + EPOCH_MARGIN * seconds > self.deadline:
            self.out_of_time = True
        return self.pruned or self.out_of_time


def _folder(out: Path, trial: Any) -> tuple[Path, bool]:
    """The trial's model directory and whether it resumes one: a retried trial continues in its predecessor's
    folder when that holds a checkpoint here."""
    earlier = trial.user_attrs.get("folder")
    if trial.user_attrs.get("retry_of") is not None and isinstance(earlier, str):
        folder = out / earlier
        if folder.parent == out / TRIALS and checkpoint_path(folder).is_file():
            return folder, True
    return trial_folder(out, trial.number), False


def _shown(model: str, values: dict[str, Any]) -> str:
    shown = [f"model {Path(model).name}"]
    for name, value in values.items():
        shown.append(f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}")
    return ", ".join(shown)
