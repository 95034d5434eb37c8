"""The demo on scikit-learn's bundled digits, with fewer images and epochs than `make demo`."""

from __future__ import annotations

import json
import signal

import pytest

from imgtrain import ImageDirectory, OutputExistsError, TrainingInterrupted, open_model_directory
from imgtrain.data.transforms import load_transform
from imgtrain.demo import run_demo


def test_demo_runs_the_whole_pipeline(tmp_path):
    result = run_demo(tmp_path / "demo", epochs=2, limit=500, progress=False)
    assert len(result.images) == 500 and result.images.classes == tuple(str(d) for d in range(10))
    assert (len(result.train), len(result.valid)) == (450, 50)
    assert all((r.width, r.height) == (32, 32) for r in result.valid)
    assert load_transform(result.transform).random_horizontal_flip is False
    assert open_model_directory(result.model).classes == result.images.classes
    assert result.scores.read_text().startswith("id,path,source,label,Scored Probabilities_0")
    assert json.loads((result.report / "metrics.json").read_text())["images"] == 50
    assert result.metrics["accuracy"] >= 0.5  # 2 epochs on 450 images: 0.92 (AVX-512), 0.96 (AVX2 emulated), chance 0.1


def test_demo_replaces_its_own_output_but_nothing_else(tmp_path):
    run_demo(tmp_path / "demo", epochs=1, limit=60, progress=False)
    again = run_demo(tmp_path / "demo", epochs=1, limit=80, progress=False)
    assert len(ImageDirectory.open(again.images.root)) == 80
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        run_demo(tmp_path / "other", epochs=1, limit=50, progress=False)


def test_an_interrupted_demo_says_to_run_it_again_not_to_resume(tmp_path, monkeypatch):
    """Issue 25: stopping `imgtrain demo` said 'rerun the same command with --resume'; demo has no --resume."""
    monkeypatch.setenv("IMGTRAIN_CRASH_AT", "batch:1.1")  # SIGINT after the first batch, as Ctrl-C would
    monkeypatch.setenv("IMGTRAIN_CRASH_SIGNAL", "INT")
    with pytest.raises(TrainingInterrupted) as caught:
        run_demo(tmp_path / "demo", epochs=1, limit=40, progress=False)
    assert caught.value.signum == signal.SIGINT
    assert "resume" not in str(caught.value).replace("no resume", "")
    assert "call run_demo again: it starts over" in str(caught.value)
    shown = caught.value.cli_text()  # what `imgtrain demo` prints after "error: TrainingInterrupted: "
    assert "run `imgtrain demo` again: it starts over" in shown and "--resume" not in shown.replace("no --resume", "")
