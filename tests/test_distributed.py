"""Distributed training: 2 CPU workers on localhost (gloo), a dying worker, resume, the launcher's options."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import imgtrain


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_train(data, out, *extra, env=None, timeout=240, torchrun=False):
    model, train, valid, spec = data
    spec_file = out.parent / "spec.json"
    if not spec_file.exists():
        imgtrain.init_transform(spec_file, spec)
    port = str(free_port())
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", port] if torchrun else []
    argv = [
        sys.executable,
        *launcher,
        "-m",
        "imgtrain",
        "train",
        "--model",
        model,
        "--train",
        train,
        "--valid",
        valid,
        "--out",
        out,
        "--epochs",
        "2",
        "--transform",
        spec_file,
        *([] if torchrun else ["--master-port", port]),
        *extra,
    ]
    started = time.perf_counter()
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=dict(os.environ, **(env or {}))
    )
    return result, time.perf_counter() - started


def test_two_cpu_workers_under_torchrun_train_a_valid_model(small_training_data, tmp_path):
    result, _ = run_train(small_training_data, tmp_path / "dist", "--batch-size", "4", torchrun=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "x 2 workers" in result.stderr and result.stdout.count("wrote trained model directory") == 1
    model = imgtrain.open_model_directory(tmp_path / "dist")
    assert model.meta["training"]["world_size"] == 2
    assert model.meta["history"][0]["lr"] == pytest.approx(0.002)  # learning rate x workers
    single = imgtrain.train(
        *small_training_data[:3],
        tmp_path / "single",
        imgtrain.TrainConfig(epochs=2, batch_size=8, learning_rate=0.002, progress=False),
        small_training_data[3],
    )
    # Both runs take steps on 8 images (2 x 4, or 8): the losses, not the accuracy on 9 images, are compared.
    # Measured train loss, 2 workers / one process: 1.16 -> 0.86 / 1.11 -> 0.73 (AVX-512), 1.22 -> 0.87 / 1.11 ->
    # 0.67 (AVX2 emulated), 1.07 -> 0.58 / 1.11 -> 0.76 (SSE4.1 emulated): epoch 2 at 0.74, 0.71, 0.55 of epoch 1
    # (bound 0.9; no learning stays near 1), the ends 18%, 29%, 24% apart (bound 60%, 2x the worst).
    dist = model.meta["history"]
    assert dist[1]["train_loss"] < 0.9 * dist[0]["train_loss"]
    assert dist[-1]["train_loss"] == pytest.approx(single[-1]["train_loss"], rel=0.6)


def test_two_cpu_workers_train_a_multilabel_model_with_its_thresholds(multilabel_data, tmp_path):
    result, _ = run_train(
        multilabel_data, tmp_path / "dist", "--batch-size", "4", "--learning-rate", "0.05", torchrun=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "x 2 workers" in result.stderr and result.stdout.count("wrote trained model directory") == 1
    model = imgtrain.open_model_directory(tmp_path / "dist")
    assert model.meta["training"]["world_size"] == 2 and model.multilabel and len(model.thresholds) == 3
    history = model.meta["history"]
    # Each worker's binary cross-entropy, averaged, stays finite and within 4x chance (4 ln 2 = 2.77): a diverged run
    # is far past it. It need not fall within 2 epochs at this learning rate (x2 for two workers): measured 1.22 ->
    # 1.49 on AVX2 in fp32 (and 1.22, 1.99, 1.23, 1.09, 0.42 over 5 epochs), falling where bf16 autocast runs.
    losses = [r["train_loss"] for r in history]
    assert all(math.isfinite(v) and v < 4 * math.log(2) for v in losses), losses
    assert all(0 <= r["val_top1"] <= 1 for r in history)
    scores = imgtrain.score(tmp_path / "dist", multilabel_data[2], progress=False)
    assert all(isinstance(r["Scored Labels"], list) for r in scores)


# the modern recipe is AdamW alone (issue 29); mixup and the moving average are named so both are checked here
MODERN_WITH_MIXUP_AND_AVERAGE = ("--batch-size", "4", "--recipe", "modern", "--mixup", "0.2", "--ema", "0.99")


@pytest.mark.slow  # two torchrun jobs: over a minute on a 2-core machine
def test_two_workers_train_with_the_modern_recipe_the_same_twice(small_training_data, tmp_path):
    """Each worker mixes its own batches (seeded by rank) and keeps the same moving average of the same weights."""
    for name in ("a", "b"):
        result, _ = run_train(small_training_data, tmp_path / name, *MODERN_WITH_MIXUP_AND_AVERAGE, torchrun=True)
        assert result.returncode == 0, result.stderr[-2000:]
    meta = imgtrain.open_model_directory(tmp_path / "a").meta["training"]
    assert meta["world_size"] == 2 and meta["optimizer"] == "adamw" and meta["ema"] > 0 and meta["mixup"] > 0
    a, b = (load_file(tmp_path / name / "model.safetensors") for name in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # issue 25: over a minute on a 2-core machine; make test-slow runs it
def test_a_dying_worker_ends_the_job_and_resume_finishes_it(small_training_data, tmp_path):
    crash = {"IMGTRAIN_CRASH_AT": "checkpoint-saved:1", "IMGTRAIN_CRASH_RANK": "1"}
    result, seconds = run_train(
        small_training_data, tmp_path / "cut", "--nproc-per-node", "2", "--batch-size", "4", env=crash
    )
    assert result.returncode == 1
    assert "error: DistributedTrainingError: Distributed training failed: worker rank 1" in result.stderr
    # measured 12 s, 33 s and 49 s (loaded machine) on AVX-512, 17 s (AVX2 emulated); bound 4x the worst. A worker
    # left waiting would hang until gloo's 300 s timeout, past run_train's 240 s.
    assert seconds < 200
    assert (tmp_path / "cut" / "checkpoint" / "last.safetensors").is_file()
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed, _ = run_train(
        small_training_data, tmp_path / "cut", "--nproc-per-node", "2", "--batch-size", "4", "--resume"
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole, _ = run_train(small_training_data, tmp_path / "whole", "--nproc-per-node", "2", "--batch-size", "4")
    assert whole.returncode == 0
    a, b = load_file(tmp_path / "cut" / "model.safetensors"), load_file(tmp_path / "whole" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # two worker processes started to be refused: CI's make test-slow
def test_batch_larger_than_a_workers_share_is_refused(small_training_data, tmp_path):
    result, _ = run_train(small_training_data, tmp_path / "out", "--nproc-per-node", "2", "--batch-size", "16")
    assert result.returncode == 1 and "workers' shares, 12 each" in result.stderr
    assert not (tmp_path / "out").exists()


def test_node_rank_outside_the_job_is_a_parameter_error(run_cli, small_training_data, tmp_path):
    model, train, valid, _ = small_training_data
    code, _, err = run_cli(
        "train",
        "--model",
        model,
        "--train",
        train,
        "--valid",
        valid,
        "--out",
        tmp_path / "o",
        "--nnodes",
        "2",
        "--node-rank",
        "2",
    )
    assert code == 1 and "ParameterError" in err and "--node-rank" in err
