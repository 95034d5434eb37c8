"""Fault injection for crash-safety tests: IMGTRAIN_CRASH_AT=<point>:<n> kills the process there.

Points: `checkpoint-saved` (after epoch n's checkpoint is on disk). With IMGTRAIN_CRASH_RANK=r
only the distributed worker of that rank dies. Unset in normal use: costs one lookup.
"""

from __future__ import annotations

import os
import signal


def crash_point(point: str, n: int) -> None:
    """Kill this process with SIGKILL when IMGTRAIN_CRASH_AT names this point and count."""
    rank = os.environ.get("IMGTRAIN_CRASH_RANK")
    if os.environ.get("IMGTRAIN_CRASH_AT") == f"{point}:{n}" and rank in (None, os.environ.get("RANK", "0")):
        os.kill(os.getpid(), signal.SIGKILL)
