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
        log.warning(
            "%s received: stopping after this batch and writing a checkpoint (press Ctrl-C again to stop "
            "at once, losing the current epoch's progress)",
            request.name,
        )

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
