"""A multi-label model in use (issue 28): score (lists in JSON lines, joined by ';' in CSV; --threshold), evaluate
(micro / macro F1, mAP, Hamming loss, exact match, per class), serve (lists), export (sigmoid, thresholds) and
Grad-CAM per given class."""

from __future__ import annotations

import base64
import csv
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sklearn import metrics as sk

import imgtrain
from imgtrain import ParameterError
from imgtrain.deploy.export import export_model
from imgtrain.deploy.exported import preprocess
from imgtrain.inference.evaluation import evaluate, summary
from imgtrain.inference.multilabel_metrics import average_precision
from imgtrain.inference.scoring import score_to_file
from imgtrain.serving.serve import ServeConfig, create_app

CLASSES = ["blue", "green", "red"]


@pytest.fixture(scope="module")
def scored(multilabel_data, multilabel_model, tmp_path_factory):
    """(model dir, valid dir, JSON-lines scores, CSV scores) of the validation images."""
    _, _, valid, _ = multilabel_data
    model = multilabel_model[0]
    root = tmp_path_factory.mktemp("multilabel-scores")
    jsonl, _ = score_to_file(model, valid, root / "scores.jsonl", progress=False)
    table, _ = score_to_file(model, valid, root / "scores.csv", progress=False)
    return model, valid, jsonl, table


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scores_give_each_class_its_probability_and_the_classes_over_their_thresholds(scored):
    model, valid, jsonl, table = scored
    thresholds = imgtrain.open_model_directory(model).thresholds
    truth = {r.id: r.label for r in imgtrain.ImageDirectory.open(valid)}
    rows = _jsonl(jsonl)
    assert len(rows) == 24
    for row in rows:
        probabilities = [row[f"Scored Probabilities_{c}"] for c in CLASSES]
        assert all(0 <= p <= 1 for p in probabilities)
        assert row["Scored Labels"] == [c for c, p, t in zip(CLASSES, probabilities, thresholds, strict=True) if p >= t]
        assert row["labels"] == truth[row["id"]]
    # sigmoids, not a softmax: the probabilities of an image do not share one unit
    assert not all(np.isclose(sum(r[f"Scored Probabilities_{c}"] for c in CLASSES), 1.0) for r in rows)
    with table.open(newline="") as f:
        cells = list(csv.DictReader(f))
    assert [c["Scored Labels"] for c in cells] == [";".join(r["Scored Labels"]) for r in rows]
    assert [c["labels"] for c in cells] == [";".join(r["labels"]) for r in rows]


def test_one_threshold_for_every_class_replaces_the_model_s_own(scored, run_cli, tmp_path):
    model, valid, jsonl, _ = scored
    code, out, _ = run_cli(
        "score", "--model", str(model), "--data", str(valid), "--out", str(tmp_path / "s.jsonl"), "--threshold", "0.3"
    )
    assert code == 0, out
    for row in _jsonl(tmp_path / "s.jsonl"):
        assert row["Scored Labels"] == [c for c in CLASSES if row[f"Scored Probabilities_{c}"] >= 0.3]
    # min_confidence belongs to single-label models, --threshold to multi-label ones: each refused on the other
    args = ("score", "--model", str(model), "--data", str(valid), "--out", str(tmp_path / "t.csv"))
    code, _, err = run_cli(*args, "--min-confidence", "0.5")
    assert code == 1 and "min_confidence applies to single-label models" in err
    with pytest.raises(ParameterError, match="threshold must be a number between 0 and 1"):
        imgtrain.load_model(model, threshold=1.0)


def test_a_single_label_model_refuses_a_threshold(trained_model):
    with pytest.raises(ParameterError, match="threshold applies to multi-label models"):
        imgtrain.load_model(trained_model[0], threshold=0.5)


def test_evaluate_reports_the_multilabel_metrics_as_scikit_learn_computes_them(scored, tmp_path):
    model, _, jsonl, table = scored
    rows = _jsonl(jsonl)
    truth = np.array([[c in r["labels"] for c in CLASSES] for r in rows])
    given = np.array([[c in r["Scored Labels"] for c in CLASSES] for r in rows])
    probs = np.array([[r[f"Scored Probabilities_{c}"] for c in CLASSES] for r in rows])
    metrics = evaluate(table, tmp_path / "report")  # the CSV's cells read back as the JSON lines' lists
    assert metrics["task"] == "multilabel" and metrics["images"] == 24
    assert metrics["subset_accuracy"] == pytest.approx(sk.accuracy_score(truth, given))
    assert metrics["hamming_loss"] == pytest.approx(sk.hamming_loss(truth, given))
    for average in ("micro", "macro"):
        for name, measure in (("precision", sk.precision_score), ("recall", sk.recall_score), ("f1", sk.f1_score)):
            expected = measure(truth, given, average=average, zero_division=0)
            assert metrics[f"{average}_avg"][name] == pytest.approx(expected)
    expected_ap = sk.average_precision_score(truth, probs, average=None)
    assert [metrics["per_class"][c]["average_precision"] for c in CLASSES] == pytest.approx(expected_ap)
    assert metrics["mean_average_precision"] == pytest.approx(expected_ap.mean())
    confusion = sk.multilabel_confusion_matrix(truth, given)
    saved = json.loads((tmp_path / "report" / "confusion_matrix.json").read_text())
    assert [saved["per_class"][c] for c in CLASSES] == confusion.tolist()
    assert saved["co_occurrence"]["matrix"] == (truth.T.astype(int) @ given.astype(int)).tolist()
    written = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"metrics.json", "precision_recall.png", "class_confusion.png", "co_occurrence.png"} <= written
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["micro_avg"] == metrics["micro_avg"]
    text = summary(metrics)
    for words in ("exact match", "hamming loss", "mAP", "micro avg", "macro avg"):
        assert words in text


def test_average_precision_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.integers(0, 5, 30) / 4  # many ties
        positive = rng.random(30) < 0.3
        if positive.any():
            assert average_precision(scores, positive) == pytest.approx(sk.average_precision_score(positive, scores))
    assert average_precision(np.array([0.2, 0.9]), np.array([False, False])) is None


def test_the_endpoint_answers_lists_and_its_thresholds(scored, multilabel_data):
    model, valid, jsonl, _ = scored
    loaded = imgtrain.load_model(model, precision="fp32")
    directory = imgtrain.ImageDirectory.open(valid)
    png = (directory.root / directory.records[0].path).read_bytes()
    with TestClient(create_app(loaded, ServeConfig())) as client:
        health = client.get("/health").json()
        assert health["task"] == "multilabel" and len(health["thresholds"]) == 3
        answer = client.post("/predict", files={"file": ("a.png", png, "image/png")}).json()["predictions"][0]
        expected = loaded.predict(directory.root / directory.records[0].path)
        assert answer["label"] == expected["label"] and isinstance(answer["label"], list)
        assert "best_guess" not in answer
        designer = client.post(
            "/predict", json={"Inputs": {"WebServiceInput0": [{"image": base64.b64encode(png).decode()}]}}
        ).json()
        assert designer["Results"]["WebServiceOutput0"][0]["Scored Labels"] == expected["label"]
    with TestClient(create_app(imgtrain.load_model(model, precision="fp32"), ServeConfig(threshold=0.01))) as client:
        low = client.post("/predict", files={"file": ("a.png", png, "image/png")}).json()["predictions"][0]
        assert low["label"] == [c for c in CLASSES if low["probabilities"][c] >= 0.01]


def test_the_onnx_export_gives_each_class_its_sigmoid_and_carries_the_thresholds(scored, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, valid, _, _ = scored
    out = export_model(model, tmp_path / "export", images=valid).path
    meta = json.loads((out / "imgtrain-export.json").read_text())
    # the check compares each image's set of classes over their thresholds; no single-label accuracy
    assert meta["check"]["label_agreement"] == 1.0 and "accuracy_export" not in meta["check"]
    assert meta["check"]["images"] == len(imgtrain.ImageDirectory.open(valid))
    trained = imgtrain.open_model_directory(model)
    assert meta["output"]["task"] == "multilabel"
    assert meta["output"]["thresholds"] == dict(zip(CLASSES, trained.thresholds, strict=True))
    directory = imgtrain.ImageDirectory.open(valid)
    images = [Image.open(directory.root / r.path) for r in directory.records[:6]]
    session = ort.InferenceSession(str(out / "model.onnx"))
    exported = session.run(None, {"images": np.stack([preprocess(trained, im) for im in images])})[0]
    loaded = imgtrain.load_model(model, precision="fp32")
    library = [list(loaded.predict(im)["probabilities"].values()) for im in images]
    assert exported == pytest.approx(np.array(library), abs=1e-4)


def test_explanations_give_a_heatmap_per_class_given(scored, tmp_path):
    pytest.importorskip("captum")
    model, valid, _, _ = scored
    document = imgtrain.explain(model, valid, tmp_path / "why", errors=3, correct=2, progress=False)
    rows = {r["id"]: r for r in _jsonl(scored[2])}
    by_image: dict[int, list[str]] = {}
    for entry in document["images"]:
        by_image.setdefault(entry["id"], []).append(entry["predicted"])
        assert entry["heatmap"] == f"{entry['id']}/{entry['predicted']}"
    for image, explained in by_image.items():
        given = rows[image]["Scored Labels"]
        assert explained == (given or [max(CLASSES, key=lambda c: rows[image][f"Scored Probabilities_{c}"])])
    from safetensors.numpy import load_file

    heatmaps = load_file(tmp_path / "why" / "heatmaps.safetensors")
    assert set(heatmaps) == {e["heatmap"] for e in document["images"]}
    assert len(by_image) == 5


def test_a_jsonl_manifest_of_label_lists_goes_through_every_command(run_cli, tmp_path):
    from conftest import make_composites

    rows = make_composites(tmp_path / "src", 60, seed=11)
    (tmp_path / "src" / "tags.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    w = str(tmp_path)
    steps = [
        ("convert", f"{w}/src/tags.jsonl", f"{w}/images"),
        ("split", f"{w}/images", f"{w}/train", f"{w}/valid", "--fraction", "0.75"),
        ("transform", "init", f"{w}/spec.json", "--no-resize", "--no-center-crop", "--no-random-horizontal-flip"),
        ("resnet", f"{w}/untrained", "--model-name", "resnet18", "--no-pretrained"),
        ("train", "--model", f"{w}/untrained", "--train", f"{w}/train", "--valid", f"{w}/valid", "--out", f"{w}/model")
        + ("--transform", f"{w}/spec.json", "--epochs", "2", "--batch-size", "8", "--learning-rate", "0.05"),
        ("score", "--model", f"{w}/model", "--data", f"{w}/valid", "--out", f"{w}/scores.csv"),
        ("evaluate", "--scores", f"{w}/scores.csv", "--out", f"{w}/report", "--model", f"{w}/model"),
        ("export", f"{w}/model", f"{w}/onnx"),
    ]
    printed = {}
    for step in steps:
        code, printed[step[0]], err = run_cli(*step)
        assert code == 0, (step[0], printed[step[0]], err[-2000:])
    assert "exact match" in printed["evaluate"] and "mAP" in printed["evaluate"]
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["images"] == 15 and {"micro_avg", "macro_avg", "mean_average_precision"} <= set(metrics)
    assert json.loads((tmp_path / "onnx" / "imgtrain-export.json").read_text())["output"]["task"] == "multilabel"
    assert (tmp_path / "report" / "explanations" / "heatmaps.safetensors").is_file()
    with TestClient(create_app(imgtrain.load_model(tmp_path / "model"), ServeConfig())) as client:
        png = (tmp_path / "src" / rows[0]["path"]).read_bytes()
        answer = client.post("/predict", files={"file": ("a.png", png, "image/png")}).json()["predictions"][0]
        assert set(answer["label"]) <= {"blue", "green", "red"}
