"""The image directory format: opening validates, and it gives a torch Dataset."""

from __future__ import annotations

import json

import pytest
import torch

import imgtrain
from imgtrain import ImageDirectory, InvalidDatasetError


@pytest.fixture
def directory(labeled_folder, tmp_path) -> ImageDirectory:
    return imgtrain.convert(labeled_folder, tmp_path / "dir")


def test_len_classes_and_records(directory):
    assert len(directory) == 10
    assert directory.classes == ("cat", "dog")
    assert [r.id for r in directory] == list(range(10))


def test_dataset_yields_uint8_images_and_label_indices(directory):
    ds = directory.dataset()
    assert isinstance(ds, torch.utils.data.Dataset) and len(ds) == 10
    x, y = ds[9]
    assert x.dtype == torch.uint8 and tuple(x.shape) == (3, 10, 12)
    assert y == 1  # dog
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    batches = list(loader)
    assert sum(len(b[1]) for b in batches) == 10


def test_dataset_can_map_labels_through_other_classes(directory):
    ds = directory.dataset(classes=["ant", "cat", "dog"])
    assert ds[0][1] == 1 and ds[9][1] == 2
    with pytest.raises(InvalidDatasetError, match="not among the classes"):
        directory.dataset(classes=["cat"])


def test_dataset_applies_transform(directory):
    ds = directory.dataset(transform=lambda x: x.float() / 255)
    assert ds[0][0].dtype == torch.float32


def test_not_a_directory_says_how_to_make_one(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(InvalidDatasetError, match="imgtrain convert"):
        ImageDirectory.open(tmp_path / "plain")
    with pytest.raises(InvalidDatasetError, match="does not exist"):
        ImageDirectory.open(tmp_path / "missing")


def test_missing_image_file_is_named(directory):
    (directory.root / directory.records[3].path).unlink()
    with pytest.raises(InvalidDatasetError, match=f"{directory.records[3].path} is missing"):
        ImageDirectory.open(directory.root)


def test_future_format_version_is_refused(directory):
    meta_path = directory.root / "imgtrain-images.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InvalidDatasetError, match="format_version 99"):
        ImageDirectory.open(directory.root)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r | {"path": "../../etc/passwd"}, "not a relative path inside"),
        (lambda r: r | {"label": "horse"}, "not one of the classes"),
        (lambda r: r | {"width": -1}, "positive integers"),
        (lambda r: r | {"id": 1}, "appears twice"),
        (lambda r: {"garbage": True}, "not an image record"),
    ],
)
def test_edited_index_is_refused_with_the_line(directory, edit, message):
    index = directory.root / "images.jsonl"
    lines = index.read_text().splitlines()
    lines[4] = json.dumps(edit(json.loads(lines[4])))
    index.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidDatasetError, match=message) as err:
        ImageDirectory.open(directory.root)
    assert "line 5" in str(err.value)


def test_count_mismatch_is_refused(directory):
    index = directory.root / "images.jsonl"
    index.write_text("".join(index.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(InvalidDatasetError, match="says 10 images"):
        ImageDirectory.open(directory.root)


def test_image_damaged_after_convert_is_named_when_loaded(directory):
    path = directory.image_path(0)
    path.write_bytes(b"broken")
    with pytest.raises(InvalidDatasetError, match=str(path)):
        directory.load(0)
    with pytest.raises(InvalidDatasetError, match=str(path)):
        directory.dataset()[0]
