"""Module calls against torch.fx tracing: while fx traces a network (BatchNorm folding) it replaces
`torch.nn.Module.__call__` for the whole process, so any module called in another thread meanwhile (a network, or a
torchvision transform) is routed into the tracer, fails, and can leave the patch in place. Module calls of many
threads run together (`module_calls`); a trace waits for them and runs alone (`tracing`). Both nest in one thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_changed = threading.Condition()
_calls = 0  # module_calls held now, by every thread
_tracer: int | None = None  # the thread tracing now
_held = threading.local()  # this thread's module_calls depth


@contextlib.contextmanager
def module_calls() -> Iterator[None]:
    """Call modules (forward passes, transforms, an export) in this block; waits while another thread traces."""
    global _calls
    me = threading.get_ident()
    with _changed:
        _changed.wait_for(lambda: _tracer in (None, me))
        _calls += 1
        _held.depth = getattr(_held, "depth", 0) + 1
    try:
        yield
    finally:
        with _changed:
            _calls -= 1
            _held.depth -= 1
            _changed.notify_all()


@contextlib.contextmanager
def tracing() -> Iterator[None]:
    """Trace with torch.fx in this block, once no other thread calls modules; they wait until it ends."""
    global _tracer
    me = threading.get_ident()
    with _changed:
        nested = _tracer == me
        _changed.wait_for(lambda: _tracer in (None, me) and _calls == getattr(_held, "depth", 0))
        _tracer = me
    try:
        yield
    finally:
        if not nested:
            with _changed:
                _tracer = None
                _changed.notify_all()
