"""Training checkpoints: one safetensors file (tensors + JSON metadata), replaced atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file

from ..errors import CheckpointError
from ..files import atomic_file
from ..jsonfiles import format_problem
from ..params import is_integer

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
    state: dict[str, Any]  # the run's state, laid out by training.state.RunState
    average: dict[str, torch.Tensor] | None = None  # the moving average of the weights (--ema), with its count


def checkpoint_path(out: Path) -> Path:
    return Path(out) / CHECKPOINT_DIR / CHECKPOINT_NAME


def save_checkpoint(out: Path, ckpt: Checkpoint) -> Path:
    """Write the checkpoint next to the old one, then rename over it: a crash leaves one intact file."""
    path = checkpoint_path(out)
    tensors = {f"model.{k}": v for k, v in ckpt.model.items()}
    if ckpt.best is not None:
        tensors |= {f"best.{k}": v for k, v in ckpt.best.items()}
    if ckpt.average is not None:
        tensors |= {f"average.{k}": v for k, v in ckpt.average.items()}
    for param_id, param_state in ckpt.optimizer["state"].items():
        for name, value in param_state.items():
            tensors[f"optim.{param_id}.{name}"] = value
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "epoch": ckpt.epoch,
        "has_best": ckpt.best is not None,
        "has_average": ckpt.average is not None,
        "param_groups": ckpt.optimizer["param_groups"],
        "state": ckpt.state,
    }
    kept = "The previous checkpoint is kept." if path.exists() else ""
    with atomic_file(
        path, kept, write_errors=(OSError, SafetensorError), crash_at=("checkpoint-writing", ckpt.epoch)
    ) as tmp:
        save_file(tensors, tmp, metadata={"imgtrain": json.dumps(meta)})
    return path


def load_checkpoint(out: Path) -> Checkpoint:
    """Read and validate the last checkpoint of a training run in `out`; CheckpointError says what is wrong."""
    path = checkpoint_path(out)
    try:
        data = path.read_bytes()
        header_size = int.from_bytes(data[:8], "little")
        meta = json.loads(json.loads(data[8 : 8 + header_size])["__metadata__"]["imgtrain"])
        tensors = load(data)
        del data
        problem = _meta_problem(meta)
        if problem is None:
            model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
            best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} if meta["has_best"] else None
            average = (
                {k[8:]: v for k, v in tensors.items() if k.startswith("average.")} if meta.get("has_average") else None
            )
            optim_state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                if key.startswith("optim."):
                    _, param_id, name = key.split(".", 2)
                    optim_state.setdefault(int(param_id), {})[name] = value
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        problem = f"it cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
    if problem is not None:
        raise CheckpointError(
            f"The checkpoint {path} is not usable: {problem}.", hint="start over with --overwrite instead of --resume."
        )
    optimizer = {"state": optim_state, "param_groups": meta["param_groups"]}
    return Checkpoint(meta["epoch"], model, best, optimizer, meta["state"], average)


def _meta_problem(meta: Any) -> str | None:
    """What is wrong with a checkpoint's own fields, or None (the run state's are checked by `state.check_state`)."""
    problem = format_problem(meta, FORMAT, FORMAT_VERSION)
    if problem:
        return problem
    groups = meta.get("param_groups")
    checks = {
        "epoch": is_integer(meta.get("epoch")),
        "has_best": isinstance(meta.get("has_best"), bool),
        "has_average": isinstance(meta.get("has_average", False), bool),
        "param_groups": isinstance(groups, list)
        and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups),
        "state": isinstance(meta.get("state"), dict),
    }
    wrong = [name for name, ok in checks.items() if not ok]
    return f"its metadata is damaged ({', '.join(wrong)})" if wrong else None
