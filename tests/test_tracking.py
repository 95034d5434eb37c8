"""train --log-dir (TensorBoard event files) and --mlflow."""

from __future__ import annotations

import importlib.util

import pytest

import imgtrain
from imgtrain import TrainConfig


def test_log_dir_gets_tensorboard_scalars_per_epoch(small_training_data, tmp_path, run_cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, train, valid, spec = small_training_data
    imgtrain.init_transform(tmp_path / "spec.json", spec)
    code, _, err = run_cli(
        "train",
        "--model",
        model,
        "--train",
        train,
        "--valid",
        valid,
        "--out",
        tmp_path / "m",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--transform",
        tmp_path / "spec.json",
        "--log-dir",
        tmp_path / "runs",
    )
    assert code == 0, err
    events = EventAccumulator(str(tmp_path / "runs"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "loss/train",
        "loss/validation",
        "accuracy/validation_top1",
        "learning_rate",
        "speed/images_per_second",
    } <= tags
    assert [e.step for e in events.Scalars("loss/validation")] == [1, 2]
    history = imgtrain.open_model_directory(tmp_path / "m").meta["history"]
    assert events.Scalars("loss/validation")[1].value == pytest.approx(history[1]["val_loss"], rel=1e-6)


def test_mlflow_logs_to_local_mlruns_or_says_how_to_install_it(small_training_data, tmp_path, monkeypatch):
    model, train, valid, spec = small_training_data
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(epochs=1, batch_size=8, progress=False, mlflow=True)
    if importlib.util.find_spec("mlflow") is None:
        with pytest.raises(imgtrain.MissingDependencyError, match="pip install mlflow"):
            imgtrain.train(model, train, valid, tmp_path / "m", config, spec)
        assert not (tmp_path / "m").exists()  # refused before any training
    else:
        imgtrain.train(model, train, valid, tmp_path / "m", config, spec)
        [metric] = (tmp_path / "mlruns").rglob("metrics/loss_validation")
        history = imgtrain.open_model_directory(tmp_path / "m").meta["history"]
        assert float(metric.read_text().split()[1]) == pytest.approx(history[0]["val_loss"], rel=1e-6)
        assert list((tmp_path / "mlruns").rglob("params/learning_rate"))
