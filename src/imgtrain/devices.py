"""Where and in what precision models run: device choice, bf16 / fp16 autocast."""

from __future__ import annotations

import contextlib
import functools
import time

import torch

from .errors import ParameterError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str) -> torch.device:
    """`auto` is the GPU when there is one, else the CPU; asking for a missing GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"device {name} was asked for, but no CUDA GPU is available.", hint="use --device cpu.")
    return torch.device(name)


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when bf16 matrix products run at least 1.5x faster than float32 here (AVX-512 BF16 / AMX).

    Measured, not guessed from CPU flags: without native support bf16 is emulated and
    runs ~100x slower than float32.
    """
    a = torch.randn(256, 256)
    timings = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = a.to(dtype)
        x @ x
        start = time.perf_counter()
        for _ in range(5):
            x @ x
        timings[dtype] = time.perf_counter() - start
    return timings[torch.bfloat16] * 1.5 < timings[torch.float32]


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision `auto` stands for on this device: bf16 on GPUs (fp16 where bf16 is missing) and
    on CPUs with fast bf16; float32 otherwise."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast_for(device: torch.device, precision: str):
    """The autocast context and (for fp16 on a GPU) the gradient scaler of a resolved precision."""
    if precision == "fp32":
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 and device.type == "cuda" else None
    return torch.autocast(device.type, dtype=dtype), scaler
