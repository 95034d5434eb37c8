"""The studio's worker supervision: one run at a time, each in its own worker process (runner.work); the others wait,
queued in the registry. How each run ended goes back to the registry."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .graph import run_graph
from .registry import Registry, run_folder_name
from .runner import RESULT, work

#: The statuses of a run that has not ended yet, and those a run resumes from.
ACTIVE = ("queued", "running")
RESUMABLE = ("stopped", "interrupted", "failed")

#: What the worker processes' server imports once, so that each run's worker starts with them loaded.
WORKER_PRELOAD = [
    "torch",
    "torchvision",
    "imgtrain.studio.runner",
    "imgtrain.training.loop",
    "imgtrain.inference.scoring",
    "imgtrain.inference.evaluation",
    "imgtrain.inference.explain",
]


def worker_context() -> Any:
    """Runs' workers forked from a server that has imported torch and the library once: a run then starts in a
    fraction of a second, not after the 4-5 s of importing torch and torchvision again (measured on 2 cores).
    That server keeps the environment it started with; where there is no forkserver, workers are spawned."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_PRELOAD)
    return context


@dataclass
class Worker:
    """The running run's worker process, and the writing end of its server_alive pipe (runner._stop_when_orphaned):
    only this server holds it, so the worker reads EOF when this server ends, however it ends."""

    run_id: int
    process: Any
    alive_writer: Any


@dataclass
class Manager:
    """Starts queued runs one at a time in worker processes and records how each ended."""

    root: Path
    registry: Registry
    worker: Worker | None = None
    context: Any = field(default_factory=lambda: worker_context())

    @property
    def running_id(self) -> int | None:
        """The id of the run a worker runs now, if any."""
        return self.worker.run_id if self.worker is not None else None

    def run_folder(self, run_id: int) -> Path:
        """Where run `run_id` writes its outputs."""
        return self.root / run_folder_name(run_id)

    def tick(self) -> None:
        """Record the end of the running worker, then start the next queued run if none runs."""
        if self.worker is not None and not self.worker.process.is_alive():
            self._record_end(self.worker)
        if self.worker is None:
            run = self.registry.next_queued()
            if run is not None:
                self._start_worker(run)

    def _start_worker(self, run: dict[str, Any]) -> None:
        folder = self.run_folder(run["id"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RESULT).unlink(missing_ok=True)
        server_alive, alive_writer = self.context.Pipe(duplex=False)  # the worker reads; EOF when this process ends
        process = self.context.Process(
            target=work, daemon=False, args=(str(self.root), str(folder), run_graph(run), server_alive)
        )
        process.start()
        server_alive.close()
        self.worker = Worker(run["id"], process, alive_writer)
        self.registry.set_status(run["id"], "running")

    def _record_end(self, worker: Worker) -> None:
        worker.alive_writer.close()
        self.worker = None
        try:
            result = json.loads((self.run_folder(worker.run_id) / RESULT).read_text())
        except (OSError, ValueError):
            message = f"the run's worker process ended (exit code {worker.process.exitcode}) without a result"
            result = {"status": "failed", "error": {"name": "WorkerCrashedError", "message": message}}
        self.registry.set_status(worker.run_id, result["status"], result.get("error"))

    def stop(self, run_id: int) -> bool:
        """Ask a run to stop: the worker stops as Ctrl-C stops training (checkpoint written); a queued run is
        taken off the queue. False when the run is neither running nor queued."""
        run = self.registry.get(run_id)
        if run is None or run["status"] not in ACTIVE:
            return False
        if self.worker is not None and run_id == self.worker.run_id:
            os.kill(self.worker.process.pid, signal.SIGINT)
        else:
            self.registry.set_status(run_id, "stopped")
        return True

    def shutdown(self, timeout: float = 60) -> None:
        """Stop the running worker as Ctrl-C would (the run stays resumable) and record its end; the server exits."""
        if self.worker is not None and self.worker.process.is_alive():
            os.kill(self.worker.process.pid, signal.SIGINT)
            self.worker.process.join(timeout)
            self._record_end(self.worker)
