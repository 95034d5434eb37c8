"""Device and precision choice, including the GPU paths, testable on a machine without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from imgtrain.devices import Capability, autocast_for, determinism, gradient_scaler, measure_speedup, resolve_precision
from imgtrain.training import distributed


@pytest.fixture(autouse=True)
def quiet_cuda_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


AVX2_CPU = Capability("cpu", fast_bf16=False, repeatable_reduced=False)  # bf16 emulated, ~100x slower
BF16_CPU = Capability("cpu", fast_bf16=True, repeatable_reduced=False)  # AVX-512 BF16 / AMX
BF16_GPU = Capability("cuda", fast_bf16=True, repeatable_reduced=True)
FP16_GPU = Capability("cuda", fast_bf16=False, repeatable_reduced=True)  # e.g. a V100 or a T4


@pytest.mark.parametrize(
    "cap, repeatable, speedup, measured, expected",
    [
        (AVX2_CPU, True, None, [], "fp32"),
        (AVX2_CPU, False, None, [], "fp32"),  # emulated bf16 is never even measured
        (BF16_CPU, True, None, [], "fp32"),  # oneDNN bf16 is not bit-repeatable: the seed promise wins
        (BF16_CPU, False, 1.9, ["bf16"], "bf16"),  # resnet18 at 224 px on such a CPU
        (BF16_CPU, False, 0.91, ["bf16"], "fp32"),  # a model and size where bf16 measured slower: not picked
        (BF16_GPU, True, 3.0, [], "bf16"),  # under the seed promise, not a stopwatch's choice
        (BF16_GPU, True, 0.8, [], "bf16"),
        (BF16_GPU, False, 3.0, ["bf16"], "bf16"),
        (BF16_GPU, False, 0.8, ["bf16"], "fp32"),
        (FP16_GPU, True, 2.5, [], "fp16"),
        (FP16_GPU, False, 1.05, ["fp16"], "fp32"),
    ],
)
def test_auto_is_the_fastest_precision_that_keeps_the_promise(cap, repeatable, speedup, measured, expected):
    asked = []

    def measure(candidate):
        asked.append(candidate)
        return speedup

    device = torch.device(cap.kind)
    assert resolve_precision("auto", device, repeatable, measure, cap) == expected
    assert asked == measured
    for explicit in ("fp32", "bf16", "fp16"):
        assert resolve_precision(explicit, device, repeatable, measure, cap) == explicit


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":")[1].split()}


def test_this_cpus_capability_agrees_with_its_instruction_set():
    """Checked against /proc/cpuinfo, not against the function the code uses: without AVX-512 BF16 or AMX,
    bf16 is emulated (~100x slower), so it must never be measured fast; with them, it must be."""
    flags = _cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags to compare with")
    cap = Capability.of(torch.device("cpu"))
    assert cap.kind == "cpu" and not cap.repeatable_reduced
    assert cap.fast_bf16 == bool(flags & {"avx512_bf16", "amx_bf16"}), sorted(flags & {"avx512_bf16", "amx_bf16"})
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"  # the default promise, on any CPU


def test_measuring_a_step_leaves_the_network_and_the_random_state_alone():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    net(torch.zeros(1, 3, 8, 8))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    ratio = measure_speedup(net, (2, 3, 8, 8), torch.device("cpu"), "bf16")
    assert ratio > 0 and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items()) and net.training
    assert all(p.grad is None for p in net.parameters())
    assert measure_speedup(net.eval(), (2, 3, 8, 8), torch.device("cpu"), "bf16", training=False) > 0


def test_fp16_gets_one_gradient_scaler_and_bf16_does_not():
    assert autocast_for(torch.device("cuda"), "fp16").fast_dtype == torch.float16
    assert autocast_for(torch.device("cpu"), "bf16").fast_dtype == torch.bfloat16
    assert not isinstance(autocast_for(torch.device("cpu"), "fp32"), torch.autocast)
    assert gradient_scaler(torch.device("cpu"), "fp16") is not None
    assert gradient_scaler(torch.device("cuda"), "bf16") is None
    assert gradient_scaler(torch.device("cpu"), "fp32") is None


def test_cublas_is_told_to_be_deterministic_before_any_cuda_work():
    """cuBLAS reads CUBLAS_WORKSPACE_CONFIG once, at its first handle (measure_speedup's, before a run turns on
    deterministic algorithms): setting it then was too late. Importing imgtrain sets it; a user's value is kept."""
    code = "import os, imgtrain.devices; print(os.environ.get('CUBLAS_WORKSPACE_CONFIG'))"
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    for preset, expected in ((None, ":4096:8"), (":16:8", ":16:8")):
        run_env = env | ({"CUBLAS_WORKSPACE_CONFIG": preset} if preset else {})
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


def test_a_repeatable_gpu_run_uses_deterministic_kernels_and_puts_the_settings_back():
    with determinism(torch.device("cuda"), "bf16", repeatable=True):
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    with determinism(torch.device("cuda"), "bf16", repeatable=False):
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark


def test_bf16_on_a_cpu_asks_onednn_for_determinism_and_says_the_promise_is_weaker(caplog):
    with determinism(torch.device("cpu"), "bf16", repeatable=True):
        assert torch.backends.mkldnn.deterministic
    assert not torch.backends.mkldnn.deterministic
    assert "not guaranteed to be bit-repeatable" in caplog.text
    caplog.clear()
    with determinism(torch.device("cpu"), "fp32", repeatable=True):
        assert not torch.backends.mkldnn.deterministic
    assert caplog.text == ""


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


@pytest.mark.parametrize(
    "capability, expected", [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")]
)
def test_gpus_that_only_emulate_bf16_train_in_fp16(monkeypatch, capability, expected):
    """A V100 (7.0) or T4 (7.5): torch.cuda.is_bf16_supported() says yes (emulation counts), so `auto` tried slow
    bf16 and fell back to fp32, never trying the tensor cores' fp16."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_precision("auto", torch.device("cuda"), repeatable=True) == expected
