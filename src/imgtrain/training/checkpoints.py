"""Training checkpoints: one safetensors file (tensors + JSON metadata), replaced atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file

from ..devices import RESOLVED_PRECISIONS
from ..errors import CheckpointError
from ..faults import crash_point
from ..files import publish, write_failed

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_NAME = "last.safetensors"
FORMAT = "imgtrain.checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """Everything needed to continue training after `epoch` epochs, bit for bit."""

    epoch: int
    model: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor] | None
    optimizer: dict[str, Any]
    state: dict[str, Any]  # early stopping, history, fingerprint, precision, fp16 loss scaler


def checkpoint_path(out: Path) -> Path:
    return Path(out) / CHECKPOINT_DIR / CHECKPOINT_NAME


def save_checkpoint(out: Path, ckpt: Checkpoint) -> Path:
    """Write the checkpoint next to the old one, then rename over it: a crash leaves one intact file."""
    path = checkpoint_path(out)
    tensors = {f"model.{k}": v for k, v in ckpt.model.items()}
    if ckpt.best is not None:
        tensors |= {f"best.{k}": v for k, v in ckpt.best.items()}
    for param_id, param_state in ckpt.optimizer["state"].items():
        for name, value in param_state.items():
            tensors[f"optim.{param_id}.{name}"] = value
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "epoch": ckpt.epoch,
            "has_best": ckpt.best is not None, "param_groups": ckpt.optimizer["param_groups"], "state": ckpt.state}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        save_file(tensors, tmp, metadata={"imgtrain": json.dumps(meta)})
        publish(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        crash_point("checkpoint-writing", ckpt.epoch)
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:
        kept = "The previous checkpoint is kept." if path.exists() else ""
        raise write_failed(path, exc, kept) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(out: Path) -> Checkpoint:
    """Read and validate the last checkpoint of a training run in `out`; ParameterError says what is wrong."""
    path = checkpoint_path(out)
    try:
        data = path.read_bytes()
        header_size = int.from_bytes(data[:8], "little")
        meta = json.loads(json.loads(data[8:8 + header_size])["__metadata__"]["imgtrain"])
        tensors = load(data)
        del data
        problem = _meta_problem(meta)
        if problem is None:
            model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
            best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} if meta["has_best"] else None
            optim_state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                if key.startswith("optim."):
                    _, param_id, name = key.split(".", 2)
                    optim_state.setdefault(int(param_id), {})[name] = value
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        problem = f"it cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
    if problem is not None:
        raise CheckpointError(f"The checkpoint {path} is not usable: {problem}.",
                             hint="start over with --overwrite instead of --resume.")
    optimizer = {"state": optim_state, "param_groups": meta["param_groups"]}
    return Checkpoint(meta["epoch"], model, best, optimizer, meta["state"])


def _meta_problem(meta: Any) -> str | None:
    """What is wrong with a checkpoint's JSON metadata, or None."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        return f"it is not an imgtrain checkpoint of version {FORMAT_VERSION}"
    groups, state = meta.get("param_groups"), meta.get("state")
    checks = {"epoch": _count(meta.get("epoch")), "has_best": isinstance(meta.get("has_best"), bool),
              "param_groups": isinstance(groups, list) and all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                                                for g in groups),
              "state": isinstance(state, dict)}
    if isinstance(state, dict):
        stopper, partial = state.get("stopper"), state.get("partial")
        checks |= {"stopper": isinstance(stopper, dict) and set(stopper) == STOPPER_FIELDS,
                   "history": isinstance(state.get("history"), list),
                   "fingerprint": isinstance(state.get("fingerprint"), dict),
                   "partial": partial is None or (isinstance(partial, dict) and set(partial) == PARTIAL_FIELDS
                                                  and all(_count(partial[k]) for k in ("epoch", "batches", "correct",
                                                                                       "seen"))
                                                  and all(isinstance(partial[k], float | int)
                                                          for k in ("loss_sum", "seconds"))),
                  "precision": state.get("precision") in (None, *RESOLVED_PRECISIONS),
                  "scaler": _scaler_state(state.get("scaler"))}
    wrong = [name for name, ok in checks.items() if not ok]
    return f"its metadata is damaged ({', '.join(wrong)})" if wrong else None


def _scaler_state(value: Any) -> bool:
    """None, or an fp16 loss scaler's state: positive finite numbers and a step count."""
    if value is None:
        return True
    return (isinstance(value, dict) and set(value) == SCALER_FIELDS and _count(value["_growth_tracker"])
            and _count(value["growth_interval"]) and all(isinstance(value[k], float | int) and not isinstance(
                value[k], bool) and 0 < value[k] < math.inf for k in ("scale", "growth_factor", "backoff_factor")))


def _count(value: Any) -> bool:
    """A JSON integer >= 0 (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


STOPPER_FIELDS = {"patience", "best_loss", "best_epoch", "bad_epochs"}
SCALER_FIELDS = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}
PARTIAL_FIELDS = {"epoch", "batches", "loss_sum", "correct", "seen", "seconds"}
