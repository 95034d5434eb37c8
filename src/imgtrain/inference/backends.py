"""Which runtime computes a model's scores: PyTorch, or the network compiled by ONNX Runtime or OpenVINO for this
CPU; `auto` measures each installed one on the first batch and keeps the fastest, as precision `auto` does."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import torch
from torch import nn

from ..deploy.formats import BACKENDS, RUNTIME_PACKAGES
from ..deploy.runtimes import Runtime, check_backend, installed, network_runtime
from ..devices import MIN_SPEEDUP
from ..errors import ParameterError

log = logging.getLogger(__name__)


def check_backend_for(backend: str, device: torch.device, precision: str) -> str:
    """`backend` if this device and precision can use it: the runtimes run fp32 on the CPU."""
    check_backend(backend)
    if backend in RUNTIME_PACKAGES and device.type != "cpu":
        raise ParameterError(
            f"backend {backend} runs on the CPU; the device is {device}.", hint="give --device cpu, or --backend torch."
        )
    if backend in RUNTIME_PACKAGES and precision not in ("auto", "fp32"):
        raise ParameterError(
            f"backend {backend} computes in fp32; precision {precision} is torch's.",
            hint="leave --precision out, or give --backend torch.",
        )
    return backend


def open_backend(
    backend: str, network: Callable[[], nn.Module], batch: torch.Tensor, torch_forward: Callable
) -> Runtime | None:
    """The runtime `backend` stands for on a batch like `batch` (None: torch itself); `auto` times `torch_forward`
    and each installed runtime on `batch` and takes the fastest, a runtime only if at least MIN_SPEEDUP faster.
    `network` makes the plain network to compile (not the scorer's fx-folded one, which some networks' operators
    do not export from)."""
    if backend == "torch":
        return None
    if backend != "auto":
        return network_runtime(network(), tuple(batch.shape), backend)
    if batch.device.type != "cpu":
        return None
    best, best_seconds = None, _seconds(lambda: torch_forward(batch)) / MIN_SPEEDUP
    timings = {"torch": best_seconds * MIN_SPEEDUP}
    images = batch.numpy()
    for name in (b for b in BACKENDS if b in RUNTIME_PACKAGES and installed(b)):
        try:
            runtime = network_runtime(network(), tuple(batch.shape), name)
        except Exception as exc:  # an operator the exporter or the runtime lacks: auto just does not pick it
            log.info("backend auto: %s cannot compile this network (%s)", name, str(exc).splitlines()[0][:200])
            continue
        timings[name] = seconds = _seconds(functools.partial(runtime.run, images))
        if seconds < best_seconds:
            best, best_seconds = runtime, seconds
    log.info(
        "backend auto: one batch of %d took %s -> %s",
        len(batch),
        ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()),
        best.name if best else "torch",
    )
    return best


def _seconds(step: Callable[[], object], rounds: int = 2) -> float:
    """The best time of `rounds` calls of `step` after a warm-up call."""
    step()
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        with torch.inference_mode():
            step()
        timings.append(time.perf_counter() - start)
    return min(timings)
