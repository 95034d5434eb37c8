"""A studio run: its request (checked once, every path confined to the root) and the pipeline that a worker process
runs with the library: convert -> split -> model -> train -> score -> evaluate, reporting as JSON lines."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import imgtrain

from ..config import (
    CATALOG_FAMILY,
    FAMILIES,
    STUDIO_MODEL,
    STUDIO_TRAIN_DEFAULTS,
    TrainConfig,
    TransformSpec,
    spec_problems,
)
from ..data.decoding import CACHE_ENV
from ..errors import ImgtrainError, ParameterError, TrainingInterrupted
from ..files import atomic_write_json
from ..params import declared, is_number
from .registry import STATE_DIR

EVENTS = "events.jsonl"
RESULT = "result.json"
REQUEST_KEYS = frozenset({"train", "valid", "split_fraction", "model", "transform", "train_params"})


class BadRequest(Exception):
    """A request refused with an HTTP status (400 invalid, 403 outside the root, 404 missing)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def inside_root(root: Path, relative: Any, what: str) -> Path:
    """`relative` resolved inside `root` (links followed), or BadRequest: 400 not a relative path, 403 outside."""
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
        raise BadRequest(400, f"{what} must be a path relative to the studio's root, got {relative!r}.")
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise BadRequest(403, f"{what} {relative!r} leads outside the studio's root.")
    if not path.exists():
        raise BadRequest(404, f"{what} {relative!r} does not exist under the studio's root.")
    return path


def check_request(root: Path, body: Any) -> dict[str, Any]:
    """The request with its defaults filled in, or BadRequest saying what is wrong (the library's messages)."""
    if not isinstance(body, dict):
        raise BadRequest(400, "the request must be a JSON object.")
    unknown = sorted(set(body) - REQUEST_KEYS)
    if unknown:
        raise BadRequest(400, f"unknown fields {unknown}; expected some of {sorted(REQUEST_KEYS)}.")
    inside_root(root, body.get("train"), "train")
    if body.get("valid") is not None:
        inside_root(root, body["valid"], "valid")
    fraction = body.get("split_fraction", 0.9)
    if not is_number(fraction, 0, 1) or fraction in (0, 1):
        raise BadRequest(400, f"split_fraction must be a number between 0 and 1, got {fraction!r}.")
    model = {**STUDIO_MODEL, **(body.get("model") or {})}
    if (
        model["family"] not in (*FAMILIES, CATALOG_FAMILY)
        or not isinstance(model["model_name"], str)
        or not isinstance(model["pretrained"], bool)
    ):
        raise BadRequest(
            400,
            f"model must name a family ({', '.join((*FAMILIES, CATALOG_FAMILY))}), a model_name "
            f"and pretrained true/false, got {model!r}.",
        )
    transform = body.get("transform") or {}
    problems = ["'transform' must be an object"] if not isinstance(transform, dict) else spec_problems(transform)
    params = body.get("train_params") or {}
    if not isinstance(params, dict):
        raise BadRequest(400, "train_params must be an object.")
    known = {d.name for d in declared(TrainConfig) if d.param.studio}
    problems += [f"{name!r} is not a training parameter the studio takes" for name in sorted(set(params) - known)]
    if problems:
        raise BadRequest(400, "; ".join(problems))
    try:
        TrainConfig(**params)
    except ParameterError as exc:
        raise BadRequest(400, str(exc)) from None
    return {
        "train": body["train"],
        "valid": body.get("valid"),
        "split_fraction": fraction,
        "model": model,
        "transform": transform,
        "train_params": params,
    }


class _Events(logging.Handler):
    """The library's log records as JSON lines: progress and epoch rows with their numbers, the rest as text."""

    def __init__(self, path: Path):
        super().__init__(logging.INFO)
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open: the worker writes every record

    def emit(self, record: logging.LogRecord) -> None:
        event: dict[str, Any] = {"time": record.created}
        for kind in ("progress", "epoch"):
            if hasattr(record, f"imgtrain_{kind}"):
                event.update(kind=kind, **getattr(record, f"imgtrain_{kind}"))
                break
        else:
            event.update(kind="log", level=record.levelname, message=record.getMessage())
        self.file.write(json.dumps(event, default=str) + "\n")
        self.file.flush()


def work(root: str, folder: str, request: dict[str, Any], server_alive: Any) -> None:
    """Run one pipeline in this worker process; the outcome goes to FOLDER/result.json, the story to events.jsonl."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    os.environ[CACHE_ENV] = str(Path(root) / STATE_DIR / "decoded-cache")  # what the studio writes stays under the root
    logger = logging.getLogger("imgtrain")
    logger.setLevel(logging.INFO)
    logger.addHandler(_Events(out / EVENTS))
    _stop_when_orphaned(server_alive)
    try:
        result = {"status": "finished", "outputs": _pipeline(Path(root), out, request)}
    except (TrainingInterrupted, KeyboardInterrupt) as exc:
        result = {"status": "stopped", "error": {"name": type(exc).__name__, "message": str(exc) or "stopped"}}
    except ImgtrainError as exc:
        result = {"status": "failed", "error": {"name": type(exc).__name__, "message": str(exc)}}
    except Exception as exc:  # a bug: still the run's failure with its message, never a dead server
        logger.exception("the run failed")
        result = {"status": "failed", "error": {"name": type(exc).__name__, "message": str(exc)}}
    atomic_write_json(out / RESULT, result)


def _pipeline(root: Path, out: Path, request: dict[str, Any]) -> dict[str, str]:
    """Each step writes its ordinary CLI output in `out`; a step whose output exists (a resumed run) is skipped,
    and training continues from its checkpoint when it has one."""
    # imported here, as below: the server imports this module to check requests, and does not load torch
    from imgtrain.inference.scoring import score_to_file

    train = _images(root / request["train"], out / "train-images")
    if request["valid"] is None:
        if not (out / "train").exists():
            imgtrain.split(train, out / "train", out / "valid", fraction=request["split_fraction"])
        train, valid = out / "train", out / "valid"
    else:
        valid = _images(root / request["valid"], out / "valid-images")
    model = request["model"]
    if not (out / "untrained").exists():
        imgtrain.create_model_directory(
            out / "untrained",
            imgtrain.Architecture(model["family"], model["model_name"]),
            pretrained=model["pretrained"],
        )
    if not (out / "model" / "imgtrain-model.json").exists():
        from imgtrain.training.checkpoints import checkpoint_path

        resume = checkpoint_path(out / "model").is_file()  # a stopped or interrupted run continues
        params = {**STUDIO_TRAIN_DEFAULTS, **request["train_params"]}
        config = TrainConfig(**params, progress=False, resume=resume)
        imgtrain.train(out / "untrained", train, valid, out / "model", config, TransformSpec(**request["transform"]))
    if not (out / "scores.csv").exists():
        score_to_file(out / "model", valid, out / "scores.csv", progress=False)
    if not (out / "evaluation").exists():
        imgtrain.evaluate(out / "scores.csv", out / "evaluation", model=out / "model")  # with Grad-CAM
    return {name: str((out / name).relative_to(root)) for name in ("model", "scores.csv", "evaluation")}


def _images(source: Path, converted: Path) -> Path:
    """An image directory as it is, anything else converted into `converted` (once)."""
    if (source / "imgtrain-images.json").is_file():
        return source
    if not converted.exists():
        imgtrain.convert(source, converted, progress=False)
    return converted


def _stop_when_orphaned(server_alive: Any) -> None:
    """A worker whose server died stops as Ctrl-C stops it (checkpoint written), so the run can be resumed.

    The server holds the only other end of `server_alive` (a pipe): reading it ends when the server's process
    does, however it ended, whoever the worker's parent is (a forkserver's children are not the server's)."""

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            server_alive.recv()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()
