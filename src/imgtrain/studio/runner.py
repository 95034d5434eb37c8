"""A studio run: its request (a graph, checked once, every path confined to the root) and the worker process that
runs it (pipeline.Pipeline), reporting as JSON lines: each node's steps, progress and epochs, the library's log."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from ..data.decoding import CACHE_ENV
from ..errors import ImgtrainError, TrainingInterrupted
from ..files import atomic_write_json
from ..progress import PROGRESS_ENV
from .before_work import check_data
from .graph import Problem, check_graph, linear_graph
from .pipeline import Pipeline
from .registry import STATE_DIR

EVENTS = "events.jsonl"
RESULT = "result.json"
LINEAR_KEYS = frozenset({"train", "valid", "split_fraction", "model", "transform", "train_params"})
TRIAL_LOGGER = "imgtrain.sweeps.trial"  # its records' first argument is the trial's number


class BadRequest(Exception):
    """A request refused with an HTTP status (400 invalid, 403 outside the root, 404 missing)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def inside_root(root: Path, relative: Any, what: str) -> Path:
    """`relative` resolved inside `root` (links followed), or BadRequest: 400 not a relative path (or not one the
    system can look up: a NUL byte, a name too long), 403 outside, 404 missing."""
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
        raise BadRequest(400, f"{what} must be a path relative to the studio's root, got {relative!r:.200}.")
    try:
        path = (root / usable_path(relative, what)).resolve()
        inside, found = path.is_relative_to(root.resolve()), path.exists()
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, ...
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise BadRequest(400, f"{what} {relative!r:.200} cannot be looked up: {why}.") from None
    if not inside:
        raise BadRequest(403, f"{what} {relative!r:.200} leads outside the studio's root.")
    if not found:
        raise BadRequest(404, f"{what} {relative!r:.200} does not exist under the studio's root.")
    return path


#: The longest path the studio looks up, and the longest name in it (bytes, as Linux counts them).
MAX_PATH_BYTES, MAX_NAME_BYTES = 4096, 255


def usable_path(relative: str, what: str) -> str:
    """`relative` when the system can look it up; BadRequest 400 for a NUL byte, a name or path too long, or text
    that is not UTF-8 (lone surrogates)."""
    try:
        encoded = relative.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(400, f"{what} {relative!r:.200} is not valid text.") from None
    too_long = len(encoded) > MAX_PATH_BYTES or any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/"))
    if b"\x00" in encoded or too_long:
        raise BadRequest(
            400,
            f"{what} {relative!r:.200} is not a usable path: it holds a NUL byte, or a name over {MAX_NAME_BYTES} "
            f"bytes, or is over {MAX_PATH_BYTES} bytes.",
        )
    return relative


def check_request(root: Path, body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's graph with its defaults filled in (graph.check_graph), every path confined to the root, and the facts
    of its data once the checks before work passed (before_work); Refused listing each problem at its node and field
    otherwise. The studio's first, linear request is read as its graph."""
    if isinstance(body, dict) and "nodes" not in body and "train" in body:
        unknown = sorted(set(body) - LINEAR_KEYS)
        if unknown:
            raise BadRequest(400, f"unknown fields {unknown}; expected some of {sorted(LINEAR_KEYS)}.")
        body = linear_graph(body)
    graph, problems = check_graph(body)
    for node in graph.get("nodes", []):
        if node["module"] == "convert" and isinstance(node["params"].get("source"), str) and node["params"]["source"]:
            try:
                inside_root(root, node["params"]["source"], "source")
            except BadRequest as exc:
                problems.append(Problem(node["id"], "source", str(exc)))
    if problems:
        raise Refused(problems)
    facts, problems = check_data(root, graph)
    if problems:
        raise Refused(problems)
    return graph, facts


class Refused(BadRequest):
    """A run request refused (400) with its problems, each at its node and field, for the page to show in place."""

    def __init__(self, problems: list[Problem]):
        super().__init__(400, "; ".join(_where(p) + p.message for p in problems))
        self.problems = problems


def _where(problem: Problem) -> str:
    return f"{problem.node}.{problem.field}: " if problem.field else f"{problem.node}: " if problem.node else ""


class _Events(logging.Handler):
    """The library's log records as JSON lines, each with the node that was running: progress (training's batches,
    convert's and score's counts), epoch rows, steps of the graph, the rest as text; a sweep's batches and epochs
    name their trial."""

    def __init__(self, path: Path):
        super().__init__(logging.INFO)
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open: the worker writes every record
        self.node: str | None = None
        self.trial: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        event: dict[str, Any] = {"time": record.created, "node": self.node}
        args = record.args if isinstance(record.args, tuple) else ()
        if record.name == TRIAL_LOGGER and args and isinstance(args[0], int):
            self.trial = args[0]
        if self.trial is not None:
            event["trial"] = self.trial
        for kind, attribute in (
            ("progress", "imgtrain_progress"),
            ("progress", "imgtrain_count"),
            ("epoch", "imgtrain_epoch"),
        ):
            if hasattr(record, attribute):
                event.update(kind=kind, **getattr(record, attribute))
                break
        else:
            event.update(kind="log", level=record.levelname, message=record.getMessage())
        self.write(event)

    def step(self, node: str, status: str, error: str) -> None:
        """A node's new state (queued, running, done, failed, skipped, stopped)."""
        self.node, self.trial = node, None
        self.write({"time": time.time(), "kind": "step", "node": node, "status": status, "error": error or None})

    def write(self, event: dict[str, Any]) -> None:
        self.file.write(json.dumps(event, default=str) + "\n")
        self.file.flush()


def work(root: str, folder: str, request: dict[str, Any], server_alive: Any) -> None:
    """Run one graph in this worker process; the outcome goes to FOLDER/result.json, the story to events.jsonl."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    keep_under_root(Path(root) / STATE_DIR)
    os.environ.setdefault(PROGRESS_ENV, "0")  # every tenth of convert and score reaches the page (10 events a step)
    logger = logging.getLogger("imgtrain")
    logger.setLevel(logging.INFO)
    events = _Events(out / EVENTS)
    logger.addHandler(events)
    _stop_when_orphaned(server_alive)
    result: dict[str, Any]
    try:
        pipeline = Pipeline(Path(root), out, request, events.step)
        outputs = pipeline.run()
        failed = {"status": "failed", "error": pipeline.failure}
        result = failed if pipeline.failure else {"status": "finished", "outputs": outputs}
    except (TrainingInterrupted, KeyboardInterrupt):
        result = {"status": "stopped", "error": None}
    except ImgtrainError as exc:
        result = {"status": "failed", "error": {"name": type(exc).__name__, "message": str(exc)}}
    except Exception as exc:  # a bug: still the run's failure with its message, never a dead server
        logger.exception("the run failed")
        result = {"status": "failed", "error": {"name": type(exc).__name__, "message": str(exc)}}
    atomic_write_json(out / RESULT, result)


#: Where the libraries a run uses keep their caches, under the studio's STATE_DIR: imgtrain's decoded images,
#: matplotlib's font cache and config (else in ~/.matplotlib or ~/.cache), torch's compiled kernels (else
#: $TMPDIR/torchinductor_USER) and Triton's. $TMPDIR is left as it is: multiprocessing's sockets live there, and a
#: socket's path may not pass 107 bytes; what goes there is removed when the process ends.
UNDER_ROOT = {
    CACHE_ENV: "decoded-cache",
    "MPLCONFIGDIR": "matplotlib",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
    "TRITON_CACHE_DIR": "triton",
}


def keep_under_root(state: Path) -> None:
    """Point the caches of this process under the studio's own folder, so that a studio writes nothing outside its
    root that outlives it (pretrained weights aside) and runs where $HOME is read-only or shared."""
    for variable, name in UNDER_ROOT.items():
        (state / name).mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(state / name)


def _stop_when_orphaned(server_alive: Any) -> None:
    """A worker whose server died stops as Ctrl-C stops it (checkpoint written), so the run can be resumed.

    The server holds the only other end of `server_alive` (a pipe): reading it ends when the server's process
    does, however it ended, whoever the worker's parent is (a forkserver's children are not the server's)."""

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            server_alive.recv()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()
