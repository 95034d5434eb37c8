"""Deploying: INT8 and OpenVINO / Core ML exports with their measured agreement, and scoring on other runtimes."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import imgtrain
from conftest import make_color_classes
from imgtrain.deploy.exported import preprocess
from imgtrain.serving.serve import ServeConfig, create_app


def _valid_batch(model_dir, valid):
    """(the validation images as exports take them, torch fp32's labels and probabilities of them)."""
    directory = imgtrain.ImageDirectory.open(valid)
    images = [Image.open(directory.root / r.path) for r in directory]
    trained = imgtrain.open_model_directory(model_dir)
    predictions = imgtrain.load_model(model_dir, precision="fp32").predict(images)
    expected = np.array([[p["probabilities"][c] for c in trained.classes] for p in predictions])
    return np.stack([preprocess(trained, image) for image in images]), [p["label"] for p in predictions], expected


def _check(out):
    return json.loads((out / "imgtrain-export.json").read_text())["check"]


def test_int8_onnx_export_reports_what_a_user_would_measure(trained_model, tmp_path, run_cli):
    import onnx
    import onnxruntime

    model_dir, valid = trained_model
    code, out, err = run_cli("export", model_dir, tmp_path / "int8", "--int8", "--images", valid)
    assert code == 0, err
    check = _check(tmp_path / "int8")
    assert f"labels agree {100 * check['label_agreement']:.1f}%" in out and "max |Δp|" in out and "accuracy" in out
    batch, torch_labels, expected = _valid_batch(model_dir, valid)
    session = onnxruntime.InferenceSession(str(tmp_path / "int8" / "model.onnx"), providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {"images": batch})
    classes = imgtrain.open_model_directory(model_dir).classes
    agree = np.mean([classes[i] == label for i, label in zip(probs.argmax(1), torch_labels, strict=True)])
    assert check["images"] == len(batch) == check["calibration_images"] and check["label_agreement"] == agree
    assert check["max_abs_probability_change"] == pytest.approx(np.abs(probs - expected).max(), abs=1e-5)
    graph = onnx.load(str(tmp_path / "int8" / "model.onnx")).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in graph.node}
    # the probabilities come out of a float32 softmax, not in steps of 1/255 (where near-ties become exact ties)
    assert [n.op_type for n in graph.node if "probabilities" in n.output] == ["Softmax"]
    assert len({round(float(p) * 255, 3) % 1 for p in probs.ravel()}) > 1
    run_cli("export", model_dir, tmp_path / "fp32")
    # int8 weights: a quarter of float32's, plus scales and zero points
    assert os.path.getsize(tmp_path / "int8" / "model.onnx") < 0.35 * os.path.getsize(tmp_path / "fp32" / "model.onnx")
    assert sorted(p.name for p in (tmp_path / "int8").iterdir()) == ["imgtrain-export.json", "model.onnx"]


def test_openvino_exports_match_pytorch_and_int8_says_by_how_much(trained_model, tmp_path, run_cli):
    import openvino

    model_dir, valid = trained_model
    code, out, err = run_cli("export", model_dir, tmp_path / "ov", "--format", "openvino", "--images", valid)
    assert code == 0, err
    batch, _, expected = _valid_batch(model_dir, valid)
    compiled = openvino.Core().compile_model(
        str(tmp_path / "ov" / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    # float32 both ways, different kernels: measured 1.5e-7
    assert np.abs(compiled(batch)[0] - expected).max() <= 1e-4
    assert _check(tmp_path / "ov")["label_agreement"] == 1.0 and "labels agree 100.0% (0 changed)" in out
    code, out, err = run_cli(
        "export",
        model_dir,
        tmp_path / "ov8",
        "--format",
        "openvino",
        "--int8",
        "--images",
        valid,
        "--calibration-images",
        "4",
    )
    assert code == 0, err
    assert "FakeQuantize" in (tmp_path / "ov8" / "model.xml").read_text()
    meta = json.loads((tmp_path / "ov8" / "imgtrain-export.json").read_text())
    assert meta["precision"] == "int8" and meta["check"]["calibration_images"] == 4
    # 4 calibrate, the other 5 check
    assert meta["check"]["images"] == len(batch) - 4 and (tmp_path / "ov8" / "model.bin").is_file()


def test_coreml_export_is_written_and_says_it_cannot_be_checked_here(trained_model, tmp_path, run_cli):
    import coremltools

    model_dir, valid = trained_model
    code, out, err = run_cli("export", model_dir, tmp_path / "cml", "--format", "coreml", "--images", valid)
    assert code == 0, err
    assert "not checked: Core ML runs models only on macOS and iOS" in out
    spec = coremltools.models.MLModel(str(tmp_path / "cml" / "model.mlpackage"), skip_model_load=True).get_spec()
    assert [i.name for i in spec.description.input] == ["images"]
    assert [o.name for o in spec.description.output] == ["probabilities"]
    assert _check(tmp_path / "cml")["measured"] is False


def test_int8_needs_images_and_a_format_that_takes_it(trained_model, tmp_path, run_cli):
    model_dir, valid = trained_model
    code, _, err = run_cli("export", model_dir, tmp_path / "a", "--int8")
    assert code == 1 and "calibrated on images of your own" in err and "--images" in err
    code, _, err = run_cli("export", model_dir, tmp_path / "b", "--int8", "--format", "torchscript", "--images", valid)
    assert code == 1 and "--int8 applies to onnx and openvino" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_int8_calibrates_on_many_batches_of_a_plain_folder(trained_model, tmp_path, run_cli):
    """ONNX Runtime's calibration merged every 4 batches dropped them instead: 8 batches calibrated nothing."""
    model_dir, _ = trained_model
    photos = make_color_classes(tmp_path / "photos", 22)  # 66 images, 64 of them (8 batches) calibrate
    code, out, err = run_cli(
        "export", model_dir, tmp_path / "int8", "--int8", "--images", photos, "--calibration-images", "64"
    )
    assert code == 0, err
    check = _check(tmp_path / "int8")
    # checked on the two images calibration did not see
    assert check["calibration_images"] == 64 and check["images"] == check["labeled_images"] == 2
    assert check["checked_on_calibration_images"] is False
    assert f"on 2 images of {photos}" in out


@pytest.mark.parametrize("int8", [[], ["--int8"]])
def test_a_broken_check_image_is_named_and_nothing_is_written(trained_model, tmp_path, run_cli, int8):
    model_dir, _ = trained_model
    folder = tmp_path / "photos" / "red"
    folder.mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 30, 30)).save(folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    code, _, err = run_cli("export", model_dir, tmp_path / "out", *int8, "--images", tmp_path / "photos")
    assert code == 1 and "broken.jpg" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_every_backend_gives_torchs_labels(trained_model, tmp_path, run_cli):
    model_dir, valid = trained_model
    scores = {}
    for backend in ("torch", "onnxruntime", "openvino", "auto"):
        out = tmp_path / f"{backend}.csv"
        code, _, err = run_cli(
            "score",
            "--model",
            model_dir,
            "--data",
            valid,
            "--out",
            out,
            "--backend",
            backend,
            "--device",
            "cpu",
            *(["--precision", "fp32"] if backend == "torch" else []),
        )
        assert code == 0, err
        assert ("backend auto:" if backend == "auto" else f"scoring with {backend}") in err or backend == "torch"
        with open(out, newline="") as f:
            scores[backend] = list(csv.DictReader(f))
    for backend, rows in scores.items():
        assert [r["Scored Labels"] for r in rows] == [r["Scored Labels"] for r in scores["torch"]], backend
        columns = [c for c in rows[0] if c.startswith("Scored Probabilities")]
        got = np.array([[float(r[c]) for c in columns] for r in rows])
        want = np.array([[float(r[c]) for c in columns] for r in scores["torch"]])
        # fp32 runtimes: float rounding (measured 3e-7); auto may keep torch at bf16 (measured 2.2e-3)
        assert np.abs(got - want).max() <= (1e-4 if backend != "auto" else 2e-2), backend


def test_backends_refuse_what_they_cannot_do(trained_model, run_cli, tmp_path):
    model_dir, valid = trained_model
    with pytest.raises(imgtrain.ParameterError, match="computes in fp32"):
        imgtrain.load_model(model_dir, device="cpu", precision="bf16", backend="onnxruntime")
    code, _, err = run_cli(
        "score", "--model", model_dir, "--data", valid, "--out", tmp_path / "s.csv", "--backend", "tensorrt"
    )
    assert code == 2 and "invalid choice" in err


def test_serve_scores_with_the_backend_it_was_given(trained_model):
    model_dir, valid = trained_model
    directory = imgtrain.ImageDirectory.open(valid)
    image = directory.root / directory.records[0].path
    with TestClient(create_app(model_dir, ServeConfig(backend="openvino"))) as client:
        answer = client.post("/predict", files={"file": ("a.png", image.read_bytes(), "image/png")})
        assert answer.status_code == 200, answer.text
        assert client.get("/health").json()["backend"] == "openvino"
    prediction = answer.json()["predictions"][0]
    expected = imgtrain.load_model(model_dir, precision="fp32").predict(Image.open(image))
    assert prediction["label"] == expected["label"]
    for cls, p in expected["probabilities"].items():
        assert prediction["probabilities"][cls] == pytest.approx(p, abs=1e-4)


def test_the_check_counts_nan_as_lost_and_ignores_labels_the_model_lacks(trained_model, tmp_path):
    """max() skipped a NaN row, so an export answering NaN showed max |Δp| 0; folders named after no class of the
    model counted as labels, so both accuracies were near 0."""
    from imgtrain.deploy.check import agreement, check_images

    model_dir, valid = trained_model
    trained = imgtrain.open_model_directory(model_dir)
    images = check_images(trained, valid)
    broken = agreement(trained, images, lambda batch: np.full((len(batch), len(trained.classes)), np.nan, "float32"))
    assert broken["non_finite_outputs"] == broken["images"] == broken["labels_changed"] == len(images.read)
    assert broken["max_abs_probability_change"] == 1.0 and broken["accuracy_export"] == 0.0
    json.dumps(broken, allow_nan=False)  # valid JSON
    strangers = tmp_path / "pets"
    for name in ("cat", "dog"):
        (strangers / name).mkdir(parents=True)
        Image.new("RGB", (16, 16), (200, 30, 30)).save(strangers / name / "a.png")
    check = agreement(trained, check_images(trained, strangers), lambda batch: np.zeros((len(batch), 3), "float32"))
    assert check["images"] == 2 and "accuracy_export" not in check
