"""bench/gpu.py --dry-run: the GPU benchmark's own code, run on the CPU at a tiny size, so that it cannot rot between
the sessions that are lent a GPU. What a user sees: exit 0, every section in the JSON, the table with the anchors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import BENCH, load_bench

pytestmark = pytest.mark.trains  # it trains networks (in the bench's own processes)
gpu = load_bench("gpu")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """(exit code, stdout, stderr, the JSON, the .md table) of one `bench/gpu.py --dry-run`."""
    out = tmp_path_factory.mktemp("gpu-bench") / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    doc = json.loads(out.read_text()) if out.is_file() else {}
    table = out.with_suffix(".md").read_text() if out.with_suffix(".md").is_file() else ""
    return done.returncode, done.stdout, done.stderr, doc, table


def test_dry_run_exits_zero_and_describes_the_machine(dry_run):
    code, _, stderr, doc, _ = dry_run
    assert code == 0, stderr[-3000:]
    assert doc["format"] == "imgtrain.gpu-bench" and doc["dry_run"] is True
    env = doc["environment"]
    assert env["device"] == "cpu" and env["device_name"].startswith("CPU") and env["torch"]
    assert "cuda" in env and "cudnn" in env  # versions are recorded even where no GPU is
    assert doc["plan"]["device"] == "cpu" and doc["seconds"] > 0


def test_every_training_row_measured_images_per_second(dry_run):
    doc = dry_run[3]
    synthetic = doc["train_synthetic"]
    assert {(r["precision"], r["channels_last"]) for r in synthetic} == {
        (p, layout) for p in ("fp32", "bf16") for layout in (False, True)
    }
    real = doc["train_imgtrain"]
    assert [r["precision"] for r in real] == ["fp32", "bf16", "auto"]
    for row in synthetic + real:
        assert "error" not in row, row
        assert row["images_per_second"] > 0
        assert row["peak_memory_mib"] is None and row["tf32"] is None  # CUDA-only figures, guarded on the CPU
    assert all(r["epochs_timed"] == 1 and r["resolved_precision"] in ("fp32", "bf16") for r in real)
    assert real[0]["resolved_precision"] == "fp32" and real[1]["resolved_precision"] == "bf16"


def test_every_scoring_row_measured_images_per_second(dry_run):
    doc = dry_run[3]
    for key in ("score_synthetic", "score_imgtrain"):
        assert [r["precision"] for r in doc[key]] == ["auto", "fp32", "bf16"]
        for row in doc[key]:
            assert "error" not in row, row
            assert row["images_per_second"] > 0 and row["resolved_precision"] in ("fp32", "bf16")
    assert all(row["images"] == doc["plan"]["images"] for row in doc["score_imgtrain"])


def test_the_policy_choice_is_recorded(dry_run):
    policy = dry_run[3]["policy"]
    assert "error" not in policy, policy
    assert policy["capability"]["kind"] == "cpu"
    repeatable = [c for c in policy["choices"] if c["repeatable"]]
    assert repeatable and all(c["auto"] == "fp32" and c["candidate"] is None for c in repeatable)  # the CPU promise
    assert any(not c["repeatable"] for c in policy["choices"])


def test_the_same_seed_gave_identical_weights(dry_run):
    repeat = dry_run[3]["repeatability"]
    assert repeat["runs"] and all("error" not in run for run in repeat["runs"]), repeat
    assert repeat["identical"] is True
    assert all(len(set(run["sha256"])) == 1 for run in repeat["runs"])


def test_the_cli_pipeline_ran_through(dry_run):
    cli = dry_run[3]["cli_pipeline"]
    assert "error" not in cli, cli
    commands = [step["command"].split()[1] for step in cli["steps"]]
    assert commands == ["convert", "split", "resnet", "transform", "train", "score", "evaluate"]
    assert [step["exit_code"] for step in cli["steps"]] == [0] * 7 and cli["all_exit_zero"] is True
    assert 0 <= cli["accuracy"] <= 1 and cli["scored_images"] > 0 and cli["precision"] == "fp32"


def test_the_table_is_printed_and_written_with_the_anchors(dry_run):
    _, stdout, _, doc, table = dry_run
    assert table and table == stdout
    assert "| what | precision | channels-last | batch | images/s | peak GPU memory | note |" in table
    assert table.count("| train, tensors on the device (ceiling) |") == 4
    assert "bit-identical weights" in table and "exit codes 0, 0, 0, 0, 0, 0, 0" in table
    assert "Published figures for comparison" in table
    assert "2,470 img/s" in table and "938 img/s" in table  # NVIDIA's A100 ResNet-50 training
    assert "benchmark-infer-amp-nchw-pt291-cu128-4090.csv" in table  # timm's published benchmark
    assert all(anchor in table for anchor in doc["anchors"])


def test_the_gpu_plan_measures_every_precision_and_layout_within_its_budget():
    plan = gpu.make_plan(gpu.parse_args([]))
    assert plan == gpu.FULL and plan.device == "cuda" and (plan.model, plan.size, plan.batch) == ("resnet50", 224, 128)
    assert plan.precisions == ("fp32", "tf32", "bf16", "fp16") and plan.warmup > 0 and plan.steps >= 20
    assert {p for p, _, _ in plan.train_runs} == {"fp32", "bf16", "fp16", "auto"}
    assert {r for _, r, _ in plan.train_runs} == {True, False} and plan.epochs >= 2  # the first epoch is not timed
    assert plan.budget + 60 + 15 < 8 * 60  # rows start within the budget; the last ends within a minute
    quick = gpu.make_plan(gpu.parse_args(["--quick", "--batch", "64"]))
    assert quick.steps < plan.steps and quick.images < plan.images and quick.budget < plan.budget
    assert quick.batch == 64 and (("fp32", True, 64) in quick.train_runs) and quick.policy_batches == (64, 16)
    assert gpu.make_plan(gpu.parse_args(["--dry-run"])).device == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU this would run the whole benchmark")
def test_without_a_gpu_the_real_run_refuses_and_points_to_the_dry_run(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--out", str(tmp_path / "gpu.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "no CUDA GPU" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "gpu.json").exists()
