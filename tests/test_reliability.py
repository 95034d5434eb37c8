"""Faults: kills at every stage of training, Ctrl-C / SIGTERM, full disks. Nothing done is lost.

Each run here is a real `imgtrain` process: killed by fault injection (IMGTRAIN_CRASH_AT), signalled,
or limited in file size (RLIMIT_FSIZE, the kernel's own "File too large" on write).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import imgtrain
from imgtrain import TrainConfig
from imgtrain.inference.scoring import score_to_file

EPOCHS = 3  # 24 training images in batches of 8: 3 batches per epoch


def _train_argv(data, out: Path, *extra: str) -> list[str]:
    model, train, valid, spec_file = data
    return [
        sys.executable,
        "-m",
        "imgtrain",
        "train",
        "--model",
        str(model),
        "--train",
        str(train),
        "--valid",
        str(valid),
        "--out",
        str(out),
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "8",
        "--transform",
        str(spec_file),
        *extra,
    ]


def _run(
    argv: list[str], env: dict[str, str] | None = None, max_file_bytes: int | None = None
) -> subprocess.CompletedProcess:
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a too-large write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run(
        argv,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit if max_file_bytes is not None else None,
    )


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "model.safetensors")


def _identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def data(small_training_data, tmp_path_factory):
    model, train, valid, spec = small_training_data
    spec_file = tmp_path_factory.mktemp("spec") / "spec.json"
    imgtrain.init_transform(spec_file, spec)
    return model, train, valid, spec_file


def _resume(small_training_data, out: Path) -> None:
    """Resume in this process (the CLI's --resume is exercised by the signal tests)."""
    model, train, valid, spec = small_training_data
    imgtrain.train(
        model, train, valid, out, TrainConfig(epochs=EPOCHS, batch_size=8, resume=True, progress=False), spec
    )


@pytest.fixture(scope="module")
def uninterrupted(small_training_data, tmp_path_factory):
    """The weights of a run nobody disturbed."""
    model, train, valid, spec = small_training_data
    out = tmp_path_factory.mktemp("whole") / "model"
    imgtrain.train(model, train, valid, out, TrainConfig(epochs=EPOCHS, batch_size=8, progress=False), spec)
    return _weights(out)


#: Variants that `make test` leaves to `make test-slow` (CI runs both): each is a real process importing torch.
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "point",
    [
        "batch:2.2",
        pytest.param("checkpoint-writing:2", marks=SLOW),
        "model-writing",
        pytest.param("output-swapping", marks=SLOW),
    ],
)  # checkpoint-saved: test_training.py
def test_a_kill_at_any_stage_resumes_to_identical_weights(data, small_training_data, uninterrupted, tmp_path, point):
    out = tmp_path / "cut"
    killed = _run(_train_argv(data, out), {"IMGTRAIN_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    _resume(small_training_data, out)
    assert _identical(_weights(out), uninterrupted)
    # nothing left behind: no half-written checkpoint, no folder being built or moved aside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut"]
    assert not (out / "checkpoint").exists()


@pytest.mark.parametrize(
    "signame, point, where",
    [
        ("INT", "batch:2.1", "in epoch 2 after batch 1 of 3"),
        pytest.param("TERM", "batch:1.3", "in epoch 1 after batch 3 of 3", marks=SLOW),
    ],
)
def test_a_signal_mid_epoch_writes_a_checkpoint_that_resumes_from_that_batch(
    data, uninterrupted, tmp_path, signame, point, where
):
    out = tmp_path / "cut"
    stopped = _run(
        _train_argv(data, out, "--workers", "2"), {"IMGTRAIN_CRASH_AT": point, "IMGTRAIN_CRASH_SIGNAL": signame}
    )
    signum = getattr(signal, "SIG" + signame)
    assert stopped.returncode == 128 + signum, stopped.stderr
    assert f"TrainingInterrupted: Training stopped by SIG{signame} {where}" in stopped.stderr
    assert "--resume" in stopped.stderr and "Traceback" not in stopped.stderr
    assert (out / "checkpoint" / "last.safetensors").is_file() and not (out / "model.safetensors").exists()
    resumed = _run(_train_argv(data, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} after epoch {int(point[6]) - 1} and batch {point[-1]} of epoch {point[6]}" in resumed.stderr
    assert _identical(_weights(out), uninterrupted)


def test_ctrl_c_at_a_random_moment_loses_nothing(data, small_training_data, uninterrupted, tmp_path):
    out = tmp_path / "cut"
    process = subprocess.Popen(_train_argv(data, out), stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # the handler is in place once training starts
        if "training resnet18" in line:
            break
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 128 + signal.SIGINT, rest
    assert "TrainingInterrupted" in rest and "rerun the same command with --resume" in rest
    _resume(small_training_data, out)
    assert _identical(_weights(out), uninterrupted)


def test_interrupting_the_library_call_raises_training_interrupted(small_training_data, tmp_path, monkeypatch):
    model, train, valid, spec = small_training_data
    monkeypatch.setenv("IMGTRAIN_CRASH_AT", "batch:1.2")
    monkeypatch.setenv("IMGTRAIN_CRASH_SIGNAL", "TERM")
    with pytest.raises(imgtrain.TrainingInterrupted, match="SIGTERM in epoch 1 after batch 2") as caught:
        imgtrain.train(model, train, valid, tmp_path / "out", TrainConfig(epochs=2, batch_size=8, progress=False), spec)
    assert caught.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back


# --- full disk: simulated with the kernel's file-size limit ---------------------------------------


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(data, small_training_data, uninterrupted, tmp_path):
    out = tmp_path / "cut"
    assert _run(_train_argv(data, out), {"IMGTRAIN_CRASH_AT": "checkpoint-saved:1"}).returncode == -signal.SIGKILL
    before = (out / "checkpoint" / "last.safetensors").read_bytes()
    full = _run(_train_argv(data, out, "--resume"), max_file_bytes=1_000_000)
    assert full.returncode == 1
    assert "OutputWriteError: Writing " in full.stderr and "last.safetensors failed: File too large." in full.stderr
    assert "The previous checkpoint is kept." in full.stderr and "free some disk space" in full.stderr
    assert (out / "checkpoint" / "last.safetensors").read_bytes() == before
    assert os.listdir(out / "checkpoint") == ["last.safetensors"]
    _resume(small_training_data, out)
    assert _identical(_weights(out), uninterrupted)


@SLOW
def test_a_final_model_that_cannot_be_written_keeps_the_checkpoint(data, small_training_data, uninterrupted, tmp_path):
    out = tmp_path / "cut"
    assert _run(_train_argv(data, out), {"IMGTRAIN_CRASH_AT": f"checkpoint-saved:{EPOCHS}"}).returncode == -9
    full = _run(_train_argv(data, out, "--resume"), max_file_bytes=1_000_000)
    assert full.returncode == 1 and "OutputWriteError" in full.stderr and "File too large" in full.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut"]
    _resume(small_training_data, out)
    assert _identical(_weights(out), uninterrupted)


def test_a_failed_overwrite_keeps_the_old_image_directory(tmp_path):
    from conftest import make_class_folder, tree

    src = make_class_folder(tmp_path / "src", {"a": 3, "b": 3}, size=(40, 40))
    out = tmp_path / "images"
    imgtrain.convert(src, out, workers=1, progress=False)
    before = {p: (out / p).read_bytes() for p in tree(out) if (out / p).is_file()}
    full = _run(
        [sys.executable, "-m", "imgtrain", "convert", str(src), str(out), "--overwrite", "--workers", "1"],
        max_file_bytes=2_000,
    )
    assert full.returncode == 1 and "OutputWriteError: Writing" in full.stderr, full.stderr
    assert f"{out} is as it was before." in full.stderr
    assert {p: (out / p).read_bytes() for p in tree(out) if (out / p).is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "src"]


def test_a_failed_overwrite_keeps_the_old_scores(trained_model, tmp_path):
    model, valid = trained_model
    scores = tmp_path / "scores.csv"
    score_to_file(model, valid, scores, progress=False)
    before = scores.read_bytes()
    full = _run(
        [
            sys.executable,
            "-m",
            "imgtrain",
            "score",
            "--model",
            str(model),
            "--data",
            str(valid),
            "--out",
            str(scores),
            "--overwrite",
        ],
        max_file_bytes=300,
    )
    assert full.returncode == 1 and "OutputWriteError" in full.stderr and "File too large" in full.stderr
    assert scores.read_bytes() == before
    assert os.listdir(tmp_path) == ["scores.csv"]


def test_an_output_that_cannot_be_created_fails_before_training(run_cli, data, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    model, train, valid, spec_file = data
    code, _, err = run_cli(
        "train",
        "--model",
        model,
        "--train",
        train,
        "--valid",
        valid,
        "--out",
        tmp_path / "file" / "model",
        "--transform",
        spec_file,
    )
    assert code == 1
    assert f"OutputWriteError: Cannot write {tmp_path / 'file' / 'model'}: {tmp_path / 'file'} is a file" in err
    assert "epoch" not in err
