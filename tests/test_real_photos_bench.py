"""bench/real_photos.py cuts its training and validation crops from disjoint parts of real photos, the same for the
same seed; bench/imagenet_backbone.py writes real ImageNet weights that load strictly into timm and recognize a
photo."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from sklearn.datasets import load_sample_image

from conftest import load_bench

photos = load_bench("real_photos")
backbone = load_bench("imagenet_backbone")
#: ImageNet classes that name china.jpg's subject (the Summer Palace's tower): measured palace .34, bell cote .22
BUILDINGS = {"palace", "bell cote", "church", "monastery", "mosque", "stupa", "boathouse", "castle"}


def overlap(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Whether two (left, top, right, bottom) boxes share a pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(box: tuple[int, ...], region: tuple[int, ...]) -> bool:
    """Whether `box` lies wholly in `region`."""
    return region[0] <= box[0] < box[2] <= region[2] and region[1] <= box[1] < box[3] <= region[3]


def files(folder) -> dict[str, bytes]:
    """Every file under `folder`, by its path relative to it."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_validation_crops_come_from_another_part_of_each_photo():
    plan = photos.plan(shots=20, valid_per_class=30, seed=3)
    assert list(plan) == list(photos.PHOTOS) and 6 <= len(plan) <= 8
    for name, boxes in plan.items():
        shape = photos.load_photo(name).shape
        train_region, valid_region = photos.regions(shape)
        assert not overlap(train_region, valid_region)
        assert all(inside(box, train_region) for box in boxes["train"])
        assert all(inside(box, valid_region) for box in boxes["valid"])
        assert not any(overlap(t, v) for t in boxes["train"] for v in boxes["valid"])
        sides = [box[2] - box[0] for box in boxes["train"] + boxes["valid"]]
        assert all(box[2] - box[0] == box[3] - box[1] for box in boxes["train"] + boxes["valid"])  # squares
        assert photos.SCALE[0] * min(shape) - 1 <= min(sides) and max(sides) <= photos.SCALE[1] * min(shape) + 1
        assert len(set(boxes["train"])) == 20 and len(set(boxes["valid"])) == 30


def test_crops_are_written_per_class_seeded_and_nested(tmp_path):
    train, valid = photos.make_texture_photos(tmp_path / "a", shots=3, valid_per_class=4, seed=1, size=32)
    assert (train, valid) == (tmp_path / "a" / "train-3", tmp_path / "a" / "valid")
    for folder, count in ((train, 3), (valid, 4)):
        assert sorted(p.name for p in folder.iterdir()) == sorted(photos.PHOTOS)
        assert all(len(list((folder / name).glob("*.png"))) == count for name in photos.PHOTOS)
    # a file is its planned box of the photo, resized
    box = photos.plan(shots=3, valid_per_class=4, seed=1)["gravel"]["valid"][2]
    expected = Image.fromarray(photos.load_photo("gravel")).crop(box).resize((32, 32), Image.Resampling.LANCZOS)
    written = Image.open(sorted((valid / "gravel").glob("*.png"))[2])
    assert written.size == (32, 32) and np.array_equal(np.asarray(written), np.asarray(expected))

    same = photos.make_texture_photos(tmp_path / "b", shots=3, valid_per_class=4, seed=1, size=32)
    assert files(train) == files(same[0]) and files(valid) == files(same[1])
    other = photos.make_texture_photos(tmp_path / "c", shots=3, valid_per_class=4, seed=2, size=32)
    assert not set(files(train).values()) & set(files(other[0]).values())
    more, valid_again = photos.make_texture_photos(tmp_path / "a", shots=5, valid_per_class=4, seed=1, size=32)
    assert files(train).items() <= files(more).items() and len(files(more)) == 5 * len(photos.PHOTOS)
    assert files(valid_again) == files(same[1])  # validation is the same for every number of shots
    assert "CC0" in photos.describe() and "CC BY 2.0" in photos.describe()


def test_weights_are_mapped_by_position_and_misfits_fail_clearly():
    source = {"_bn.weight": torch.ones(2), "_bn.bias": torch.zeros(2), "_bn.num_batches_tracked": torch.tensor(7)}
    target = {"bn.weight": torch.empty(2), "bn.bias": torch.empty(2), "bn.num_batches_tracked": torch.tensor(0)}
    mapped = backbone.map_weights(source, target)
    assert list(mapped) == list(target) and mapped["bn.weight"].eq(1).all() and mapped["bn.num_batches_tracked"] == 7
    no_counter = backbone.map_weights({k: v for k, v in source.items() if "num_batches" not in k}, target)
    assert no_counter["bn.num_batches_tracked"] == 0
    with pytest.raises(ValueError, match=r"do not fit .*_bn.bias \(2,\) -> bn.bias \(3,\)"):
        backbone.map_weights(source, {**target, "bn.bias": torch.empty(3)})
    with pytest.raises(ValueError, match="do not fit"):  # same shapes, swapped kinds
        backbone.map_weights({"_bn.bias": torch.zeros(2), "_bn.weight": torch.ones(2)}, target)
    with pytest.raises(ValueError, match="has 1 weight tensors"):
        backbone.map_weights({"_bn.weight": torch.ones(2)}, target)


def test_backbone_file_loads_strictly_into_timm_and_recognizes_a_building(tmp_path):
    out = backbone.write_backbone(tmp_path / "lite0.safetensors")
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert meta["architecture"] == "timm/efficientnet_lite0" and "RangiLyu" in meta["source"]
    mean, std = json.loads(meta["mean"]), json.loads(meta["std"])
    assert mean == std == [0.5, 0.5, 0.5]
    model = timm.create_model("efficientnet_lite0", num_classes=1000)
    model.load_state_dict(load_file(out), strict=True)
    with torch.no_grad():
        probabilities = model.eval()(backbone.photo_batch([load_sample_image("china.jpg")], mean, std))[0].softmax(0)
    classes = backbone.imagenet_classes()
    top = [classes[i] for i in probabilities.topk(5).indices]
    assert top[0] in BUILDINGS, top
    assert sum(float(probabilities[classes.index(c)]) for c in BUILDINGS & set(top)) > 0.35, top  # measured 0.56
