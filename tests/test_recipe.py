"""The modern recipe (--recipe modern and each of its pieces): what each option fills in, and that every piece keeps
the promises: the same seed gives bit-identical weights, and a run stopped mid-epoch and resumed ends as the
uninterrupted run."""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import imgtrain
from imgtrain import ParameterError, TrainConfig, TrainingInterrupted
from imgtrain.config import RECIPES
from imgtrain.training.epoch import learning_rate_at
from imgtrain.training.recipe import BatchMixer, WeightAverage

FAST = dict(epochs=2, batch_size=6, progress=False)
#: Every piece of the modern recipe, alone, and the whole recipe.
OPTIONS = {
    "trivialaugment": {"augment": "trivialaugment"},
    "randaugment": {"augment": "randaugment"},
    "mixup": {"mixup": 0.4},
    "cutmix": {"cutmix": 1.0},
    "ema": {"ema": 0.9},
    "adamw": {"optimizer": "adamw"},
    "modern": {"recipe": "modern"},
    "every piece": {
        "optimizer": "adamw",
        "augment": "trivialaugment",
        "mixup": 0.2,
        "cutmix": 1.0,
        "label_smoothing": 0.1,
        "ema": 0.9,
    },
}


# --- the rules, without training --------------------------------------------------------------


def test_a_recipe_fills_in_only_what_was_left_unset():
    designer, modern = TrainConfig(), TrainConfig(recipe="modern")
    assert {k: getattr(designer, k) for k in RECIPES["designer"]} == RECIPES["designer"]
    assert {k: getattr(modern, k) for k in RECIPES["modern"]} == RECIPES["modern"]
    mine = TrainConfig(recipe="modern", mixup=0, optimizer="sgd")
    assert (mine.mixup, mine.optimizer, mine.augment) == (0, "sgd", RECIPES["modern"]["augment"])
    assert TrainConfig(recipe="modern").hyperparameters()["optimizer"] == RECIPES["modern"]["optimizer"]
    with pytest.raises(ParameterError, match="recipe must be one of designer, modern"):
        TrainConfig(recipe="fancy")
    with pytest.raises(ParameterError, match="ema must be"):
        TrainConfig(ema=1.0)


def test_adamw_decays_the_learning_rate_on_a_cosine_after_warmup():
    config = TrainConfig(epochs=11, warmup_epochs=1, learning_rate=0.01, optimizer="adamw")
    rates = [learning_rate_at(epoch, config) for epoch in range(11)]
    assert rates[0] == pytest.approx(0.005)  # warmup: half-way to the rate
    assert rates[1] == pytest.approx(0.01)
    assert rates[6] == pytest.approx(0.005, rel=1e-4)  # half the way down the cosine: half the rate
    assert rates[10] == pytest.approx(0.01 * (1 + math.cos(math.pi * 0.9)) / 2, rel=1e-3)  # 1e-7 floor aside


def test_a_batch_is_mixed_the_same_way_whenever_it_is_drawn():
    mixer = BatchMixer(TrainConfig(mixup=0.4, cutmix=1.0, seed=3), num_classes=3, rank=0)
    images, labels = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    first, again, other = mixer(images, labels, 2, 5), mixer(images, labels, 2, 5), mixer(images, labels, 2, 6)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    assert torch.allclose(first[1].sum(1), torch.ones(6)) and first[1].shape == (6, 3)
    before = torch.random.get_rng_state()
    mixer(images, labels, 2, 7)
    assert torch.equal(before, torch.random.get_rng_state())  # the run's own draws are untouched


def test_the_moving_average_warms_up_then_follows_its_decay():
    net = torch.nn.Linear(1, 1, bias=False)
    average = WeightAverage(net, decay=0.5)
    expected = None
    for n, value in enumerate([1.0, 3.0, 5.0, 7.0, 9.0]):
        net.weight.data.fill_(value)
        average.update_parameters(net)
        decay = min(0.5, (1 + n) / (10 + n)) if n else 0.0  # the first update copies
        expected = value if expected is None else decay * expected + (1 - decay) * value
        assert average.module.weight.item() == pytest.approx(expected)
    assert average.module.weight.item() != pytest.approx(9.0)


# --- the promises, training ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(small_training_data, tmp_path_factory):
    """The validation losses of a run with the designer's recipe and the same seed."""
    model, train, valid, spec = small_training_data
    result = imgtrain.train(model, train, valid, tmp_path_factory.mktemp("plain") / "m", TrainConfig(**FAST), spec)
    return [row["val_loss"] for row in result.history]


@pytest.mark.parametrize(
    "options",
    # every piece together in make test; each alone, and the recipe, in make test-slow (ten minutes for make test)
    [
        pytest.param(options, id=name, marks=[] if name == "every piece" else [pytest.mark.slow])
        for name, options in OPTIONS.items()
    ],
)
def test_the_same_seed_gives_bit_identical_weights(options, small_training_data, plain, tmp_path):
    model, train, valid, spec = small_training_data
    workers = (0, 2) if len(options) > 1 else (0, 0)  # every piece with loader workers too
    for name, count in zip("ab", workers, strict=True):
        imgtrain.train(model, train, valid, tmp_path / name, TrainConfig(workers=count, **FAST, **options), spec)
    a, b = (load_file(tmp_path / name / "model.safetensors") for name in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    meta = imgtrain.open_model_directory(tmp_path / "a").meta["training"]
    assert all(meta[k] == v for k, v in options.items())
    assert [row["val_loss"] for row in imgtrain.open_model_directory(tmp_path / "a").meta["history"]] != plain


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(OPTIONS["every piece"], id="every piece"),
        pytest.param(OPTIONS["randaugment"], id="randaugment", marks=pytest.mark.slow),
    ],
)
def test_a_run_stopped_mid_epoch_resumes_to_identical_weights(options, small_training_data, tmp_path, monkeypatch):
    """The moving average, the optimizer's moments and the mixing draws of the batches still to come are in the
    checkpoint, or derive from the seed and the batch's place."""
    model, train, valid, spec = small_training_data
    config = dict(epochs=3, batch_size=6, progress=False, **options)
    whole = imgtrain.train(model, train, valid, tmp_path / "whole", TrainConfig(**config), spec)
    monkeypatch.setenv("IMGTRAIN_CRASH_AT", "batch:2.2")
    monkeypatch.setenv("IMGTRAIN_CRASH_SIGNAL", "TERM")
    with pytest.raises(TrainingInterrupted, match="in epoch 2 after batch 2"):
        imgtrain.train(model, train, valid, tmp_path / "cut", TrainConfig(**config), spec)
    monkeypatch.delenv("IMGTRAIN_CRASH_AT")
    resumed = imgtrain.train(model, train, valid, tmp_path / "cut", TrainConfig(resume=True, **config), spec)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in whole.history]
    a, b = (load_file(tmp_path / name / "model.safetensors") for name in ("whole", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_moving_average_is_what_is_validated_and_saved(small_training_data, tmp_path):
    """With --ema the saved weights are the average's, not the last step's: a run stopped at its end keeps both in
    its checkpoint, and the saved model equals the average."""
    model, train, valid, spec = small_training_data
    imgtrain.init_transform(tmp_path / "spec.json", spec)
    code = (
        f"import imgtrain; imgtrain.train({str(model)!r}, {str(train)!r}, {str(valid)!r}, {str(tmp_path / 'o')!r}, "
        f"imgtrain.TrainConfig(epochs=1, batch_size=6, progress=False, ema=0.9), {str(tmp_path / 'spec.json')!r})"
    )
    env = dict(os.environ, IMGTRAIN_CRASH_AT="model-writing")  # killed while the model is written: the checkpoint
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == -9
    checkpoint = load_file(tmp_path / "o" / "checkpoint" / "last.safetensors")
    averaged = {k[len("average.module.") :]: v for k, v in checkpoint.items() if k.startswith("average.module.")}
    last = {k[len("model.") :]: v for k, v in checkpoint.items() if k.startswith("model.")}
    best = {k[len("best.") :]: v for k, v in checkpoint.items() if k.startswith("best.")}
    assert averaged and all(torch.equal(best[k], averaged[k]) for k in averaged)
    assert any(not torch.equal(last[k], averaged[k]) for k in averaged if averaged[k].is_floating_point())


def test_a_multilabel_run_takes_every_piece_but_mixing(multilabel_data, tmp_path):
    model, train, valid, spec = multilabel_data
    result = imgtrain.train(model, train, valid, tmp_path / "m", TrainConfig(**OPTIONS["every piece"], **FAST), spec)
    assert imgtrain.open_model_directory(tmp_path / "m").thresholds is not None and len(result.history) == 2


def test_test_time_augmentation_averages_each_image_with_its_mirror(trained_model, tmp_path, run_cli):
    model, valid = trained_model
    folder = tmp_path / "mirrored"
    for path in sorted((valid / "images").rglob("*.png")):
        target = folder / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(target)
    original = folder.parent / "original"
    shutil.copytree(valid / "images", original)
    runs = {}
    for name, data, extra in (("plain", original, []), ("mirror", folder, []), ("tta", original, ["--tta"])):
        code, _, err = run_cli("score", "--model", model, "--data", data, "--out", tmp_path / f"{name}.csv", *extra)
        assert code == 0, err
        with open(tmp_path / f"{name}.csv") as f:
            runs[name] = {Path(row["path"]).name: row for row in csv.DictReader(f)}
    columns = [c for c in next(iter(runs["tta"].values())) if c.startswith("Scored Probabilities_")]
    assert len(runs["tta"]) == len(runs["plain"]) > 0
    for image, row in runs["tta"].items():
        for column in columns:
            mean = (float(runs["plain"][image][column]) + float(runs["mirror"][image][column])) / 2
            assert float(row[column]) == pytest.approx(mean, abs=1e-5)


def test_a_random_backbone_is_never_frozen(small_training_data, tmp_path):
    """--freeze-epochs, like --head-lr-scale, is a fine-tuning option: from scratch the run is the one without it."""
    model, train, valid, spec = small_training_data
    for name, freeze in (("frozen", 1), ("plain", 0)):
        imgtrain.train(model, train, valid, tmp_path / name, TrainConfig(freeze_epochs=freeze, **FAST), spec)
    assert imgtrain.open_model_directory(tmp_path / "frozen").meta["training"]["freeze_epochs"] == 0
    a, b = (load_file(tmp_path / name / "model.safetensors") for name in ("frozen", "plain"))
    assert all(torch.equal(a[k], b[k]) for k in a)
