"""Device and precision choice, including the GPU paths, testable on a machine without a GPU."""

from __future__ import annotations

import warnings

import pytest
import torch

from imgtrain import distributed
from imgtrain.devices import autocast_for, cpu_has_fast_bf16, resolve_precision


@pytest.fixture(autouse=True)
def quiet_cuda_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_gpu_auto_precision_is_bf16_or_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"


def test_cpu_auto_precision_follows_the_measurement(monkeypatch):
    expected = "bf16" if cpu_has_fast_bf16() else "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"


def test_fp16_on_a_gpu_gets_a_gradient_scaler_and_bf16_does_not():
    autocast, scaler = autocast_for(torch.device("cuda"), "fp16")
    assert autocast.fast_dtype == torch.float16 and autocast.device == "cuda" and scaler is not None
    autocast, scaler = autocast_for(torch.device("cuda"), "bf16")
    assert autocast.fast_dtype == torch.bfloat16 and scaler is None
    autocast, scaler = autocast_for(torch.device("cpu"), "fp32")
    assert scaler is None and not isinstance(autocast, torch.autocast)


def test_each_gpu_worker_takes_the_gpu_of_its_local_rank(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    ctx = distributed.Context(rank=5, world_size=8, local_rank=1)
    assert distributed.worker_device(torch.device("cuda"), ctx) == torch.device("cuda", 1) and chosen == [1]
    assert distributed.worker_device(torch.device("cpu"), ctx) == torch.device("cpu")


def test_job_position_comes_from_torchruns_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = distributed.context_from_env()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.enabled, ctx.is_main) == (3, 4, 1, True, False)
