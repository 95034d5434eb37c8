"""The state a training run carries from epoch to epoch, and its layout inside a checkpoint (one place)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..devices import RESOLVED_PRECISIONS
from ..errors import CheckpointError, ParameterError
from ..models.architectures import weights_mismatch
from ..params import is_integer, is_number
from .checkpoints import Checkpoint, checkpoint_path
from .recipe import WeightAverage

#: Fingerprint keys whose absence in an older checkpoint means something else than the parameter's default, and
#: what: None for keys older runs did not record at all (whatever this run has is accepted).
FINGERPRINT_BEFORE = {
    "head_lr_scale": 1.0,
    "repeatable": None,
    "freeze_epochs": None,
    "train_index": None,
    "valid_index": None,
}


@dataclass
class EarlyStopping:
    """Stop when validation loss has not improved on the best so far for `patience` epochs."""

    patience: int
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, epoch: int, loss: float) -> bool:
        """Record epoch's loss; True when it is a new best (NaN never is)."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = loss, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience


@dataclass
class EpochProgress:
    """Sums over the finished batches of one epoch; a checkpoint keeps them when a run stops mid-epoch."""

    epoch: int
    batches: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


@dataclass
class RunState:
    """Weights' owner, optimizer, fp16 loss scaler, early stopping, history and place in the run.

    `to_checkpoint` and `restore` are the only code that knows how this state sits in a checkpoint.
    """

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    stopper: EarlyStopping
    fingerprint: dict[str, Any]
    precision: str
    average: WeightAverage | None = None  # the moving average of the weights (--ema), validated and saved instead
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, torch.Tensor] | None = None
    epoch: int = 0  # epochs finished
    partial: EpochProgress | None = None  # how far a stopped run got into the next epoch

    def progress_of(self, epoch: int) -> EpochProgress:
        """Where `epoch` starts: from the batch a stopped run reached, or from its beginning."""
        partial, self.partial = self.partial, None
        return partial if partial is not None and partial.epoch == epoch else EpochProgress(epoch)

    @property
    def judged(self) -> nn.Module:
        """The weights that are validated and saved: the moving average when there is one, else the network."""
        return self.average.module if self.average is not None else self.net

    def record(self, row: dict[str, Any]) -> bool:
        """Add a finished epoch's metrics; keep a copy of the weights when it is the best so far."""
        improved = self.stopper.update(row["epoch"], row["val_loss"])
        if improved:
            self.best = {k: v.detach().to("cpu", copy=True) for k, v in self.judged.state_dict().items()}
        self.history.append({**row, "best": improved})
        self.epoch = row["epoch"]
        return improved

    def to_checkpoint(self, progress: EpochProgress | None = None) -> Checkpoint:
        """The checkpoint of this state, with `progress` into the next epoch when the run stops mid-epoch."""
        state = {
            "stopper": dataclasses.asdict(self.stopper),
            "history": self.history,
            "fingerprint": self.fingerprint,
            "partial": dataclasses.asdict(progress) if progress else None,
            "precision": self.precision,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }
        average = self.average.state_dict() if self.average is not None else None
        return Checkpoint(self.epoch, self.net.state_dict(), self.best, self.optimizer.state_dict(), state, average)

    def restore(self, ckpt: Checkpoint, out: Path) -> None:
        """Continue from `ckpt`: weights, optimizer, loss scaler, early stopping, history, place in the run."""
        _load_weights_and_optimizer(self, ckpt, out)
        self.stopper = EarlyStopping(**ckpt.state["stopper"])
        self.history, self.best, self.epoch = ckpt.state["history"], ckpt.best, ckpt.epoch
        partial = ckpt.state.get("partial")
        self.partial = EpochProgress(**partial) if partial else None


def saved_precision(ckpt: Checkpoint) -> str:
    """The precision the checkpointed run started in (older checkpoints kept it in the fingerprint)."""
    return ckpt.state.get("precision") or ckpt.state["fingerprint"].get("precision", "fp32")


def _load_weights_and_optimizer(run: RunState, ckpt: Checkpoint, out: Path) -> None:
    expected = run.net.state_dict()
    try:
        for name, weights in (("weights", ckpt.model), ("best weights", ckpt.best or {})):
            details = weights and weights_mismatch(expected, weights)
            if details:
                raise ValueError(f"its {name} do not fit ({details})")
        # the optimizer's settings come from the parameters (the learning rate is set again each epoch)
        # (as JSON: a checkpoint keeps AdamW's betas as a list)
        fixed = [{k: v for k, v in group.items() if k != "lr"} for group in run.optimizer.state_dict()["param_groups"]]
        saved = [{k: v for k, v in group.items() if k != "lr"} for group in ckpt.optimizer["param_groups"]]
        if json.loads(json.dumps(saved)) != json.loads(json.dumps(fixed)):
            raise ValueError("its optimizer settings are not this run's")
        if (run.average is None) != (ckpt.average is None):
            raise ValueError("it has a moving average of the weights where this run has none, or the other way")
        run.net.load_state_dict(ckpt.model, strict=True)
        if run.average is not None and ckpt.average is not None:
            run.average.load_state_dict(ckpt.average, strict=True)
        run.optimizer.load_state_dict(ckpt.optimizer)
        if run.scaler is not None and ckpt.state.get("scaler"):
            run.scaler.load_state_dict(ckpt.state["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(
            f"The checkpoint {checkpoint_path(out)} does not fit the network: {str(exc).splitlines()[0][:300]}.",
            hint="start over with --overwrite.",
        ) from None


def check_state(ckpt: Checkpoint, path: Path) -> None:
    """CheckpointError naming the damaged fields of a checkpoint's run state (hand-edited or corrupted)."""
    state = ckpt.state
    stopper, partial = state.get("stopper"), state.get("partial")
    checks = {
        "stopper": isinstance(stopper, dict) and set(stopper) == _fields(EarlyStopping),
        "history": isinstance(state.get("history"), list),
        "fingerprint": isinstance(state.get("fingerprint"), dict),
        "partial": partial is None or _progress_fields(partial),
        "precision": state.get("precision") in (None, *RESOLVED_PRECISIONS),
        "scaler": _scaler_state(state.get("scaler")),
    }
    wrong = [name for name, ok in checks.items() if not ok]
    if wrong:
        raise CheckpointError(
            f"The checkpoint {path} is not usable: its metadata is damaged ({', '.join(wrong)}).",
            hint="start over with --overwrite instead of --resume.",
        )


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _progress_fields(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == _fields(EpochProgress)
        and all(is_integer(value[k]) for k in ("epoch", "batches", "correct", "seen"))
        and all(isinstance(value[k], float | int) for k in ("loss_sum", "seconds"))
    )


def _scaler_state(value: Any) -> bool:
    """None, or an fp16 loss scaler's state: positive finite numbers and a step count."""
    if value is None:
        return True
    return (
        isinstance(value, dict)
        and set(value) == SCALER_FIELDS
        and is_integer(value["_growth_tracker"])
        and is_integer(value["growth_interval"])
        and all(is_number(value[k]) and value[k] > 0 for k in ("scale", "growth_factor", "backoff_factor"))
    )


SCALER_FIELDS = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}


def check_fingerprint(out: Path, resumed: Checkpoint, current: dict[str, Any]) -> None:
    """ParameterError naming what differs between the checkpointed run and this one (resume continues a run with
    the same inputs and parameters). A parameter an older checkpoint lacks held its declared default then, so a new
    option needs no migration here; FINGERPRINT_BEFORE lists the exceptions."""
    saved = {k: v for k, v in resumed.state["fingerprint"].items() if k != "precision"}  # see saved_precision
    defaults = TrainConfig().hyperparameters()
    for key in set(current) - set(saved):
        if key in FINGERPRINT_BEFORE:
            saved[key] = current[key] if FINGERPRINT_BEFORE[key] is None else FINGERPRINT_BEFORE[key]
        elif key in defaults:
            saved[key] = defaults[key]
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        raise ParameterError(
            f"The run in {out} was started with other inputs or parameters; these differ: {', '.join(changed)}.",
            hint="resume with the same inputs and parameters, or start over with --overwrite.",
        )
