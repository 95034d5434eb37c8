"""imgtrain sweep (issue 30): trials on Optuna into OUT/trials/N, the best copied to OUT/best, a table and plots;
failed trials recorded, the budget kept, and a sweep killed with SIGKILL or stopped with Ctrl-C resumed without
repeating a finished trial. PostgreSQL studies shared by two workers: tests/test_sweep_storage.py."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

import imgtrain
from conftest import sweep_inputs_in

SMALL_SPACE = {"learning_rate": {"low": 0.001, "high": 0.1, "log": True}, "epochs": {"low": 2, "high": 3}}


@pytest.fixture
def sweep_inputs(small_training_data, tmp_path):
    return sweep_inputs_in(tmp_path, small_training_data, SMALL_SPACE)


def sweep_args(inputs, out, *extra):
    model, train, valid, spec, space = inputs
    return ["sweep", "--model", model, "--train", train, "--valid", valid, "--out", out, "--transform", spec,
            "--space", space, "--batch-size", "8", "--no-progress", *extra]  # fmt: skip


def run_sweep(inputs, out, *extra, env=None):
    """`imgtrain sweep` in a process of its own (so it can be killed)."""
    argv = [sys.executable, "-m", "imgtrain", *sweep_args(inputs, out, *extra)]
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=300, env=dict(os.environ, **(env or {}))
    )


def table(out):
    with open(out / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_sweep_writes_its_trials_their_table_plots_and_the_best_model(sweep_inputs, tmp_path, run_cli):
    out = tmp_path / "sweep"
    code, stdout, stderr = run_cli(*sweep_args(sweep_inputs, out, "--trials", "4"))
    assert code == 0, stderr
    rows = table(out)
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"]
    assert {r["state"] for r in rows} <= {"complete", "pruned"} and rows[0]["state"] == "complete"
    complete = [r for r in rows if r["state"] == "complete"]
    best = min(complete, key=lambda r: float(r["val_loss"]))
    assert f"best: trial {best['trial']}," in stdout
    assert json.loads((out / "best.json").read_text())["trial"] == int(best["trial"])
    for row in rows:  # every trial is a model directory, its parameters drawn from the space
        assert imgtrain.open_model_directory(out / row["folder"])
        assert 0.001 <= float(row["learning_rate"]) <= 0.1 and row["epochs"] in ("2", "3")
        trained = imgtrain.open_model_directory(out / row["folder"]).meta["training"]
        assert trained["learning_rate"] == pytest.approx(float(row["learning_rate"]))
    assert imgtrain.open_model_directory(out / "best").meta == imgtrain.open_model_directory(out / best["folder"]).meta
    scores = imgtrain.score(out / "best", sweep_inputs[2], progress=False)
    assert len(scores) == 9
    for plot in ("history.png", "curves.png", "importance.png"):
        assert Image.open(out / plot).size == (800, 500)
    data = json.loads((out / "trials.json").read_text())
    assert all(row["curve"] for row in data["trials"])  # each trial's validation loss per epoch


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(sweep_inputs, tmp_path, run_cli):
    """Every trial diverges at its first step (and two --model make architecture a dimension of the space)."""
    (tmp_path / "space.yaml").write_text("learning_rate: 1.0e+30\nepochs: 2\n")
    model, train, valid, spec, _ = sweep_inputs
    resnet = imgtrain.Architecture("resnet", "resnet18")
    other = imgtrain.create_model_directory(tmp_path / "other", resnet, pretrained=False)
    out = tmp_path / "sweep"
    inputs = (model, train, valid, spec, tmp_path / "space.yaml")
    code, stdout, _ = run_cli(*sweep_args(inputs, out, "--trials", "3", "--model", other.path))
    assert code == 1 and "no trial completed" in stdout
    rows = table(out)
    assert [r["state"] for r in rows] == ["fail", "fail", "fail"]
    assert all("TrainingDivergedError" in r["failure"] for r in rows)
    assert {r["model"] for r in rows} <= {str(model), str(other.path)}


def test_a_trial_that_ran_all_its_epochs_is_complete_whatever_the_pruner_says(sweep_inputs, tmp_path, run_cli):
    """One epoch each: the pruner sees each trial only at its last epoch (it once marked the worse half pruned)."""
    (tmp_path / "space.json").write_text(json.dumps({"learning_rate": {"low": 0.001, "high": 1.0, "log": True}}))
    model, train, valid, spec, _ = sweep_inputs
    inputs = (model, train, valid, spec, tmp_path / "space.json")
    code, _, stderr = run_cli(*sweep_args(inputs, tmp_path / "sweep", "--trials", "5", "--epochs", "1"))
    assert code == 0, stderr
    assert [r["state"] for r in table(tmp_path / "sweep")] == ["complete"] * 5


@pytest.mark.parametrize(
    "space, message",
    [
        ({"learnin_rate": [0.1]}, "'learnin_rate' is not a parameter a sweep can vary (did you mean learning_rate?)"),
        ({"epochs": {"low": 0, "high": 3}}, "epochs: low and high must both be an integer >= 1, got 0 and 3"),
        ({"learning_rate": {"low": 0.1, "high": 0.01}}, "learning_rate: low must be below high, got 0.1 and 0.01"),
        ({"mixup": {"low": 0, "high": 0.4, "log": True}}, "mixup: a log scale needs low above 0, got 0"),
        ({"optimizer": ["sgd", "adam"]}, "optimizer must be one of sgd, adamw, got 'adam'"),
        ({"batch_size": []}, "batch_size: the list of choices is empty"),
        ({"optimizer": {"low": 1, "high": 2}}, "optimizer takes choices (a list), not a range"),
        ({"seed": [1, 2]}, "'seed' is not a parameter a sweep can vary"),
    ],
)
def test_a_wrong_search_space_is_refused_before_any_trial(space, message, tmp_path, run_cli):
    (tmp_path / "space.json").write_text(json.dumps(space))
    inputs = ("m", "t", "v", "s", tmp_path / "space.json")
    code, _, stderr = run_cli(*sweep_args(inputs, tmp_path / "out", "--trials", "1"))
    assert code == 1 and message in stderr and "ParameterError" in stderr
    assert not (tmp_path / "out").exists()


def test_a_space_file_that_is_not_a_space_is_refused_with_what_to_write(tmp_path, run_cli):
    cases = {"list.yaml": "- 1\n- 2\n", "broken.json": "{", "huge.yaml": "#" * 2_000_000, "binary.yaml": "\udcff"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text, errors="surrogateescape")
        code, _, stderr = run_cli(*sweep_args(("m", "t", "v", "s", tmp_path / name), tmp_path / "out"))
        assert code == 1 and "ParameterError" in stderr and f"{tmp_path / name}" in stderr, (name, stderr)
    code, _, stderr = run_cli(*sweep_args(("m", "t", "v", "s", tmp_path / "missing.yaml"), tmp_path / "out"))
    assert code == 1 and "Cannot read the search space" in stderr


def test_print_space_writes_the_default_space_that_a_sweep_reads_back(tmp_path, run_cli):
    from imgtrain.sweeps.space import DEFAULT_SPACE, parse_space, read_space

    code, stdout, _ = run_cli("sweep", "--print-space")
    assert code == 0
    (tmp_path / "space.yaml").write_text(stdout)
    assert read_space(tmp_path / "space.yaml") == DEFAULT_SPACE
    assert parse_space(DEFAULT_SPACE, ["m"]).max_epochs == 10


def test_an_occupied_folder_is_refused_and_overwrite_replaces_only_a_sweep(sweep_inputs, tmp_path, run_cli):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    for extra in ((), ("--overwrite",)):
        code, _, stderr = run_cli(*sweep_args(sweep_inputs, mine, "--trials", "1", *extra))
        assert code == 1 and "OutputExistsError" in stderr
    assert (mine / "notes.txt").read_text() == "keep"
    code, _, stderr = run_cli(*sweep_args(sweep_inputs, tmp_path / "none", "--resume"))
    assert code == 1 and "There is no sweep in" in stderr


@pytest.mark.slow  # three sweeps of 2-3 trials in processes of their own: about a minute on 2 cores
def test_a_killed_sweep_resumes_without_repeating_a_finished_trial(sweep_inputs, tmp_path):
    out = tmp_path / "sweep"
    crash = {"IMGTRAIN_CRASH_AT": "sweep-trial:1.1"}  # SIGKILL in trial 1, after its first epoch's checkpoint
    killed = run_sweep(sweep_inputs, out, "--trials", "3", "--pruner", "none", env=crash)
    assert killed.returncode == -9
    finished = {r["trial"]: r for r in table(out) if r["state"] == "complete"}
    assert list(finished) == ["0"]
    first = (out / "trials/0/model.safetensors").stat().st_mtime_ns
    resumed = run_sweep(sweep_inputs, out, "--trials", "3", "--pruner", "none", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    rows = table(out)
    assert (out / "trials/0/model.safetensors").stat().st_mtime_ns == first  # trial 0 was not trained again
    assert [r["state"] for r in rows] == ["complete", "interrupted", "complete", "complete"]
    retry = rows[2]
    assert retry["folder"] == "trials/1" and "resuming" in resumed.stderr  # from trial 1's epoch-1 checkpoint
    assert json.loads((out / "trials.json").read_text())["trials"][2]["retry_of"] == 1
    assert retry["learning_rate"] == rows[1]["learning_rate"]
    history = imgtrain.open_model_directory(out / "trials/1").meta["history"]
    assert [row["epoch"] for row in history] == list(range(1, int(retry["epochs"]) + 1))


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_cleanly_and_resume_finishes_it(sweep_inputs, tmp_path):
    out = tmp_path / "sweep"
    crash = {"IMGTRAIN_CRASH_AT": "sweep-trial:0.1", "IMGTRAIN_CRASH_SIGNAL": "INT"}
    stopped = run_sweep(sweep_inputs, out, "--trials", "2", env=crash)
    assert stopped.returncode == 130 and "--resume" in stopped.stderr and "Traceback" not in stopped.stderr
    assert [r["state"] for r in table(out)] == ["interrupted"]
    resumed = run_sweep(sweep_inputs, out, "--trials", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert [r["state"] for r in table(out)][1:] in (["complete", "complete"], ["complete", "pruned"])


@pytest.mark.slow
def test_a_sweep_keeps_its_budget_and_runs_trials_side_by_side(sweep_inputs, tmp_path):
    out = tmp_path / "sweep"
    started = time.monotonic()
    result = run_sweep(sweep_inputs, out, "--trials", "1000", "--budget-minutes", "0.5", "--parallel", "2")
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    rows = table(out)
    assert 2 <= len(rows) < 1000 and {r["state"] for r in rows} <= {"complete", "pruned"}
    # 30 s of budget; the rest is the command's start (torch imported by three processes) and an epoch's overrun
    assert seconds < 30 + 45
    pids = {row["pid"] for row in _study_attrs(out)}
    assert len(pids) == 2  # two worker processes shared the study


def _study_attrs(out):
    import optuna

    study = optuna.load_study(study_name="imgtrain-sweep", storage=f"sqlite:///{out / 'sweep.db'}")
    return [t.user_attrs for t in study.trials]


def test_a_signal_during_any_trial_reaches_the_sweep_around_it():
    """stop_on_signals blocks nest: the sweep's block learns of the Ctrl-C its second trial's training took (the
    blocks' requests compare equal, and the first trial's end once removed the sweep's instead of its own)."""
    from imgtrain.interrupts import stop_on_signals

    with stop_on_signals() as sweep_block:
        with stop_on_signals():  # the first trial ends normally
            pass
        with stop_on_signals() as second:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
        assert second.signum == sweep_block.signum == signal.SIGINT


@pytest.mark.slow
def test_ctrl_c_reaches_every_parallel_worker_once_and_resume_finishes_their_trials(sweep_inputs, tmp_path):
    out = tmp_path / "sweep"
    # 150 epochs of 24 tiny images: trials of 20 s or more, so that both workers are inside theirs at once
    (tmp_path / "long.json").write_text(json.dumps({"learning_rate": [0.001], "epochs": 150, "patience": 150}))
    inputs = (*sweep_inputs[:4], tmp_path / "long.json")
    argv = [sys.executable, "-m", "imgtrain", *sweep_args(inputs, out, "--trials", "2", "--parallel", "2")]
    process = subprocess.Popen([str(a) for a in argv], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(out.glob("trials/*/checkpoint/last.safetensors"))) < 2:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)  # both workers are inside their trial, past its first epoch
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "--resume" in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.count("SIGINT received") == 2  # one each: a second would have stopped it at once
    assert [r["state"] for r in table(out)] == ["interrupted", "interrupted"]
    resumed = run_sweep(inputs, out, "--trials", "2", "--parallel", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert [r["state"] for r in table(out)][2:] == ["complete", "complete"]
    assert resumed.stderr.count("resuming") == 2  # each from its trial's checkpoint
