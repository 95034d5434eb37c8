"""Explanations: Grad-CAM looks where the class is decided, works for every network of the catalog, and
`imgtrain explain` / `evaluate --model` write their files."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from safetensors.numpy import load_file

import imgtrain
from conftest import make_class_folder
from imgtrain import NotLabeledDatasetError, OutputExistsError
from imgtrain.inference.explain import gradcam, head_modules, target_layer_name
from imgtrain.models.catalog import head_keys
from test_catalog import FAMILY_MEMBERS


@pytest.mark.slow  # about 20 s: `make test-slow`, which .ci/run runs after `make test`
def test_gradcam_mass_falls_in_the_corner_that_decides_the_class(bench, tmp_path):
    """Four classes told apart only by the object in the top-left quarter of 128 px images: a resnet18 learns
    the task, and on average at least half of each explained image's Grad-CAM mass lies in that quarter
    (measured 0.62, 0.63 with AVX2 emulated, accuracy 1.0 both, with 40 images per class; a uniform map would give
    0.25)."""
    figures = bench.explain_figures(tmp_path, per_class=40)
    assert figures["accuracy"] >= 0.9, figures
    assert figures["corner_share"] >= 0.5, figures


@pytest.mark.parametrize("name", FAMILY_MEMBERS)
def test_gradcam_runs_on_each_family(name):
    """One network of each family, for real at 224 px (every one of the 78 catalog networks: bench/trust.py
    --only catalog, on the meta device, 23 s)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torchvision.models.get_model(name, weights=None, num_classes=3).eval()
        for key, tensor in net.state_dict().items():  # some heads start at zero, which would explain nothing
            if key in head_keys("torchvision", name) and key.endswith("weight"):
                tensor.normal_(0, 0.1)
    for module in net.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    batch = torch.rand(2, 3, 224, 224)
    layer = target_layer_name(net, batch[:1], head_modules(head_keys("torchvision", name)))
    with torch.no_grad():
        predicted = net(batch).argmax(1).tolist()
    maps = gradcam(net, dict(net.named_modules())[layer], batch, predicted)
    assert maps.shape == (2, 224, 224) and maps.min() >= 0 and maps.max() == pytest.approx(1.0)


def test_explain_and_evaluate_write_their_files(trained_model, run_cli, tmp_path):
    model, valid = trained_model
    code, out, _ = run_cli(
        "explain", "--model", model, "--data", valid, "--out", tmp_path / "x", "--errors", "2", "--correct", "3"
    )
    assert code == 0 and "with Grad-CAM at" in out
    document = json.loads((tmp_path / "x" / "explanations.json").read_text())
    assert document["format"] == "imgtrain.explanations" and document["architecture"] == "resnet18"
    errors = [e for e in document["images"] if e["error"]]
    assert len(errors) <= 2 and len(document["images"]) - len(errors) <= 3 and document["images"]
    assert all(e["label"] != e["predicted"] for e in errors)
    maps = load_file(tmp_path / "x" / "heatmaps.safetensors")
    assert set(maps) == {str(e["id"]) for e in document["images"]}
    for entry in document["images"]:
        assert (tmp_path / "x" / entry["overlay"]).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "x" / "explanations.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = run_cli("explain", "--model", model, "--data", valid, "--out", tmp_path / "x")
    assert code == 1 and "--overwrite" in err
    scores = tmp_path / "scores.csv"
    assert run_cli("score", "--model", model, "--data", valid, "--out", scores)[0] == 0
    code, _, err = run_cli("evaluate", "--scores", scores, "--out", tmp_path / "report", "--model", model)
    assert code == 0 and (tmp_path / "report" / "explanations" / "explanations.json").is_file()
    assert f"to {tmp_path / 'report' / 'explanations'}" in err and ".building-" not in err  # the folder one finds


def test_unlabeled_data_and_an_occupied_output_are_refused(trained_model, tmp_path):
    model, valid = trained_model
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        imgtrain.explain(model, valid, tmp_path / "occupied", progress=False)
    assert (tmp_path / "occupied" / "keep.txt").read_text() == "mine"
    unlabeled = imgtrain.convert(
        make_class_folder(tmp_path / "src", {"a": 3}, size=(16, 16)) / "a", tmp_path / "unlabeled", progress=False
    )
    with pytest.raises(NotLabeledDatasetError):
        imgtrain.explain(model, unlabeled.root, tmp_path / "y", progress=False)
    assert not (tmp_path / "y").exists()
