"""Ctrl-C and SIGTERM: during training finish the batch, write a checkpoint, say how to resume; elsewhere
unwind like Ctrl-C, so that half-built outputs are removed on the way out."""

from __future__ import annotations

import contextlib
import logging
import os
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


_ACTIVE: list[StopRequest] = []  # the requests of the stop_on_signals blocks this process is inside, outer first
BATCH_STOP = "stopping after this batch and writing a checkpoint"


@contextlib.contextmanager
def stop_on_signals(stopping: str = BATCH_STOP) -> Iterator[StopRequest]:
    """While inside, SIGINT/SIGTERM only ask to stop; a second Ctrl-C stops at once (KeyboardInterrupt).

    Blocks nest: a signal sets the request of every block it arrives inside (a sweep learns of the Ctrl-C its
    trial's training took). Signal handlers can only be set from the main thread; elsewhere the request is never set.
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
        for active in _ACTIVE:
            active.signum = active.signum or signum
        log.warning(
            "%s received: %s (press Ctrl-C again to stop at once, losing the current epoch's progress)",
            request.name,
            stopping,
        )

    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    _ACTIVE.append(request)
    try:
        yield request
    finally:
        _ACTIVE[:] = [active for active in _ACTIVE if active is not request]  # by identity: requests compare equal
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Terminated(BaseException):
    """SIGTERM outside training: unwinds the stack (cleaning up as it goes) like KeyboardInterrupt does."""


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated instead of killing the process where it stands.

    Training sets its own handler while it runs (finish the batch, checkpoint) and puts this one back. Processes
    forked meanwhile (a pool's workers) start without it (`_sigterm_default_in_child`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


_fork = threading.local()  # the signal mask of a thread that is forking, restored after the fork


def _block_sigterm_for_fork() -> None:
    _fork.mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _unblock_after_fork() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, _fork.mask)


def _sigterm_default_in_child() -> None:
    # A pool that is done terminates its workers with SIGTERM. Inheriting the handler above, each printed a
    # traceback of Terminated; one signalled while still starting lost the exception in a fork hook, waited for a
    # task that never came, and the pool waited for it forever. So a forked process ends on SIGTERM as without
    # us: SIGTERM is held back across the fork, the child's handler reset, and then a pending SIGTERM ends it.
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _unblock_after_fork()


os.register_at_fork(
    before=_block_sigterm_for_fork, after_in_parent=_unblock_after_fork, after_in_child=_sigterm_default_in_child
)
