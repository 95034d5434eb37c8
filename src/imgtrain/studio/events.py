"""A run's events (the JSON lines its worker writes, runner.EVENTS): read at once, or followed as server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .runner import EVENTS

if TYPE_CHECKING:
    from starlette.requests import Request

#: How often a followed run's events file is read again.
POLL_SECONDS = 0.3


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


async def follow(folder: Path, request: Request, ended: Callable[[], dict[str, Any] | None]) -> AsyncIterator[str]:
    """Server-sent events: every event of the run from the start, then new ones as they come, then its end (the
    summary `ended()` gives once the run is over) while the client (`request`) stays connected."""
    path, offset = folder / EVENTS, 0
    while not await request.is_disconnected():
        try:
            with open(path, encoding="utf-8") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            chunk = ""
        complete = chunk[: chunk.rfind("\n") + 1]
        offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            yield f"data: {line}\n\n"
        summary = ended()
        if summary is not None and not complete:
            yield f"event: end\ndata: {json.dumps(summary)}\n\n"
            return
        await asyncio.sleep(POLL_SECONDS)
