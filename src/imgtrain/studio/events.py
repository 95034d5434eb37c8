"""A run's events (the JSON lines its worker writes, runner.EVENTS): read at once, or followed as server-sent events."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .runner import EVENTS, BadRequest

if TYPE_CHECKING:
    from starlette.requests import Request

#: How often a followed run's events file is read again.
POLL_SECONDS = 0.3
#: Streams open at once: per run, per client address, and in all (each polls off the event loop).
MAX_STREAMS_PER_RUN, MAX_STREAMS_PER_CLIENT, MAX_STREAMS = 8, 16, 64


class StreamCount:
    """The event streams open now, by run and by client: a stream past a bound is refused (429) before it starts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_run: Counter[int] = Counter()
        self.by_client: Counter[str] = Counter()

    def take(self, run_id: int, client: str) -> Callable[[], None]:
        """Count one more stream of `run_id` from `client`, and what uncounts it (once, however often called);
        BadRequest 429, counting nothing, when that would pass a bound."""
        with self.lock:
            if (
                self.by_run[run_id] >= MAX_STREAMS_PER_RUN
                or self.by_client[client] >= MAX_STREAMS_PER_CLIENT
                or self.by_run.total() >= MAX_STREAMS
            ):
                raise BadRequest(
                    429,
                    f"too many event streams open (at most {MAX_STREAMS_PER_RUN} per run, {MAX_STREAMS_PER_CLIENT} "
                    f"per client, {MAX_STREAMS} in all): close another tab following this run, or poll "
                    f"/api/runs/{run_id}.",
                )
            self.by_run[run_id] += 1
            self.by_client[client] += 1
        released = threading.Event()

        def release() -> None:
            with self.lock:
                if not released.is_set():
                    released.set()
                    self.by_run -= Counter({run_id: 1})
                    self.by_client -= Counter({client: 1})

        return release


def read_events(folder: Path) -> list[dict[str, Any]]:
    """The events a run has written so far (none when it has not started); a line being written is left out."""
    try:
        lines = (folder / EVENTS).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:  # a line being written
            continue
    return events


async def follow(
    folder: Path,
    request: Request,
    ended: Callable[[], dict[str, Any] | None],
    release: Callable[[], None],
) -> AsyncIterator[str]:
    """Server-sent events: every event of the run from the start, then new ones as they come, then its end (the
    summary `ended()` gives once the run is over) while the client (`request`) stays connected, then `release()`
    (StreamCount.take). Files and the registry are read off the event loop."""
    path, offset = folder / EVENTS, 0
    try:
        while not await request.is_disconnected():
            complete, summary = await asyncio.to_thread(_poll, path, offset, ended)
            offset += len(complete.encode("utf-8"))
            for line in complete.splitlines():
                yield f"data: {line}\n\n"
            if summary is not None and not complete:
                yield f"event: end\ndata: {json.dumps(summary)}\n\n"
                return
            await asyncio.sleep(POLL_SECONDS)
    finally:
        release()


def _poll(path: Path, offset: int, ended: Callable[[], dict[str, Any] | None]) -> tuple[str, dict[str, Any] | None]:
    """The whole lines written past `offset`, and the run's summary when nothing new came and it has ended."""
    try:
        with open(path, encoding="utf-8") as f:
            f.seek(offset)
            chunk = f.read()
    except OSError:
        chunk = ""
    complete = chunk[: chunk.rfind("\n") + 1]
    return complete, (ended() if not complete else None)
