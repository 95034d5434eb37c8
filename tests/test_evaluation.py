"""Evaluate Model: metrics against hand-computed values, the report files, missing labels."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import imgtrain
from imgtrain import NotLabeledDatasetError
from imgtrain.inference.evaluation import compute_metrics

# 5 images, 3 classes. Predictions (argmax): a, a, b, c, c; truth: a, b, b, c, a.
PROBS = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.1, 0.6]])
TRUTH = np.array([0, 1, 1, 2, 0])


def test_metrics_match_hand_computed_values():
    m = compute_metrics(TRUTH, PROBS, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    # a: predicted twice (1 right), true twice (1 found); b: predicted once (right), true twice; c: predicted twice
    # (1 right), true once.
    assert m["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["b"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["per_class"]["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["macro_avg"]["f1"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert m["weighted_avg"]["recall"] == pytest.approx((2 * 0.5 + 2 * 0.5 + 1 * 1.0) / 5)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.4, 0.8, 0.6, 0.3])))
    assert m["confusion_matrix"]["matrix"] == [[1, 0, 1], [1, 1, 0], [0, 0, 1]]
    assert "top5_accuracy" not in m


def test_top5_accuracy_with_more_than_five_classes():
    probs = np.full((2, 7), 0.1)
    probs[0, 6] = 0.4  # true class 6 ranked first
    probs[1, :5] = [0.2, 0.19, 0.18, 0.17, 0.16]  # true class 6 outside the top 5
    m = compute_metrics(np.array([6, 6]), probs / probs.sum(1, keepdims=True), [str(i) for i in range(7)])
    assert m["top5_accuracy"] == pytest.approx(0.5) and m["accuracy"] == pytest.approx(0.5)


def _write_scores(path, rows, labeled=True):
    columns = (
        ["id", "path", "source"]
        + (["label"] if labeled else [])
        + ["Scored Probabilities_a", "Scored Probabilities_b", "Scored Probabilities_c", "Scored Labels", "error"]
    )
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v for k, v in row.items() if k in columns})
    return path


def _rows():
    rows = []
    for i, (p, t) in enumerate(zip(PROBS, TRUTH, strict=True)):
        rows.append(
            {
                "id": i,
                "path": f"/nowhere/{i}.png",
                "source": f"{i}.png",
                "label": "abc"[t],
                "Scored Probabilities_a": p[0],
                "Scored Probabilities_b": p[1],
                "Scored Probabilities_c": p[2],
                "Scored Labels": "abc"[int(p.argmax())],
                "error": "",
            }
        )
    return rows


def test_expected_calibration_error_against_hand_computed_values():
    """PROBS' top-1 confidences 0.7, 0.5, 0.8, 0.6, 0.6 (bins of width 1/15): 0.7 right, 0.5 wrong, 0.8 right, and
    0.6 twice with one right: ECE = (0.3 + 0.5 + 0.2 + 2 x 0.1) / 5."""
    m = compute_metrics(TRUTH, PROBS, ["a", "b", "c"])
    assert m["calibration"]["ece"] == pytest.approx((0.3 + 0.5 + 0.2 + 2 * 0.1) / 5)
    filled = [b for b in m["calibration"]["bins"] if b["images"]]
    assert [(b["images"], b["accuracy"]) for b in filled] == [(1, 0.0), (2, 0.5), (1, 1.0), (1, 1.0)]
    assert len(m["calibration"]["bins"]) == 15 and sum(b["images"] for b in m["calibration"]["bins"]) == 5


def test_overconfidence_shows_as_a_large_calibration_error(run_cli, tmp_path):
    """Half right at 0.99 confidence: ECE 0.49, in metrics.json, the summary and a reliability diagram."""
    truth = np.array([0, 1] * 10)
    probs = np.tile([[0.99, 0.01]], (20, 1))
    assert compute_metrics(truth, probs, ["a", "b"])["calibration"]["ece"] == pytest.approx(0.49)
    calibrated = np.array([[0.5, 0.5]] * 20)
    assert compute_metrics(truth, calibrated, ["a", "b"])["calibration"]["ece"] == pytest.approx(0.0)
    lines = ["id,path,source,label,Scored Probabilities_a,Scored Probabilities_b,Scored Labels"]
    lines += [f"{i},{i}.png,{i}.png,{'ab'[t]},0.99,0.01,a" for i, t in enumerate(truth)]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    code, out, _ = run_cli("evaluate", "--scores", tmp_path / "s.csv", "--out", tmp_path / "r")
    assert code == 0 and "calibration error: 0.4900" in out
    assert (tmp_path / "r" / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_report_files_and_unscored_rows(tmp_path):
    rows = _rows() + [{"id": 9, "path": "x", "source": "x", "label": "a", "Scored Labels": "", "error": "broken"}]
    metrics = imgtrain.evaluate(_write_scores(tmp_path / "s.csv", rows), tmp_path / "report")
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "confusion_matrix.json",
        "confusion_matrix.png",
        "metrics.json",
        "most_confident_errors.png",
        "reliability.png",
    ]
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert saved["accuracy"] == pytest.approx(0.6) and saved["unscored"] == 1 and saved["images"] == 5
    assert json.loads((tmp_path / "report" / "confusion_matrix.json").read_text())["classes"] == ["a", "b", "c"]
    assert metrics["format_version"] == 1


def test_true_label_unknown_to_the_model_counts_as_wrong(tmp_path):
    rows = _rows()
    rows[0]["label"] = "zebra"
    metrics = imgtrain.evaluate(_write_scores(tmp_path / "s.csv", rows), tmp_path / "report")
    assert metrics["accuracy"] == pytest.approx(2 / 5)
    assert metrics["confusion_matrix"]["classes"] == ["a", "b", "c", "zebra"]
    assert math.isfinite(metrics["log_loss"])


def test_labels_the_model_does_not_know_are_named_in_the_log_and_the_summary(run_cli, tmp_path, caplog):
    rows = _rows()
    rows[0]["label"] = rows[1]["label"] = "zebra"
    code, out, err = run_cli(
        "evaluate", "--scores", _write_scores(tmp_path / "s.csv", rows), "--out", tmp_path / "report"
    )
    assert code == 0
    assert "2 rows" in err and "zebra" in err and "no class for" in err
    assert "unknown labels:    2 images" in out and "zebra" in out
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["unknown_labels"] == {"zebra": 2}
    assert "unknown_labels" not in imgtrain.evaluate(_write_scores(tmp_path / "t.csv", _rows()), tmp_path / "r2")


def test_a_perfect_confident_model_prints_a_log_loss_of_zero_not_minus_zero(run_cli, tmp_path):
    lines = [
        "id,path,source,label,Scored Probabilities_a,Scored Probabilities_b,Scored Labels",
        "0,0.png,0.png,a,1.0,0.0,a",
        "1,1.png,1.png,b,0.0,1.0,b",
    ]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    code, out, _ = run_cli("evaluate", "--scores", tmp_path / "s.csv", "--out", tmp_path / "report")
    assert code == 0 and "log loss:          0.0000" in out and "-0.0" not in out
    assert math.copysign(1, json.loads((tmp_path / "report" / "metrics.json").read_text())["log_loss"]) == 1


def test_scores_without_labels_say_what_is_needed(tmp_path):
    path = _write_scores(tmp_path / "s.csv", _rows(), labeled=False)
    with pytest.raises(NotLabeledDatasetError, match="labeled image directory"):
        imgtrain.evaluate(path, tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_not_a_scores_file(tmp_path):
    (tmp_path / "s.csv").write_text("a,b\n1,2\n")
    with pytest.raises(imgtrain.InvalidDatasetError, match="imgtrain score"):
        imgtrain.evaluate(tmp_path / "s.csv", tmp_path / "report")


def test_score_then_evaluate_through_the_cli(run_cli, trained_model, tmp_path):
    model, valid = trained_model
    assert run_cli("score", "--model", model, "--data", valid, "--out", tmp_path / "s.jsonl")[0] == 0
    code, out, err = run_cli("evaluate", "--scores", tmp_path / "s.jsonl", "--out", tmp_path / "report")
    assert code == 0, err
    assert "accuracy:" in out and "macro avg:" in out and str(tmp_path / "report") in out


def test_imbalanced_classes_lead_the_summary_with_per_class_recall(run_cli, tmp_path):
    """10:1 and every image called the majority: accuracy 0.91 looks fine; the first line after the count says
    the minority's recall is 0."""
    truth = np.array([0] * 20 + [1] * 2)
    lines = ["id,path,source,label,Scored Probabilities_major,Scored Probabilities_minor,Scored Labels"]
    lines += [f"{i},{i}.png,{i}.png,{['major', 'minor'][t]},0.8,0.2,major" for i, t in enumerate(truth)]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    code, out, _ = run_cli("evaluate", "--scores", tmp_path / "s.csv", "--out", tmp_path / "r")
    assert code == 0
    assert out.splitlines()[1] == (
        "classes imbalanced 10.0:1; macro recall (balanced accuracy) 0.5000; recall per class: major 1.000, minor 0.000"
    )
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["imbalance_ratio"] == 10.0
    balanced = compute_metrics(np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]]), ["a", "b"])
    assert balanced["imbalance_ratio"] == 1.0
