"""imgtrain export: ONNX and TorchScript models give imgtrain's own probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import imgtrain
from imgtrain.deploy.export import export_model
from imgtrain.deploy.exported import preprocess


def _images(valid, n=4):
    directory = imgtrain.ImageDirectory.open(valid)
    return [Image.open(directory.root / r.path) for r in list(directory)[:n]]


def _expected(model_dir, images):
    model = imgtrain.load_model(model_dir, precision="fp32")  # exported models compute in float32
    return np.array([[p["probabilities"][c] for c in model.classes] for p in model.predict(images)])


def test_onnx_export_matches_imgtrains_predictions(trained_model, tmp_path, run_cli):
    import onnxruntime

    model_dir, valid = trained_model
    code, out, err = run_cli("export", model_dir, tmp_path / "onnx", "--format", "onnx")
    assert code == 0, err
    meta = json.loads((tmp_path / "onnx" / "imgtrain-export.json").read_text())
    assert meta["classes"] == ["blue", "green", "red"] and meta["input"]["range"] == [0, 1]
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    images = _images(valid)
    trained = imgtrain.open_model_directory(model_dir)
    batch = np.stack([preprocess(trained, img) for img in images])
    (probs,) = session.run(None, {"images": batch})
    # float32 both ways, different kernels: measured 6.0e-8 (AVX-512) and 1.2e-7 (AVX2 emulated); bound ~800x
    assert np.abs(probs - _expected(model_dir, images)).max() <= 1e-4
    classes = {p.key: p.value for p in __import__("onnx").load(str(tmp_path / "onnx" / "model.onnx")).metadata_props}
    assert classes["imgtrain.classes"].split("\n") == meta["classes"]


def test_torchscript_export_matches_imgtrains_predictions(trained_model, tmp_path):
    model_dir, valid = trained_model
    export_model(model_dir, tmp_path / "ts", fmt="torchscript")
    loaded = torch.jit.load(str(tmp_path / "ts" / "model.pt"))
    images = _images(valid)
    trained = imgtrain.open_model_directory(model_dir)
    with torch.inference_mode():
        probs = loaded(torch.from_numpy(np.stack([preprocess(trained, img) for img in images]))).numpy()
    assert np.abs(probs - _expected(model_dir, images)).max() <= 1e-4  # measured 1.2e-7 and 8.9e-8, as ONNX's


def test_export_refuses_what_is_not_a_trained_model(small_training_data, tmp_path, run_cli):
    code, _, err = run_cli("export", small_training_data[0], tmp_path / "x")
    assert code == 1 and "InvalidModelDirectoryError" in err
    with pytest.raises(imgtrain.ParameterError, match="format"):
        export_model(small_training_data[0], tmp_path / "y", fmt="tflite")
    assert not (tmp_path / "x").exists()
