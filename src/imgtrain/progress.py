"""Progress bars: tqdm on a terminal; elsewhere (a pipe, a log file, a CI job) log lines as the work goes on."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)

#: Where stderr is not a terminal, a line at each tenth of the work, but at most one per this many seconds
#: (IMGTRAIN_PROGRESS_SECONDS sets it; 0 logs every tenth), and one at least this often however slow a tenth is.
PROGRESS_ENV = "IMGTRAIN_PROGRESS_SECONDS"
MIN_SECONDS = 5.0
MAX_SECONDS = 60.0


def progress_bar(total: int | None, desc: str, unit: str = "img", enabled: bool = True, **options: Any) -> Any:
    """A progress bar over `total` units (None: unknown) with tqdm's update / set_postfix / close, usable in `with`.

    On a terminal it is tqdm's bar; where stderr is not one, log lines (LoggedProgress); none when not `enabled`.
    """
    if not enabled:
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, leave=False, **options)
    return LoggedProgress(total, desc, unit, bytes_=bool(options.get("unit_scale")))


def _min_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(PROGRESS_ENV, MIN_SECONDS)))
    except ValueError:
        return MIN_SECONDS


class LoggedProgress:
    """Progress as INFO log lines: `convert: 120/240 img (50%), 6 s` at each tenth of the work, rate-limited, and
    a last line when the work ends if any line came before it (a short step logs nothing)."""

    def __init__(self, total: int | None, desc: str, unit: str = "img", bytes_: bool = False):
        self.total, self.desc, self.unit, self.bytes = total, desc, unit, bytes_
        self.count, self.postfix, self.lines = 0, "", 0
        self.min_seconds = _min_seconds()
        self.started = self.last = time.monotonic()
        self.tenth = 0

    def update(self, n: int = 1) -> None:
        """Count `n` more units done; log a line when a tenth is passed (or a long while went by)."""
        self.count += n
        now = time.monotonic()
        tenth = 10 * self.count // self.total if self.total else self.tenth
        if now - self.last >= MAX_SECONDS or (
            tenth > self.tenth and now - self.last >= self.min_seconds and self.count != self.total
        ):
            self._log(now)
        self.tenth = max(self.tenth, tenth)

    def set_postfix(self, **values: Any) -> None:
        """Extra figures shown at the end of each line, like tqdm's."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        """The last line, when the work logged any before."""
        if self.lines:
            self._log(time.monotonic())
            self.lines = 0

    def _log(self, now: float) -> None:
        done = tqdm.format_sizeof(self.count, "B") if self.bytes else f"{self.count}"
        if self.total:
            total = tqdm.format_sizeof(self.total, "B") if self.bytes else f"{self.total} {self.unit}"
            what = f"{done}/{total} ({100 * self.count // self.total}%)"
        else:
            what = done if self.bytes else f"{done} {self.unit}"
        log.info(
            "%s: %s, %.1f s%s",
            self.desc,
            what,
            now - self.started,
            f", {self.postfix}" if self.postfix else "",
            extra={"imgtrain_count": {"what": self.desc, "done": self.count, "total": self.total, "unit": self.unit}},
        )
        self.last, self.lines = now, self.lines + 1

    def __enter__(self) -> LoggedProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
