"""Split Image Directory: counts, stratification, repeatability."""

from __future__ import annotations

import pytest

import imgtrain
from conftest import make_class_folder
from imgtrain import ImageDirectory
from imgtrain.data.split import split_indices


@pytest.fixture
def directory(tmp_path):
    src = make_class_folder(tmp_path / "src", {"a": 30, "b": 20, "c": 7}, size=(4, 4))
    return imgtrain.convert(src, tmp_path / "all", workers=1)


def test_first_output_gets_floor_fraction_of_images(directory, tmp_path):
    first, second = imgtrain.split(directory.root, tmp_path / "t", tmp_path / "v", fraction=0.7)
    assert len(first) == 39 and len(second) == 18  # floor(0.7 * 57) = 39
    assert {r.id for r in first} | {r.id for r in second} == {r.id for r in directory}
    assert not {r.id for r in first} & {r.id for r in second}


def test_stratified_split_keeps_class_shares(directory, tmp_path):
    first, _ = imgtrain.split(directory.root, tmp_path / "t", tmp_path / "v", fraction=0.5)
    counts = first.class_counts()
    assert sum(counts.values()) == 28
    assert counts["a"] == 15 and counts["b"] == 10 and counts["c"] in (3, 4)


def test_both_parts_keep_every_class(directory, tmp_path):
    first, second = imgtrain.split(directory.root, tmp_path / "t", tmp_path / "v", fraction=0.9)
    assert first.classes == second.classes == ("a", "b", "c")


def test_same_seed_same_split_other_seed_other_split(directory, tmp_path):
    a, _ = imgtrain.split(directory.root, tmp_path / "a1", tmp_path / "a2", seed=3)
    b, _ = imgtrain.split(directory.root, tmp_path / "b1", tmp_path / "b2", seed=3)
    c, _ = imgtrain.split(directory.root, tmp_path / "c1", tmp_path / "c2", seed=4)
    assert [r.id for r in a] == [r.id for r in b]
    assert [r.id for r in a] != [r.id for r in c]


def test_floor_is_exact_for_awkward_fractions():
    labels = ["x"] * 100
    assert len(split_indices(labels, 0.29, seed=1)) == 29
    assert len(split_indices(labels, 0.29, seed=1, stratify=False)) == 29


def test_without_stratify_class_shares_may_drift(directory):
    labels = [r.label for r in directory]
    plain = [split_indices(labels, 0.5, seed=s, stratify=False) for s in range(5)]
    shares = {sum(labels[i] == "a" for i in chosen) for chosen in plain}
    assert len(shares) > 1 and all(len(chosen) == 28 for chosen in plain)


def test_unlabeled_directory_splits(tmp_path):
    (tmp_path / "flat").mkdir()
    make_class_folder(tmp_path / "tmp", {"x": 5})
    for p in (tmp_path / "tmp" / "x").iterdir():
        p.rename(tmp_path / "flat" / p.name)
    d = imgtrain.convert(tmp_path / "flat", tmp_path / "d")
    first, second = imgtrain.split(d.root, tmp_path / "t", tmp_path / "v", fraction=0.6)
    assert (len(first), len(second)) == (3, 2) and not first.labeled


@pytest.mark.parametrize("fraction", [-0.1, 1.5, "half"])
def test_fraction_out_of_range_is_refused(directory, tmp_path, fraction):
    with pytest.raises(imgtrain.ParameterError, match="fraction"):
        imgtrain.split(directory.root, tmp_path / "t", tmp_path / "v", fraction=fraction)
    assert not (tmp_path / "t").exists()


def test_split_outputs_survive_deleting_the_source(directory, tmp_path):
    import shutil

    imgtrain.split(directory.root, tmp_path / "t", tmp_path / "v")
    shutil.rmtree(directory.root)
    first = ImageDirectory.open(tmp_path / "t")
    first.load(0)


def test_existing_second_output_blocks_both(directory, tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "keep.txt").write_text("x")
    with pytest.raises(imgtrain.OutputExistsError):
        imgtrain.split(directory.root, tmp_path / "t", tmp_path / "v")
    assert not (tmp_path / "t").exists() and (tmp_path / "v" / "keep.txt").exists()


def test_package_function_is_not_shadowed_by_its_module():
    import imgtrain.data.convert  # noqa: F401
    import imgtrain.data.split  # noqa: F401

    assert callable(imgtrain.split) and callable(imgtrain.convert)
