"""Tuning before training: `imgtrain lr-find` (the learning-rate range test's curve, its suggestion, its files)
and `--batch-size auto`."""

from __future__ import annotations

import json
import math

import pytest

from imgtrain import ParameterError
from imgtrain.training.lr_find import find_learning_rate, suggest


def test_the_suggestion_is_where_the_loss_falls_fastest_before_its_minimum():
    rates = [10 ** (-6 + i * 0.1) for i in range(61)]  # 1e-6 .. 1
    # flat, then falling fastest at 1e-3, lowest at 1e-2, then exploding
    losses = [
        2 - math.tanh(2 * (math.log10(r) + 3)) + (50 * (math.log10(r) + 2) ** 2 if r > 1e-2 else 0) for r in rates
    ]
    found = suggest(rates, losses)
    # the smoothing lags the curve by a few steps: the readings land within half a decade
    assert 10**-3.5 <= found["suggestion"] <= 10**-2.5
    assert 10**-2.5 <= found["minimum"] <= 10**-1.5
    assert found["suggestion"] < found["minimum"]


def test_lr_find_writes_its_curve_and_suggests_a_rate(small_training_data, tmp_path, run_cli):
    model, train, _, spec = small_training_data
    code, out, err = run_cli("transform", "init", tmp_path / "t.json", "--no-resize", "--no-center-crop")
    code, out, err = run_cli(
        "lr-find",
        "--model",
        model,
        "--train",
        train,
        "--out",
        tmp_path / "lr",
        "--transform",
        tmp_path / "t.json",
        "--batch-size",
        "6",
        "--steps",
        "40",
        "--end-lr",
        "100",
    )
    assert code == 0, err
    result = json.loads((tmp_path / "lr" / "lr-find.json").read_text())
    assert (tmp_path / "lr" / "lr-find.png").read_bytes()[:4] == b"\x89PNG"
    rates = result["rates"]
    assert rates == sorted(rates) and rates[0] == pytest.approx(1e-7) and len(rates) <= 40
    assert len(rates) < 40  # at 100 the loss explodes long before the last step
    assert rates[0] < result["suggestion"] < rates[-1] and f"suggested learning rate {result['suggestion']:.3g}" in out


def test_a_range_the_wrong_way_round_is_refused(small_training_data, tmp_path):
    model, train, _, spec = small_training_data
    with pytest.raises(ParameterError, match="start_lr < end_lr"):
        find_learning_rate(model, train, tmp_path / "lr", start_lr=1.0, end_lr=0.1)
    assert not (tmp_path / "lr").exists()


def test_batch_size_auto_on_a_cpu_says_what_it_picked_and_why(small_training_data, tmp_path, run_cli):
    model, train, valid, spec = small_training_data
    run_cli("transform", "init", tmp_path / "t.json", "--no-resize", "--no-center-crop")
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
        "--transform",
        tmp_path / "t.json",
        "--batch-size",
        "auto",
        "--epochs",
        "1",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert "batch size 16: on a CPU memory does not limit the batch; the designer's 16" in out
    assert json.loads((tmp_path / "m" / "imgtrain-model.json").read_text())["training"]["batch_size"] == 16
    code, out, err = run_cli(
        "train", "--model", model, "--train", train, "--valid", valid, "--out", tmp_path / "n", "--batch-size", "big"
    )
    assert code == 2 and "not a number: 'big'" in err
