"""Fault injection for crash-safety tests: IMGTRAIN_CRASH_AT=<point>:<n> kills the process there.

Points: `checkpoint-saved` (after epoch n's checkpoint is on disk), `checkpoint-writing`
(in the middle of writing epoch n's checkpoint). Unset in normal use: costs one lookup.
"""

from __future__ import annotations

import os
import signal


def crash_point(point: str, n: int) -> None:
    """Kill this process with SIGKILL when IMGTRAIN_CRASH_AT names this point and count."""
    if os.environ.get("IMGTRAIN_CRASH_AT") == f"{point}:{n}":
        os.kill(os.getpid(), signal.SIGKILL)
