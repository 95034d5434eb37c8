"""Init / Apply Image Transformation: the file, its validation, and applying it."""

from __future__ import annotations

import json

import pytest
import torch

import imgtrain
from conftest import make_class_folder
from imgtrain import InvalidTransformationDirectoryError, TransformSpec
from imgtrain.data.transforms import build_transform, init_transform, load_transform


def test_defaults_are_the_designers(tmp_path):
    path = init_transform(tmp_path / "t.json")
    data = json.loads(path.read_text())
    assert data["format"] == "imgtrain.transformation" and data["format_version"] == 1
    t = data["transforms"]
    assert (t["resize"], t["size"], t["center_crop"], t["crop_size"]) == (True, 256, True, 224)
    assert t["random_horizontal_flip"] is True
    assert not any(
        v for k, v in t.items() if isinstance(v, bool) and k not in ("resize", "center_crop", "random_horizontal_flip")
    )
    assert load_transform(path) == TransformSpec()


def test_folder_output_gets_transform_json(tmp_path):
    path = init_transform(tmp_path)
    assert path == tmp_path / "transform.json"
    assert load_transform(tmp_path) == TransformSpec()


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    init_transform(tmp_path / "t.json", TransformSpec(size=100, crop_size=96))
    with pytest.raises(imgtrain.OutputExistsError):
        init_transform(tmp_path / "t.json")
    assert load_transform(tmp_path / "t.json").size == 100
    init_transform(tmp_path / "t.json", overwrite=True)
    assert load_transform(tmp_path / "t.json").size == 256


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"sharpen": True}, "'sharpen' is not one of the designer's"),
        ({"resize": "yes"}, "resize must be true or false"),
        ({"size": 0}, "size must be an integer from 1"),
        ({"random_rotation_degrees": 270}, "from 0 to 180"),
    ],
)
def test_invalid_file_is_refused(tmp_path, edit, message):
    path = init_transform(tmp_path / "t.json")
    data = json.loads(path.read_text())
    data["transforms"].update(edit)
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidTransformationDirectoryError, match=message):
        load_transform(path)


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"format": "other"}),
        json.dumps({"format": "imgtrain.transformation", "format_version": 7}),
    ],
)
def test_not_a_transformation_file(tmp_path, content):
    (tmp_path / "t.json").write_text(content)
    with pytest.raises(InvalidTransformationDirectoryError):
        load_transform(tmp_path / "t.json")


def test_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(InvalidTransformationDirectoryError, match="transform init"):
        load_transform(tmp_path / "none.json")


def test_parameters_are_validated_when_made():
    with pytest.raises(imgtrain.ParameterError, match="crop_size"):
        TransformSpec(crop_size=-3)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"size": 64, "crop_size": 224}, "crop_size must be at most size .* got crop_size 224 with size 64"),
        (
            {"size": 20, "center_crop": False, "random_crop": True, "random_crop_size": 31},
            "random_crop_size must be at most 20, the side the resize",
        ),
        (
            {"size": 32, "crop_size": 24, "pad": True, "padding": 2, "random_crop": True, "random_crop_size": 30},
            "random_crop_size must be at most 28, the side the center crop",
        ),
        (
            {"random_resized_crop": True, "random_resized_crop_size": 96, "random_crop": True},
            "random_crop_size must be at most 96, the side the random resized crop",
        ),
    ],
)
def test_a_crop_larger_than_its_image_is_refused_as_a_black_frame(values, message):
    """Issue 25: `--size 64 --crop-size 224` made a 64 px picture in a black 224 px frame."""
    with pytest.raises(imgtrain.ParameterError, match=message) as caught:
        TransformSpec(**values)
    assert "black" in str(caught.value) and "or less" in str(caught.value)


@pytest.mark.parametrize(
    "values",
    [
        {"size": 64, "crop_size": 64},
        {"size": 28, "crop_size": 24, "pad": True, "padding": 4, "random_crop": True, "random_crop_size": 32},
        {"resize": False, "crop_size": 224},  # sizes depend on the images: nothing to check here
        {"size": 64, "crop_size": 224, "center_crop": False},  # an unused size is no problem
        {"random_horizontal_flip": False},  # the designer's defaults
        {"size": 64, "crop_size": 56, "random_resized_crop": True, "random_resized_crop_size": 224},
    ],
)
def test_crops_that_fit_their_image_are_accepted(values):
    spec = TransformSpec(**values)
    if spec.resize:  # then no step pads but the one asked for
        x = torch.full((3, 100, 150), 200, dtype=torch.uint8)
        y = build_transform(spec, "training")(x)
        assert (y == 0).float().mean() <= (1 - 24 * 24 / 32**2 if spec.pad else 0)


def test_a_framing_transformation_file_is_refused_on_reading(tmp_path):
    path = init_transform(tmp_path / "t.json")
    data = json.loads(path.read_text())
    data["transforms"].update(size=64)
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidTransformationDirectoryError, match="crop_size must be at most size"):
        load_transform(path)


def test_transform_init_refuses_a_crop_larger_than_the_resize(run_cli, tmp_path):
    code, out, err = run_cli("transform", "init", tmp_path / "t.json", "--size", "64", "--crop-size", "224")
    assert code == 1 and out == "" and not (tmp_path / "t.json").exists()
    assert "ParameterError" in err and "black frame" in err and "lower crop_size to 64 or less" in err


def test_default_transform_resizes_and_center_crops():
    x = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    y = build_transform(TransformSpec(), "inference")(x)
    assert y.dtype == torch.uint8 and tuple(y.shape) == (3, 224, 224)


def test_inference_mode_drops_every_random_transform():
    spec = TransformSpec(
        resize=False,
        center_crop=False,
        color_jitter=True,
        random_crop=True,
        random_crop_size=8,
        random_vertical_flip=True,
        random_rotation=True,
        random_rotation_degrees=90,
        random_affine=True,
        random_affine_degrees=30,
        random_grayscale=True,
        random_perspective=True,
        random_erasing=True,
        random_resized_crop=True,
        random_resized_crop_size=8,
    )
    x = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    inference = build_transform(spec, "inference")
    assert all(torch.equal(inference(x), x) for _ in range(5))
    training = build_transform(spec, "training")
    assert tuple(training(x).shape) == (3, 8, 8)


def test_training_transform_draws_anew_each_call():
    spec = TransformSpec(resize=False, center_crop=False, random_crop=True, random_crop_size=6)
    t = build_transform(spec, "training")
    x = torch.arange(3 * 16 * 16, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(3, 16, 16)
    outputs = {t(x).flatten().tolist().__repr__() for _ in range(10)}
    assert len(outputs) > 1


def test_pad_and_grayscale_keep_three_channels():
    spec = TransformSpec(
        resize=False, center_crop=False, random_horizontal_flip=False, pad=True, padding=2, grayscale=True
    )
    y = build_transform(spec)(torch.randint(0, 256, (3, 5, 5), dtype=torch.uint8))
    assert tuple(y.shape) == (3, 9, 9)
    assert torch.equal(y[0], y[1]) and torch.equal(y[1], y[2])


@pytest.fixture
def directory(tmp_path):
    src = make_class_folder(tmp_path / "src", {"a": 40, "b": 30}, size=(40, 30))
    return imgtrain.convert(src, tmp_path / "d", workers=1)


def test_apply_writes_transformed_image_directory(directory, tmp_path):
    spec = TransformSpec(size=20, crop_size=16)
    out = imgtrain.apply_transform(spec, directory.root, tmp_path / "t", mode="inference")
    assert len(out) == len(directory) and out.classes == directory.classes
    assert [(r.id, r.label) for r in out] == [(r.id, r.label) for r in directory]
    assert all((r.width, r.height) == (16, 16) for r in out)
    assert out.load(0).size == (16, 16)


def test_apply_is_repeatable_and_independent_of_workers(directory, tmp_path):
    spec = TransformSpec(resize=False, center_crop=False, random_crop=True, random_crop_size=10)
    spec_file = init_transform(tmp_path / "spec.json", spec)
    a = imgtrain.apply_transform(spec_file, directory.root, tmp_path / "a", seed=5, workers=1)
    b = imgtrain.apply_transform(spec_file, directory.root, tmp_path / "b", seed=5, workers=2)
    c = imgtrain.apply_transform(spec_file, directory.root, tmp_path / "c", seed=6, workers=1)
    pixels = [[d.image_path(i).read_bytes() for i in range(len(d))] for d in (a, b, c)]
    assert pixels[0] == pixels[1]
    assert pixels[0] != pixels[2]


def test_apply_with_bad_spec_writes_nothing(directory, tmp_path):
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InvalidTransformationDirectoryError):
        imgtrain.apply_transform(tmp_path / "bad.json", directory.root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dataset_applies_spec_on_the_fly_with_fresh_draws(directory):
    spec = TransformSpec(resize=False, center_crop=False, random_crop=True, random_crop_size=10)
    ds = directory.dataset(transform=build_transform(spec, "training"))
    draws = {ds[0][0].flatten().tolist().__repr__() for _ in range(8)}
    assert len(draws) > 1 and tuple(ds[0][0].shape) == (3, 10, 10)


@pytest.mark.parametrize(
    "spec",
    [
        imgtrain.TransformSpec(),
        imgtrain.TransformSpec(size=1, center_crop=False),
        imgtrain.TransformSpec(size=37, crop_size=30, pad=True, padding=3),
        imgtrain.TransformSpec(resize=False, center_crop=False, random_resized_crop=True, random_resized_crop_size=19),
        imgtrain.TransformSpec(
            resize=False,
            center_crop=False,
            random_crop=True,
            random_crop_size=31,
            random_rotation=True,
            random_rotation_degrees=30,
            random_perspective=True,
        ),
    ],
)
def test_output_sizes_by_arithmetic_match_the_transformation_for_every_size(spec):
    """The batching check covers every distinct size of a directory (it used to look at 64) without running
    the transformation; here the arithmetic is held to what torchvision really makes."""
    import torch

    from imgtrain.data.transforms import output_size

    sizes = [(w, h) for w in (1, 2, 7, 16, 33, 250, 301) for h in (1, 3, 16, 29, 224, 400)]
    for mode in ("training", "inference"):
        transform = imgtrain.build_transform(spec, mode)
        for width, height in sizes:
            made = transform(torch.zeros(3, height, width, dtype=torch.uint8))
            assert output_size(spec, mode, width, height) == (made.shape[-1], made.shape[-2]), (mode, width, height)
