"""The demo's data steps on scikit-learn's bundled digits."""

from __future__ import annotations

import pytest

from imgtrain import ImageDirectory, OutputExistsError
from imgtrain.demo import run_demo
from imgtrain.transforms import load_transform


def test_demo_builds_split_digits_and_a_transform(tmp_path):
    result = run_demo(tmp_path / "demo", progress=False)
    assert len(result.images) == 1797 and result.images.classes == tuple(str(d) for d in range(10))
    assert (len(result.train), len(result.valid)) == (1617, 180)
    assert all((r.width, r.height) == (32, 32) for r in result.valid)
    assert load_transform(result.transform).random_horizontal_flip is False
    again = run_demo(tmp_path / "demo", limit=100, progress=False)  # reruns replace the demo's own output
    assert len(ImageDirectory.open(again.images.root)) == 100


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        run_demo(tmp_path, limit=50, progress=False)
