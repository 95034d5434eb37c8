"""Score Image Model: the designer's columns, streaming, bad images, single-image prediction."""

from __future__ import annotations

import csv
import json
import shutil
import types
from pathlib import Path

import pytest
import torch

import imgtrain
from conftest import make_color_classes, noise
from imgtrain import ImageDirectory, InvalidDatasetError, OutputExistsError
from imgtrain.inference.scoring import score_rows, score_to_file

CLASSES = ["blue", "green", "red"]


def test_one_row_per_image_with_the_designers_columns(trained_model, tmp_path):
    model, valid = trained_model
    path, count = score_to_file(model, valid, tmp_path / "scores.csv", progress=False)
    rows = list(csv.DictReader(path.open()))
    directory = ImageDirectory.open(valid)
    assert count == len(rows) == len(directory)
    assert list(rows[0]) == ["id", "path", "source", "label"] + [f"Scored Probabilities_{c}" for c in CLASSES] + [
        "Scored Labels"
    ]
    for row, record in zip(rows, directory, strict=True):
        assert int(row["id"]) == record.id and row["label"] == record.label
        probs = [float(row[f"Scored Probabilities_{c}"]) for c in CLASSES]
        assert sum(probs) == pytest.approx(1, abs=1e-5)
        assert row["Scored Labels"] == CLASSES[probs.index(max(probs))]
        assert (directory.root / record.path).resolve() == __import__("pathlib").Path(row["path"])


def test_scores_use_the_models_own_inference_pipeline(trained_model):
    model_dir, valid = trained_model
    trained = imgtrain.open_model_directory(model_dir)
    data = ImageDirectory.open(valid).dataset(trained.model_input(), classes=trained.classes)
    with torch.inference_mode():
        logits = trained.network()(torch.stack([data[i][0] for i in range(len(data))]))
        expected = torch.softmax(logits / trained.temperature, 1)  # the temperature train fitted
    rows = imgtrain.score(imgtrain.load_model(model_dir, precision="fp32"), valid, progress=False)
    got = torch.tensor([[row[f"Scored Probabilities_{c}"] for c in CLASSES] for row in rows])
    assert torch.allclose(got, expected, atol=1e-5)


def test_bf16_scores_stay_close_to_fp32(trained_model):
    model_dir, valid = trained_model
    probabilities = {}
    for precision in ("fp32", "bf16"):
        rows = imgtrain.score(imgtrain.load_model(model_dir, precision=precision), valid, progress=False)
        probabilities[precision] = torch.tensor([[row[f"Scored Probabilities_{c}"] for c in CLASSES] for row in rows])
    top2 = probabilities["fp32"].topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1] > 0.1  # twice the bound: no bf16 error can swap these images' labels
    # bf16 keeps 8 significant bits (each rounding off by up to 2^-9 = 0.2%), and softmax moves a probability by at
    # most a quarter of the spread of the logits' errors; through resnet18 those add up to a few percent of a logit.
    # Measured max |bf16 - fp32|: 7.2e-4 and 8.8e-4 (AVX-512 BF16), 1.1e-3 and 1.04e-2 (two AVX2 machines, emulated
    # bf16); the bound is 5x the largest.
    difference = (probabilities["bf16"] - probabilities["fp32"]).abs().max()
    assert difference <= 0.05, difference
    assert torch.equal(probabilities["bf16"].argmax(1)[margin], probabilities["fp32"].argmax(1)[margin])


def test_auto_precision_for_scoring_is_decided_on_the_first_batch(trained_model, monkeypatch):
    from imgtrain import devices
    from imgtrain.inference import model as scoring  # Model decides its precision (inference/model.py)

    model_dir, valid = trained_model
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: True)
    asked = []
    monkeypatch.setattr(scoring, "measure_speedup", lambda net, shape, *a, **k: asked.append(shape) or 1.8)
    model = imgtrain.load_model(model_dir)
    assert model.precision == "auto"
    imgtrain.score(model, valid, batch_size=4, progress=False)
    assert model.precision == "bf16" and asked == [(4, 3, 16, 16)]  # measured once, on the real batch shape
    monkeypatch.setattr(scoring, "measure_speedup", lambda *a, **k: 0.9)
    slower = imgtrain.load_model(model_dir)
    slower.predict(ImageDirectory.open(valid).root / next(iter(ImageDirectory.open(valid))).path)
    assert slower.precision == "fp32"


def test_jsonl_format_and_unlabeled_data(trained_model, tmp_path):
    model, valid = trained_model
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        noise(16, 16, seed=i).save(flat / f"{i}.png")
    unlabeled = imgtrain.convert(flat, tmp_path / "unlabeled", progress=False)
    path, _ = score_to_file(model, unlabeled.root, tmp_path / "scores.jsonl", progress=False)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 3 and "label" not in rows[0] and rows[0]["Scored Labels"] in CLASSES


def test_rows_stream_instead_of_being_collected(trained_model, tmp_path):
    model, valid = trained_model
    copy = shutil.copytree(valid, tmp_path / "copy")
    directory = ImageDirectory.open(copy)
    rows = score_rows(imgtrain.load_model(model), directory, batch_size=2, workers=0, progress=False)
    assert isinstance(rows, types.GeneratorType)
    directory.image_path(len(directory) - 1).write_bytes(b"broken later")
    first = next(rows)  # the last image has not been read yet
    assert first["id"] == directory.records[0].id


def _with_bad_images(valid, tmp_path):
    copy = shutil.copytree(valid, tmp_path / "bad")
    directory = ImageDirectory.open(copy)
    for i in (1, 4):
        directory.image_path(i).write_bytes(b"not an image any more")
    return directory


def test_unreadable_images_are_named_and_no_file_is_left(trained_model, tmp_path):
    model, valid = trained_model
    directory = _with_bad_images(valid, tmp_path)
    with pytest.raises(InvalidDatasetError, match="2 images") as err:
        score_to_file(model, directory.root, tmp_path / "out" / "scores.csv", progress=False)
    assert directory.records[1].path in str(err.value) and "skip_invalid=True" in str(err.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_skip_invalid_gives_bad_images_an_error_row(trained_model, tmp_path):
    model, valid = trained_model
    directory = _with_bad_images(valid, tmp_path)
    path, count = score_to_file(model, directory.root, tmp_path / "scores.csv", skip_invalid=True, progress=False)
    rows = list(csv.DictReader(path.open()))
    assert count == len(directory)
    assert [bool(r["error"]) for r in rows] == [i in (1, 4) for i in range(len(directory))]
    assert rows[1]["Scored Labels"] == "" and rows[0]["Scored Labels"] in CLASSES


def test_existing_scores_are_kept_unless_overwrite(trained_model, tmp_path):
    model, valid = trained_model
    (tmp_path / "scores.csv").write_text("precious")
    with pytest.raises(OutputExistsError):
        score_to_file(model, valid, tmp_path / "scores.csv", progress=False)
    assert (tmp_path / "scores.csv").read_text() == "precious"


def test_predict_single_images_paths_and_lists(trained_model):
    model_dir, valid = trained_model
    model = imgtrain.load_model(model_dir)
    directory = ImageDirectory.open(valid)
    one = model.predict(directory.image_path(0))
    assert one["label"] in CLASSES and sum(one["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    many = model.predict([directory.load(0), str(directory.image_path(0)), noise(40, 30).convert("L")])
    assert len(many) == 3 and many[2]["label"] in CLASSES
    assert many[0]["probabilities"] == pytest.approx(many[1]["probabilities"])
    assert many[0]["probabilities"] == pytest.approx(one["probabilities"])
    with pytest.raises(InvalidDatasetError, match="cannot be read"):
        model.predict(directory.root / "missing.png")


def test_score_through_the_cli(run_cli, trained_model, tmp_path):
    model, valid = trained_model
    code, out, err = run_cli(
        "score", "--model", model, "--data", valid, "--out", tmp_path / "s.csv", "--batch-size", "4"
    )
    assert code == 0, err
    assert f"wrote 9 scores to {tmp_path / 's.csv'}" in out
    code, _, err = run_cli("score", "--model", valid, "--data", valid, "--out", tmp_path / "t.csv")
    assert code == 1 and "InvalidModelDirectoryError" in err


def _same_probabilities(rows: list[dict], converted: list[dict]) -> None:
    assert [(r["id"], r["source"], r.get("label")) for r in rows] == [
        (r["id"], r["source"], r.get("label")) for r in converted
    ]
    for row, other in zip(rows, converted, strict=True):
        for c in CLASSES:
            key = f"Scored Probabilities_{c}"
            assert row[key] == pytest.approx(other[key], abs=1e-6)


def test_score_reads_a_plain_folder_of_class_folders_as_convert_would(trained_model, run_cli, tmp_path):
    """Issue 25: `score --data photos/` on a folder of images said to convert it first (remote prefixes were
    accepted); now the same probabilities as the converted image directory, the label from the class folder."""
    model, _ = trained_model
    photos = make_color_classes(tmp_path / "photos", 2, seed=7)
    loaded = imgtrain.load_model(model, precision="fp32")
    rows = imgtrain.score(loaded, photos, progress=False)
    converted = imgtrain.score(loaded, imgtrain.convert(photos, tmp_path / "images", progress=False), progress=False)
    assert len(rows) == 6 and {r["label"] for r in rows} == set(CLASSES)
    _same_probabilities(rows, converted)
    assert all(Path(r["path"]) == (photos / r["source"]).resolve() for r in rows)  # the file itself, no copy
    code, out, err = run_cli("score", "--model", model, "--data", photos, "--out", tmp_path / "s.csv")
    assert code == 0, err
    assert "wrote 6 scores" in out and sorted(p.name for p in tmp_path.iterdir()) == ["images", "photos", "s.csv"]


def test_score_reads_a_flat_folder_as_unlabeled(trained_model, tmp_path):
    model, _ = trained_model
    photos = make_color_classes(tmp_path / "classes", 1, seed=8)
    flat = tmp_path / "flat"
    flat.mkdir()
    for image in sorted(photos.rglob("*.png")):
        image.rename(flat / f"{image.parent.name}-{image.name}")
    (flat / "notes.txt").write_text("not an image")
    loaded = imgtrain.load_model(model, precision="fp32")
    rows = imgtrain.score(loaded, flat, progress=False)
    assert [r["source"] for r in rows] == ["blue-0.png", "green-0.png", "red-0.png"] and "label" not in rows[0]
    _same_probabilities(
        rows, imgtrain.score(loaded, imgtrain.convert(flat, tmp_path / "images", progress=False), progress=False)
    )
    (flat / "red").mkdir()
    noise().save(flat / "red" / "x.png")
    with pytest.raises(InvalidDatasetError, match="mixes images at its top level"):  # as convert says
        imgtrain.score(loaded, flat, progress=False)
