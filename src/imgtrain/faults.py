"""Fault injection for crash-safety tests: IMGTRAIN_CRASH_AT=<point>:<id> kills the process there.

Points: `batch:E.B` (after step B of epoch E), `checkpoint-writing:E` (epoch E's checkpoint
written to its temporary file, not yet renamed), `checkpoint-saved:E` (on disk),
`model-writing` (final model directory written aside), `output-swapping` (the old output moved
aside, the new one not yet in its place), `sweep-trial:T.E` (a sweep's trial T, after epoch E's
checkpoint). IMGTRAIN_CRASH_SIGNAL=INT or TERM sends that signal
instead of SIGKILL; with IMGTRAIN_CRASH_RANK=r only the distributed worker of that rank is hit.
Unset in normal use: costs one lookup.
"""

from __future__ import annotations

import os
import signal


def crash_point(point: str, *ids: int) -> None:
    """Signal this process (SIGKILL unless IMGTRAIN_CRASH_SIGNAL says) when IMGTRAIN_CRASH_AT names this point."""
    wanted = os.environ.get("IMGTRAIN_CRASH_AT")
    if wanted is None:
        return
    here = point + (":" + ".".join(str(i) for i in ids) if ids else "")
    rank = os.environ.get("IMGTRAIN_CRASH_RANK")
    if wanted == here and rank in (None, os.environ.get("RANK", "0")):
        signum = getattr(signal, "SIG" + os.environ.get("IMGTRAIN_CRASH_SIGNAL", "KILL"))
        os.kill(os.getpid(), signum)
