"""Training on multi-label data (issue 28): sigmoid outputs with binary cross-entropy, early stopping on the
validation loss, each class's threshold chosen on the validation set and stored in the model directory; the same
seed gives the same weights, and a killed run resumes to them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import imgtrain
from conftest import MULTILABEL_FAST as FAST
from conftest import QUADRANTS
from imgtrain import InvalidDatasetError, ParameterError, TrainConfig
from imgtrain.calibration import class_temperature_report, temperature_report
from imgtrain.thresholds import DEFAULT_THRESHOLD, check_thresholds, choose_thresholds


def test_a_multilabel_model_trains_and_keeps_each_class_threshold(multilabel_model):
    out, result = multilabel_model
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert all(r["val_top5"] is None and 0 <= r["val_top1"] <= 1 for r in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    meta = json.loads((out / "imgtrain-model.json").read_text())
    assert (meta["format_version"], meta["task"], meta["classes"]) == (2, "multilabel", ["blue", "green", "red"])
    assert len(meta["thresholds"]) == 3 and all(0 < t < 1 for t in meta["thresholds"])
    opened = imgtrain.open_model_directory(out)
    assert opened.multilabel and opened.thresholds == tuple(meta["thresholds"])


def test_the_same_seed_gives_identical_weights_and_a_killed_run_resumes_to_them(
    multilabel_data, multilabel_model, tmp_path
):
    model, train, valid, spec = multilabel_data
    imgtrain.train(model, train, valid, tmp_path / "again", TrainConfig(**FAST), spec)
    spec_file = imgtrain.init_transform(tmp_path / "spec.json", spec)
    code = (
        f"import imgtrain; imgtrain.train({str(model)!r}, {str(train)!r}, {str(valid)!r}, {str(tmp_path / 'cut')!r},"
        f" imgtrain.TrainConfig(**{FAST!r}), {str(spec_file)!r})"
    )
    killed = subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ, IMGTRAIN_CRASH_AT="checkpoint-saved:1"), capture_output=True
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    resumed = imgtrain.train(model, train, valid, tmp_path / "cut", TrainConfig(**FAST, resume=True), spec)
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    whole, again, cut = (
        load_file(path / "model.safetensors") for path in (multilabel_model[0], tmp_path / "again", tmp_path / "cut")
    )
    assert all(torch.equal(whole[k], again[k]) and torch.equal(whole[k], cut[k]) for k in whole)
    thresholds = [
        json.loads((path / "imgtrain-model.json").read_text())["thresholds"]
        for path in (multilabel_model[0], tmp_path / "cut")
    ]
    assert thresholds[0] == thresholds[1]


def test_balanced_class_weights_and_label_smoothing_train_a_multilabel_model(multilabel_data, tmp_path):
    model, train, valid, spec = multilabel_data
    config = TrainConfig(**{**FAST, "epochs": 2}, class_weights="balanced", label_smoothing=0.2)
    result = imgtrain.train(model, train, valid, tmp_path / "m", config, spec)
    # smoothing 0.2 trains towards 0.1 and 0.9: the binary cross-entropy cannot fall below that target's entropy
    floor = -(0.1 * np.log(0.1) + 0.9 * np.log(0.9))
    assert all(r["train_loss"] > floor * 0.99 for r in result.history) and np.isfinite(result.best["val_loss"])


def test_a_multilabel_training_with_a_single_label_validation_or_a_balanced_sampler_is_refused(
    multilabel_data, tmp_path
):
    model, train, valid, spec = multilabel_data
    from conftest import make_color_classes

    single = imgtrain.convert(make_color_classes(tmp_path / "single-src", 3), tmp_path / "single", workers=1)
    with pytest.raises(InvalidDatasetError, match="is multi-label but the validation image directory"):
        imgtrain.train(model, train, single.root, tmp_path / "m", TrainConfig(**FAST), spec)
    with pytest.raises(ParameterError, match="sampler balanced"):
        imgtrain.train(model, train, valid, tmp_path / "m", TrainConfig(**FAST, sampler="balanced"), spec)
    assert not (tmp_path / "m").exists()


def test_each_threshold_is_the_f1_best_cut_of_its_class():
    probabilities = np.array([[0.95, 0.9], [0.9, 0.2], [0.85, 0.1], [0.3, 0.1], [0.2, 0.8], [0.1, 0.1]])
    targets = np.array([[1, 1], [1, 0], [1, 0], [0, 0], [0, 1], [0, 0]])
    # class 0: the three positives score 0.85 and above, the negatives 0.3 and below: cut half-way, F1 = 1.
    # class 1: two positives, fewer than the floor of 3 given here: the default.
    assert choose_thresholds(probabilities, targets, min_positives=3) == [0.575, DEFAULT_THRESHOLD]
    # with the floor at 2, class 1 has its own: its positives score 0.9 and 0.8, the next 0.2: cut half-way, F1 = 1
    assert choose_thresholds(probabilities, targets, min_positives=2)[1] == pytest.approx(0.5)
    # a positive scored below a negative: taking it along costs that false positive, and F1 6/7 beats 4/5 without
    mixed = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]])
    assert choose_thresholds(mixed, np.array([[1], [1], [0], [1], [0]]), min_positives=1) == [pytest.approx(0.55)]


def test_saturated_probabilities_still_give_thresholds_inside_0_and_1():
    # found by two workers' weights: sigmoids of logits over ~37 are 1.0, and the cut between 1.0 and the float
    # below it rounds to 1.0, which the model directory's own check refused after a whole training
    below_one = np.nextafter(1.0, 0.0)
    top = np.array([[1.0], [1.0], [below_one], [0.2], [0.1]])
    cut = choose_thresholds(top, np.array([[1], [1], [0], [0], [0]]), min_positives=1)
    bottom = choose_thresholds(np.array([[0.0], [0.0], [0.0]]), np.array([[1], [1], [1]]), min_positives=1)
    for thresholds in (cut, bottom):
        assert check_thresholds(thresholds, 1) == tuple(thresholds)
    assert cut == [below_one] and 0 < bottom[0] < 1e-300  # the nearest floats inside


def test_each_class_is_calibrated_by_the_single_label_rule_on_its_own():
    rng = np.random.default_rng(0)
    n = 400
    truth = rng.random((n, 2)) < 0.5
    # class 0: informative but 4x overconfident logits (some wrong); class 1: every decision right
    evidence = np.where(truth[:, 0], 1.0, -1.0) + rng.normal(0, 1.2, n)
    logits = np.stack([4 * evidence, np.where(truth[:, 1], 6.0, -6.0)], axis=1)
    report = class_temperature_report(logits, truth.astype(np.float32), ["a", "b"])
    a, b = report["classes"]["a"], report["classes"]["b"]
    assert a["applied"] and a["temperature"] > 2 and a["nll_after"] < a["nll_before"]
    assert not b["applied"] and "are right" in b["reason"] and b["temperature"] == 1.0
    assert report["temperatures"] == [a["temperature"], 1.0] and report["applied"]
    # the same as the two-class softmax of (0, logit): the single-label rule itself
    two_class = temperature_report(np.stack([np.zeros(n), logits[:, 0]], axis=1), truth[:, 0].astype(np.int64))
    assert two_class["temperature"] == a["temperature"]


def test_a_calibrated_multilabel_model_scores_each_class_at_its_temperature(multilabel_data, tmp_path):
    model, train, _, spec = multilabel_data
    from conftest import make_composites

    rows = make_composites(tmp_path / "valid-src", 60, seed=7)  # enough validation images for the rule
    (tmp_path / "valid-src" / "list.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    valid = imgtrain.convert(tmp_path / "valid-src" / "list.jsonl", tmp_path / "valid", workers=1, progress=False)
    imgtrain.train(model, train, valid.root, tmp_path / "m", TrainConfig(**FAST), spec)
    calibration = json.loads((tmp_path / "m" / "imgtrain-model.json").read_text())["calibration"]
    assert calibration["method"] == "temperature scaling per class" and set(calibration["classes"]) == set(QUADRANTS)
    assert all("applied" in r and ("reason" in r or r["applied"]) for r in calibration["classes"].values())
    assert any(r["applied"] for r in calibration["classes"].values())  # 3 fast epochs: far too sure (log loss ~4)
    loaded = imgtrain.load_model(tmp_path / "m", device="cpu", precision="fp32")
    assert loaded.trained.temperatures == tuple(calibration["temperatures"])
    batch = torch.stack([loaded.model_input.from_file(valid.root / r.path, r.width, r.height) for r in valid][:8])
    with torch.inference_mode():
        raw = loaded.trained.network()(batch)
    expected = torch.sigmoid(raw / torch.tensor(calibration["temperatures"]))
    assert torch.allclose(loaded.probabilities(batch), expected, atol=1e-5)


def test_task_multilabel_trains_single_label_data_with_a_sigmoid_per_class(small_training_data, tmp_path):
    model, train, valid, spec = small_training_data
    config = TrainConfig(epochs=1, batch_size=8, progress=False, task="multilabel")
    imgtrain.train(model, train, valid, tmp_path / "m", config, spec)
    trained = imgtrain.open_model_directory(tmp_path / "m")
    assert trained.multilabel and trained.meta["training"]["task"] == "multilabel"
    rows = imgtrain.score(tmp_path / "m", valid, progress=False)
    assert all(len(r["labels"]) == 1 and isinstance(r["Scored Labels"], list) for r in rows)


def test_task_single_label_refuses_multilabel_data(multilabel_data, tmp_path):
    model, train, valid, spec = multilabel_data
    with pytest.raises(ParameterError, match="task single_label trains one class per image"):
        imgtrain.train(model, train, valid, tmp_path / "m", TrainConfig(**FAST, task="single_label"), spec)
    assert not (tmp_path / "m").exists()
