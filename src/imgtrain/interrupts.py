"""Ctrl-C and SIGTERM: during training finish the batch, write a checkpoint, say how to resume; elsewhere
unwind like Ctrl-C, so that half-built outputs are removed on the way out."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopRequest:
    """Set by a signal handler; the training loop looks at it between batches."""

    signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """While inside, SIGINT/SIGTERM only ask to stop; a second Ctrl-C stops at once (KeyboardInterrupt).

    Signal handlers can only be set from the main thread; elsewhere the request is never set.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: object) -> None:
        if request.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        request.signum = signum
        log.warning("%s received: stopping after this batch and writing a checkpoint (press Ctrl-C again to stop "
                    "at once, losing the current epoch's progress)", request.name)

    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Terminated(BaseException):
    """SIGTERM outside training: unwinds the stack (cleaning up as it goes) like KeyboardInterrupt does."""


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated instead of killing the process where it stands.

    Training sets its own handler while it runs (finish the batch, checkpoint) and puts this one back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
