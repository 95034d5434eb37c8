"""One process-wide lock between torch.fx tracing and forward passes: while fx traces a network it replaces
`torch.nn.Module.__call__` for the whole process, so a forward pass in another thread meanwhile is routed into the
tracer (and can leave the patch in place). Scoring, serving, the studio's "try it" and export take it; it is
re-entrant, so a forward pass may load another model inside it."""

from __future__ import annotations

import threading

NETWORK_LOCK = threading.RLock()
