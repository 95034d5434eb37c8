"""Hostile and careless input, round two (issue 13): each test makes its own bad input."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import imgtrain
from imgtrain import TrainConfig
from imgtrain.scoring import score_to_file


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_outputs_follow_the_umask_so_other_accounts_can_read_them(small_training_data, tmp_path, monkeypatch,
                                                                  umask_027):
    model, train, valid, spec = small_training_data
    out = tmp_path / "model"
    monkeypatch.setenv("IMGTRAIN_CRASH_AT", "batch:1.1")
    monkeypatch.setenv("IMGTRAIN_CRASH_SIGNAL", "TERM")
    with pytest.raises(imgtrain.TrainingInterrupted):
        imgtrain.train(model, train, valid, out, TrainConfig(epochs=1, batch_size=8, progress=False), spec)
    assert stat.S_IMODE((out / "checkpoint" / "last.safetensors").stat().st_mode) == 0o640
    monkeypatch.delenv("IMGTRAIN_CRASH_AT")
    imgtrain.train(model, train, valid, out, TrainConfig(epochs=1, batch_size=8, progress=False, resume=True), spec)
    scores, _ = score_to_file(out, valid, tmp_path / "scores.csv", progress=False)
    imgtrain.evaluate(scores, tmp_path / "report")
    imgtrain.create_model_directory(tmp_path / "untrained", imgtrain.Architecture("resnet", "resnet18"),
                                    pretrained=False)
    for root in (out, tmp_path / "report", tmp_path / "untrained"):
        modes = _modes(root)
        assert modes.pop(".") == 0o750, root
        assert modes and set(modes.values()) == {0o640}, modes  # weights, PNGs and JSON alike (was 0600 / 0644)
    assert stat.S_IMODE(scores.stat().st_mode) == 0o640
