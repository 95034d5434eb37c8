"""Train PyTorch Model: schedule, early stopping, checks before work, outputs, repeatability, resume."""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, load_file

import imgtrain
from imgtrain import (
    EarlyStopping,
    InvalidDatasetError,
    InvalidModelDirectoryError,
    NotLabeledDatasetError,
    OutputExistsError,
    ParameterError,
    TrainConfig,
)
from imgtrain.training.loop import learning_rate_at

FAST = dict(epochs=2, batch_size=8, progress=False)


# --- the rules, without training --------------------------------------------------------------


def test_learning_rate_decays_polynomially_to_almost_zero():
    config = TrainConfig(epochs=50, learning_rate=0.01)
    rates = [learning_rate_at(e, config) for e in range(50)]
    assert rates[0] == 0.01
    drops = [a - b for a, b in itertools.pairwise(rates)]
    assert all(d > 0 for d in drops) and all(a > b for a, b in itertools.pairwise(drops))  # falling, ever more slowly
    assert rates[25] == pytest.approx(0.01 / 4, rel=1e-3)  # halfway: (1 - 1/2)^2 of the start, as --help says
    assert 1e-7 < rates[-1] < 0.01 / 2000  # the last epoch's rate is almost zero, never zero


def test_warmup_ramps_up_then_decays():
    config = TrainConfig(epochs=6, learning_rate=0.1, warmup_epochs=2)
    rates = [learning_rate_at(e, config) for e in range(6)]
    assert rates[0] < rates[1] < rates[2] == pytest.approx(0.1)
    assert rates[2] > rates[3] > rates[4] > rates[5]


@pytest.mark.parametrize(
    "losses, patience, stop_after, best",
    [
        ([1.0, 0.9, 0.95, 0.96, 0.97], 3, 5, 2),
        ([1.0, 0.8, 0.9, 0.85, 0.86], 3, 5, 2),  # 0.85 beats the previous epoch, not the best
        ([1.0, 0.9, 0.8, 0.7], 1, None, 4),
        ([1.0, 1.0], 1, 2, 1),  # equal is not better
        ([math.nan, 0.5, math.nan, math.nan], 2, 4, 2),  # NaN never improves
    ],
)
def test_early_stopping_against_the_best_so_far(losses, patience, stop_after, best):
    stopper = EarlyStopping(patience)
    stopped = None
    for epoch, loss in enumerate(losses, 1):
        stopper.update(epoch, loss)
        if stopper.should_stop:
            stopped = epoch
            break
    assert stopped == stop_after and stopper.best_epoch == best


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("learning_rate", 0.0),
        ("learning_rate", math.inf),
        ("patience", 0),
        ("warmup_epochs", -1),
        ("print_frequency", 0),
        ("seed", 1.5),
        ("device", "tpu"),
    ],
)
def test_parameters_out_of_range_are_refused(field, value):
    with pytest.raises(ParameterError, match=field if field != "device" else "device"):
        TrainConfig(**{field: value})


def test_cuda_without_a_gpu_is_a_clear_error(small_training_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    model, train, valid, spec = small_training_data
    with pytest.raises(ParameterError, match="no CUDA GPU"):
        imgtrain.train(model, train, valid, tmp_path / "out", TrainConfig(device="cuda", **FAST), spec)


# --- bad inputs: refused before any work, nothing written -------------------------------------


def _images(tmp_path, name, counts):
    from conftest import make_class_folder

    return imgtrain.convert(
        make_class_folder(tmp_path / f"{name}-src", counts, size=(16, 16)), tmp_path / name, workers=1, progress=False
    ).root


def test_validation_class_unknown_to_training_is_named(small_training_data, tmp_path):
    model, train, _, spec = small_training_data
    valid = _images(tmp_path, "valid", {"red": 2, "purple": 2})
    with pytest.raises(InvalidDatasetError, match=r"\['purple'\]"):
        imgtrain.train(model, train, valid, tmp_path / "out", TrainConfig(**FAST), spec)
    assert not (tmp_path / "out").exists()


def test_training_class_missing_from_validation_is_a_warning(small_training_data, tmp_path, caplog):
    model, train, _, spec = small_training_data
    valid = _images(tmp_path, "valid", {"red": 2, "green": 2})
    with caplog.at_level(logging.WARNING):
        imgtrain.train(model, train, valid, tmp_path / "out", TrainConfig(epochs=1, batch_size=8, progress=False), spec)
    assert "['blue']" in caplog.text


def test_unlabeled_training_data_is_not_labeled_error(small_training_data, tmp_path):
    model, _, valid, spec = small_training_data
    flat = tmp_path / "flat"
    flat.mkdir()
    from conftest import noise

    for i in range(3):
        noise(seed=i).save(flat / f"{i}.png")
    unlabeled = imgtrain.convert(flat, tmp_path / "unlabeled").root
    with pytest.raises(NotLabeledDatasetError, match="training image directory"):
        imgtrain.train(model, unlabeled, valid, tmp_path / "out", TrainConfig(**FAST), spec)


def test_model_input_that_is_not_an_untrained_model(small_training_data, tmp_path):
    _, train, valid, spec = small_training_data
    with pytest.raises(InvalidModelDirectoryError, match="image directory"):
        imgtrain.train(train, train, valid, tmp_path / "out", TrainConfig(**FAST), spec)


def test_batch_larger_than_training_set_is_refused_up_front(small_training_data, tmp_path):
    model, train, valid, spec = small_training_data
    with pytest.raises(ParameterError, match="larger than the 24 training images"):
        imgtrain.train(model, train, valid, tmp_path / "out", TrainConfig(batch_size=25, progress=False), spec)
    assert not (tmp_path / "out").exists()


def test_images_that_cannot_be_batched_are_refused_up_front(tmp_path, small_training_data):
    model, _, valid, _ = small_training_data
    from conftest import make_class_folder

    src = make_class_folder(tmp_path / "src", {"red": 2}, size=(16, 16))
    make_class_folder(tmp_path / "src", {"green": 2, "blue": 2}, size=(20, 16))
    train = imgtrain.convert(src, tmp_path / "mixed").root
    spec = imgtrain.TransformSpec(resize=False, center_crop=False)
    with pytest.raises(InvalidDatasetError, match="cannot be batched"):
        imgtrain.train(model, train, valid, tmp_path / "out", TrainConfig(batch_size=2, progress=False), spec)


# --- a real training run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(small_training_data, tmp_path_factory):
    model, train, valid, spec = small_training_data
    out = tmp_path_factory.mktemp("trained") / "model"
    config = TrainConfig(epochs=4, batch_size=8, learning_rate=0.01, seed=3, patience=4, progress=False)
    history = imgtrain.train(model, train, _mislabeled(valid, out.parent / "valid-mislabeled"), out, config, spec)
    return out, history


def _mislabeled(valid: Path, dest: Path) -> Path:
    """`valid` with every label moved to the next class: the better the model learns, the worse its validation
    loss, so the best epoch comes before the last on any CPU (the weights must be that epoch's, not the last)."""
    _copy(valid, dest)
    classes = json.loads((dest / "imgtrain-images.json").read_text())["classes"]
    rows = [json.loads(line) for line in (dest / "images.jsonl").read_text().splitlines()]
    for row in rows:
        row["label"] = classes[(classes.index(row["label"]) + 1) % len(classes)]
    (dest / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dest


def test_trained_model_directory_holds_everything(trained):
    out, history = trained
    assert sorted(p.name for p in out.iterdir()) == [
        "history.jsonl",
        "imgtrain-model.json",
        "model.safetensors",
        "training.png",
    ]
    meta = json.loads((out / "imgtrain-model.json").read_text())
    assert meta["format"] == "imgtrain.trained_model" and meta["format_version"] == 1
    assert meta["classes"] == ["blue", "green", "red"]
    assert meta["training"]["epochs"] == 4 and meta["training"]["learning_rate"] == 0.01
    assert meta["library_versions"]["torch"] == torch.__version__
    assert meta["input"]["transform"]["resize"] is False
    assert [json.loads(line)["epoch"] for line in (out / "history.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_file(out / "model.safetensors")["fc.weight"].shape == (3, 512)  # head sized to the classes
    for row in history:
        assert {"train_loss", "val_loss", "val_top1", "images_per_second", "lr"} <= set(row)
        assert row["val_top5"] is None  # only with more than 5 classes


def test_saved_weights_are_the_best_epochs(trained):
    out, history = trained
    model = imgtrain.open_model_directory(out)
    best = model.meta["best_epoch"]
    assert history[best - 1]["val_loss"] == min(r["val_loss"] for r in history)
    assert best < len(history), "this run should have its best epoch before its last"
    mislabeled = imgtrain.ImageDirectory.open(out.parent / "valid-mislabeled")
    data = mislabeled.dataset(model.model_input(), classes=model.classes)
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.tensor([data[i][1] for i in range(len(data))])
    with torch.inference_mode():
        loss = torch.nn.functional.cross_entropy(model.network()(images), labels).item()
    assert loss == pytest.approx(history[best - 1]["val_loss"], abs=1e-4)


def test_training_loss_falls(trained):
    _, history = trained
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_same_seed_gives_bit_identical_weights_whatever_the_loader_workers(small_training_data, tmp_path):
    model, train, valid, spec = small_training_data
    for name, workers in (("a", 0), ("b", 2)):
        imgtrain.train(model, train, valid, tmp_path / name, TrainConfig(workers=workers, **FAST), spec)
    a, b = (load_file(tmp_path / name / "model.safetensors") for name in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_model_is_refused_unless_overwrite(trained, small_training_data):
    out, _ = trained
    model, train, valid, spec = small_training_data
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        imgtrain.train(model, train, valid, out, TrainConfig(**FAST), spec)
    imgtrain.open_model_directory(out)  # untouched


def _run_until_crash(model, train, valid, out, spec, crash_at: str, epochs: int) -> int:
    spec_file = out.parent / "spec.json"
    imgtrain.init_transform(spec_file, spec, overwrite=True)
    code = (
        f"import imgtrain; imgtrain.train({str(model)!r}, {str(train)!r}, {str(valid)!r}, {str(out)!r}, "
        f"imgtrain.TrainConfig(epochs={epochs}, batch_size=8, progress=False), {str(spec_file)!r})"
    )
    env = dict(os.environ, IMGTRAIN_CRASH_AT=crash_at)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode


def test_resume_after_a_kill_ends_with_identical_weights(small_training_data, tmp_path):
    model, train, valid, spec = small_training_data
    config = TrainConfig(epochs=3, batch_size=8, progress=False)
    imgtrain.train(model, train, valid, tmp_path / "whole", config, spec)
    assert _run_until_crash(model, train, valid, tmp_path / "cut", spec, "checkpoint-saved:1", 3) == -9
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    with pytest.raises(OutputExistsError, match="--resume"):
        imgtrain.train(model, train, valid, tmp_path / "cut", config, spec)
    history = imgtrain.train(
        model, train, valid, tmp_path / "cut", TrainConfig(epochs=3, batch_size=8, progress=False, resume=True), spec
    )
    assert [r["epoch"] for r in history] == [1, 2, 3]
    whole, cut = (load_file(tmp_path / n / "model.safetensors") for n in ("whole", "cut"))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert not (tmp_path / "cut" / "checkpoint").exists()


def test_resume_with_other_parameters_is_refused(small_training_data, tmp_path):
    model, train, valid, spec = small_training_data
    assert _run_until_crash(model, train, valid, tmp_path / "cut", spec, "checkpoint-saved:1", 2) == -9
    with pytest.raises(ParameterError, match="learning_rate"):
        imgtrain.train(
            model,
            train,
            valid,
            tmp_path / "cut",
            TrainConfig(epochs=2, batch_size=8, learning_rate=0.1, resume=True, progress=False),
            spec,
        )
    with pytest.raises(ParameterError, match="class_weights, sampler"):
        imgtrain.train(
            model,
            train,
            valid,
            tmp_path / "cut",
            TrainConfig(
                epochs=2, batch_size=8, resume=True, progress=False, class_weights="balanced", sampler="balanced"
            ),
            spec,
        )


def test_resume_without_a_checkpoint_is_refused(small_training_data, tmp_path):
    model, train, valid, spec = small_training_data
    with pytest.raises(ParameterError, match="no interrupted training run"):
        imgtrain.train(model, train, valid, tmp_path / "out", TrainConfig(resume=True, **FAST), spec)


def test_default_transform_is_the_designers(small_training_data, tmp_path):
    model, train, valid, _ = small_training_data
    imgtrain.train(model, train, valid, tmp_path / "out", TrainConfig(epochs=1, batch_size=12, progress=False))
    trained = imgtrain.open_model_directory(tmp_path / "out")
    assert trained.transform == imgtrain.TransformSpec()


def test_train_through_the_cli(run_cli, small_training_data, tmp_path):
    model, train, valid, spec = small_training_data
    imgtrain.init_transform(tmp_path / "spec.json", spec)
    code, out, err = run_cli(
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
        "1",
        "--batch-size",
        "8",
        "--transform",
        tmp_path / "spec.json",
    )
    assert code == 0, err
    assert "best epoch 1 of 1" in out and "epoch 1/1" in err
    code, _, err = run_cli(
        "train", "--model", model, "--train", train, "--valid", valid, "--out", tmp_path / "m2", "--epochs", "0"
    )
    assert code == 1 and "ParameterError: epochs must be an integer >= 1" in err


# --- loading a trained model directory ---------------------------------------------------------


def _copy(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest)
    return dest


def test_pickle_in_place_of_weights_is_refused(trained, tmp_path):
    out = _copy(trained[0], tmp_path / "m")
    weights = load((out / "model.safetensors").read_bytes())
    torch.save(weights, out / "model.safetensors")
    with pytest.raises(InvalidModelDirectoryError, match="never loads pickles"):
        imgtrain.open_model_directory(out)


def test_edited_classes_no_longer_fit_the_weights(trained, tmp_path):
    out = _copy(trained[0], tmp_path / "m")
    meta = json.loads((out / "imgtrain-model.json").read_text())
    meta["classes"].append("purple")
    (out / "imgtrain-model.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidModelDirectoryError, match="wrong shape"):
        imgtrain.open_model_directory(out)


def test_missing_weights_and_untrained_directories_are_refused(trained, small_training_data, tmp_path):
    out = _copy(trained[0], tmp_path / "m")
    (out / "model.safetensors").unlink()
    with pytest.raises(InvalidModelDirectoryError, match="missing"):
        imgtrain.open_model_directory(out)
    with pytest.raises(InvalidModelDirectoryError, match="train it first"):
        imgtrain.open_model_directory(small_training_data[0])


# --- faults -------------------------------------------------------------------------------------


def test_a_diverging_loss_stops_with_a_hint_to_lower_the_learning_rate(small_training_data, tmp_path):
    model, train, valid, spec = small_training_data
    from imgtrain import TrainingDivergedError

    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        imgtrain.train(
            model,
            train,
            valid,
            tmp_path / "out",
            TrainConfig(epochs=2, batch_size=8, learning_rate=1e12, progress=False),
            spec,
        )
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_second_run_on_the_same_output_is_refused(small_training_data, tmp_path):
    import fcntl

    model, train, valid, spec = small_training_data
    with open(tmp_path / ".out.lock", "a") as held:  # what a running `imgtrain train --out out` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputExistsError, match="Another imgtrain process is writing"):
            imgtrain.train(model, train, valid, tmp_path / "out", TrainConfig(**FAST), spec)
    imgtrain.train(model, train, valid, tmp_path / "out", TrainConfig(epochs=1, batch_size=8, progress=False), spec)


def test_label_smoothing_softens_the_training_targets_and_is_recorded(run_cli, small_training_data, tmp_path):
    """--label-smoothing S trains towards 1 - S + S/k on the true class and S/k on each other: the training loss can
    then never fall below that target's entropy; the model directory records S; S outside 0-0.9 is refused."""
    model, train, valid, spec = small_training_data
    smoothing, classes = 0.5, 3
    near, far = 1 - smoothing + smoothing / classes, smoothing / classes
    floor = -(near * math.log(near) + (classes - 1) * far * math.log(far))  # 0.868 nats
    smoothed = imgtrain.train(
        model, train, valid, tmp_path / "smoothed", TrainConfig(label_smoothing=smoothing, **FAST), spec
    )
    assert all(row["train_loss"] >= floor for row in smoothed.history), (floor, smoothed.history)
    meta = json.loads((tmp_path / "smoothed" / "imgtrain-model.json").read_text())
    assert meta["training"]["label_smoothing"] == smoothing
    code, _, err = run_cli(
        "train", "--model", model, "--train", train, "--valid", valid, "--out", tmp_path / "o", "--label-smoothing", "1"
    )
    assert code == 1 and "label_smoothing must be a finite number from 0 to 0.9, got 1.0" in err
    assert not (tmp_path / "o").exists()
