"""Where and in what precision models run: device choice, the precision policy, autocast, determinism.

The policy (docs/performance.md, "Precision"): `auto` is the fastest precision that keeps the
run's promise on this device. With `repeatable` (the default) that promise is "the same seed gives
bit-identical weights", so a CPU trains in fp32 (oneDNN's bf16 kernels were measured not
bit-repeatable) and a GPU trains in bf16 / fp16 under PyTorch's deterministic algorithms. Without
it, bf16 is used wherever the real model step at the real input size measured faster.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .config import PRECISIONS
from .errors import ParameterError

log = logging.getLogger(__name__)

# cuBLAS's condition for deterministic results, read once per process when its first handle is made: it must be in
# the environment before any CUDA matrix product (measure_speedup's included), not only when a run turns on
# deterministic algorithms. A user's own value is kept.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

RESOLVED_PRECISIONS = PRECISIONS[1:]

#: A reduced precision is picked only when the measured model step is at least this much faster than fp32.
MIN_SPEEDUP = 1.1


def resolve_device(name: str) -> torch.device:
    """`auto` is the GPU when there is one, else the CPU; asking for a missing GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ParameterError(
            f"device must be auto, cpu, cuda or cuda:N, got {str(name)[:60]!r}.",
            hint="imgtrain runs on CPUs and CUDA GPUs (mps, xpu and the others are not supported).",
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device {name} was asked for, but no CUDA GPU is available.", hint="use --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ParameterError(
            f"device {name} was asked for, but this machine has {torch.cuda.device_count()} CUDA GPUs.",
            hint="use cuda:0 to cuda:N-1, or --device auto.",
        )
    return device


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when bf16 matrix products run at least 1.5x faster than float32 here (AVX-512 BF16 / AMX).

    Measured, not guessed from CPU flags: without native support bf16 is emulated and
    runs ~100x slower than float32.
    """
    a = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    timings = {torch.float32: math.inf, torch.bfloat16: math.inf}
    for _ in range(5):  # best of five, alternating: a busy machine slows some rounds, not the verdict
        for dtype in timings:
            x = a.to(dtype)
            x @ x
            start = time.perf_counter()
            for _ in range(5):
                x @ x
            timings[dtype] = min(timings[dtype], time.perf_counter() - start)
    return timings[torch.bfloat16] * 1.5 < timings[torch.float32]


@dataclass(frozen=True)
class Capability:
    """What the precision policy needs to know of a device; tests inject other kinds of device."""

    kind: str  # "cpu" or "cuda"
    fast_bf16: bool  # CPU: native bf16 (measured); GPU: bf16 supported
    repeatable_reduced: bool  # bf16/fp16 give bit-identical results under the deterministic settings

    @staticmethod
    def of(device: torch.device) -> Capability:
        if device.type == "cuda":
            # PyTorch's deterministic algorithms cover every dtype on CUDA (or raise/warn for the few ops without)
            # native bf16 from compute capability 8 (Ampere); torch's is_bf16_supported() also says yes where it is
            # emulated (V100, T4), and of the current device rather than this one
            return Capability("cuda", torch.cuda.get_device_capability(device)[0] >= 8, repeatable_reduced=True)
        # oneDNN's native bf16 training kernels gave different weights run to run (measured on AVX-512 BF16)
        return Capability(device.type, cpu_has_fast_bf16(), repeatable_reduced=False)


def candidate_precision(cap: Capability, repeatable: bool) -> str | None:
    """The reduced precision `auto` may try on this device under this promise, or None (fp32 it is)."""
    if cap.kind == "cuda":
        reduced = "bf16" if cap.fast_bf16 else "fp16"
    elif cap.kind == "cpu" and cap.fast_bf16:
        reduced = "bf16"
    else:
        return None  # emulated bf16 is ~100x slower than fp32: not worth measuring
    if repeatable and not cap.repeatable_reduced:
        return None
    return reduced


def resolve_precision(
    precision: str,
    device: torch.device,
    repeatable: bool = True,
    speedup: Callable[[str], float] | None = None,
    cap: Capability | None = None,
) -> str:
    """The precision `auto` stands for: the policy's candidate when `speedup(candidate)` (the real model
    step, reduced vs fp32) is at least MIN_SPEEDUP, else fp32. Without `speedup`, or under `repeatable`, the
    candidate is taken: a stopwatch near the threshold must not decide which weights a seed gives."""
    if precision != "auto":
        return precision
    candidate = candidate_precision(cap or Capability.of(device), repeatable)
    if candidate is None:
        return "fp32"
    if speedup is None or repeatable:
        return candidate
    ratio = speedup(candidate)
    chosen = candidate if ratio >= MIN_SPEEDUP else "fp32"
    log.info("precision auto: one %s step measured %.2fx the speed of fp32 -> %s", candidate, ratio, chosen)
    return chosen


def autocast_for(device: torch.device, precision: str):
    """The autocast context of a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def gradient_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling (one scaler for the whole run, kept in its checkpoints); bf16 and fp32 do not."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def measure_speedup(
    net: nn.Module, shape: tuple[int, ...], device: torch.device, precision: str, training: bool = True, rounds: int = 2
) -> float:
    """How many times faster one step of `net` runs in `precision` than in fp32 on a batch of `shape`.

    Forward + backward when `training`, forward alone otherwise; on a copy of `net`, with the
    random number generators left as they were. Best of `rounds` after one warm-up step each.
    """
    probe = copy.deepcopy(net).to(device).train(training)
    images = torch.zeros(shape, device=device)
    labels = torch.zeros(shape[0], dtype=torch.long, device=device)

    def step(prec: str) -> float:
        start = time.perf_counter()
        with torch.set_grad_enabled(training), autocast_for(device, prec):
            loss = nn.functional.cross_entropy(probe(images).float(), labels)
        if training:
            loss.backward()
            probe.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timings: dict[str, list[float]] = {"fp32": [], precision: []}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for prec in timings:
            step(prec)  # warm-up: kernels chosen, caches filled
        for _ in range(rounds):  # alternated, so a slow minute does not decide it
            for prec, seen in timings.items():
                seen.append(step(prec))
    return min(timings["fp32"]) / min(timings[precision])


@contextlib.contextmanager
def determinism(device: torch.device, precision: str, repeatable: bool) -> Iterator[None]:
    """PyTorch's deterministic settings while a repeatable run trains (put back afterwards).

    On a GPU: deterministic cuDNN / cuBLAS algorithms (`benchmark` autotuning off). On a CPU,
    fp32 is bit-repeatable as it is; for bf16 oneDNN's deterministic mode is asked for, which
    PyTorch may not pass to every CPU kernel, so a warning says that the promise is weaker.
    """
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.mkldnn.deterministic,
    )
    if repeatable and device.type == "cuda":
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if repeatable and device.type != "cuda" and precision != "fp32":
        # torch declares the module attribute as `deterministic: ContextProp` (its descriptor), not the bool it holds
        torch.backends.mkldnn.deterministic = True  # type: ignore[assignment]
        log.warning(
            "%s on the CPU is not guaranteed to be bit-repeatable: the same seed may give slightly "
            "different weights (a resume still continues from the exact saved state); fp32 gives "
            "bit-identical weights",
            precision,
        )
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
        torch.backends.mkldnn.deterministic = saved[4]
