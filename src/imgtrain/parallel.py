"""Per-image work spread over processes, with a progress bar; order is kept."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from .errors import WorkerCrashedError
from .progress import progress_bar

T = TypeVar("T")


def default_workers() -> int:
    """One worker per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def default_loader_workers() -> int:
    """No loader workers on small machines (they would fight the model for the cores), else up to 4."""
    cores = default_workers()
    return 0 if cores <= 2 else min(4, cores - 1)


#: Images over this many pixels take longer to decode (~30 ms for a 12 MP JPEG at reduced scale) than a model's
#: inference on them: scoring them is decoding-bound, and loader workers on every core pay off even on 2 cores.
LARGE_IMAGE_PIXELS = 2_000_000


def scoring_loader_workers(median_pixels: float) -> int:
    """Loader workers for scoring: one per core for large photos (decoding-bound), else the default."""
    return default_workers() if median_pixels > LARGE_IMAGE_PIXELS else default_loader_workers()


def _init_worker() -> None:
    # Each worker is one core's worth of work: keep torch from starting its own thread pool.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def process_map(
    fn: Callable[[Any], T],
    tasks: Sequence[Any],
    workers: int | None = None,
    desc: str = "",
    progress: bool = True,
) -> Iterator[T]:
    """Yield fn(task) for every task, in order, computed in `workers` processes.

    A worker that dies ends the run with WorkerCrashedError instead of a hang.
    """
    workers = default_workers() if workers is None else workers
    bar = progress_bar(len(tasks), desc, "img", progress)
    with bar:
        if workers <= 1 or len(tasks) < 64:
            for task in tasks:
                result = fn(task)
                bar.update()  # before yielding: a consumer that stops at the last result never resumes us
                yield result
            return
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        chunk = max(1, min(64, len(tasks) // (workers * 8)))
        context = multiprocessing.get_context(method)
        try:
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
                for result in pool.map(fn, tasks, chunksize=chunk):
                    bar.update()
                    yield result
        except BrokenProcessPool:
            raise WorkerCrashedError(
                f"A worker process died during '{desc}' (out of memory, or a crash while decoding an image).",
                hint="rerun with --workers 1 to see which file it was, and remove or re-save it.",
            ) from None
