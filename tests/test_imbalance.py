"""Class imbalance: train --class-weights balanced and --sampler balanced."""

from __future__ import annotations

import json
import statistics
from collections import Counter

import numpy as np
import pytest

import imgtrain
from imgtrain import ParameterError
from imgtrain.data.sampling import EpochOrder


@pytest.mark.slow  # issue 25: over a minute on a 2-core machine; make test-slow runs it
def test_balanced_class_weights_raise_minority_recall_at_equal_epochs(bench, tmp_path):
    """Two overlapping colour classes at 10:1, 3 epochs, seeds 1-9: the minority's recall on a balanced held-out
    set, none against balanced. One seed's gain swings from -0.38 to +0.74 with the CPU's kernels (27 measured: mean
    0.20, sd 0.25): 3 seeds against a bound of +0.15 would fail on about one CPU in three (seeds 1-3 gained 0.32 on
    AVX-512, 0.19 with AVX2 and 0.17 with SSE4.1 emulated). Seeds 1-9 gained 0.30, 0.18 and 0.13 there; the bound
    is any gain, as weights left out train the very same networks (a gain of exactly 0) and inverted ones lose."""
    recalls = bench.imbalance_figures(
        tmp_path, seeds=tuple(range(1, 10)), ways=(("none", "uniform"), ("balanced", "uniform"))
    )
    plain, balanced = (statistics.mean(recalls[way]) for way in (("none", "uniform"), ("balanced", "uniform")))
    assert balanced > plain, recalls
    meta = json.loads((tmp_path / "model-balanced-uniform" / "imgtrain-model.json").read_text())
    assert meta["training"]["class_weights"] == "balanced" and meta["training"]["sampler"] == "uniform"


def test_the_balanced_sampler_draws_every_class_equally_and_repeatably():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    weights = 1.0 / np.bincount(labels)[labels]
    drawn = [i for i, _ in EpochOrder(len(labels), seed=7, batch_size=10, weights=weights)]
    shares = Counter(labels[drawn].tolist())
    # 0.05 is 3.4 standard deviations of a share of 1000 draws; seed 7's are off by 0.004, 0.017, 0.022
    assert len(drawn) == 1000 and all(abs(shares[c] / 1000 - 1 / 3) < 0.05 for c in range(3)), shares
    again = [i for i, _ in EpochOrder(len(labels), seed=7, batch_size=10, weights=weights)]
    resumed = [i for i, _ in EpochOrder(len(labels), seed=7, batch_size=10, skip=30, weights=weights)]
    assert drawn == again and resumed == drawn[300:]
    uniform = [i for i, _ in EpochOrder(len(labels), seed=7, batch_size=10)]
    assert sorted(uniform) == list(range(1000))


@pytest.mark.parametrize(
    "field, value", [("class_weights", "inverse"), ("sampler", "oversample"), ("calibrate", "yes")]
)
def test_imbalance_options_out_of_their_choices_are_refused(field, value):
    with pytest.raises(ParameterError, match=field):
        imgtrain.TrainConfig(**{field: value})


def test_the_cli_offers_the_choices(run_cli, small_training_data, tmp_path):
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
        tmp_path / "m",
        "--class-weights",
        "inverse",
    )
    assert code == 2 and "balanced" in err and not (tmp_path / "m").exists()
