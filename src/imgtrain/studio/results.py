"""What the studio shows of a run: its summary (for the runs' table), its layout and curves, and each node's output
as a readable panel (counts and thumbnails, a model card, a scores table, the evaluation's parts)."""

from __future__ import annotations

import csv
import itertools
import json
import urllib.parse
from pathlib import Path
from typing import Any

from ..config import LABEL_SEPARATOR, PROBABILITY_PREFIX, SCORED_LABELS
from ..data.image_directory import ImageDirectory, label_list
from .events import read_events
from .graph import MODEL_MODULES, MODULES, resolve, run_graph
from .pipeline import LAYOUT, MODEL_META, initial_layout
from .registry import run_folder_name
from .runner import BadRequest
from .sweep import sweep_panel

STOPPED_NOTE = "stopped — Resume continues"
#: How many rows of a scores file, images of a directory and batch points the page is given at most.
SCORE_ROWS, SAMPLES, MAX_BATCH_POINTS = 50, 12, 2000


def run_layout(root: Path, folder: Path, graph: dict[str, Any]) -> dict[str, Any]:
    """Each node's state and outputs as the worker last wrote them; all queued before it started."""
    try:
        return json.loads((folder / LAYOUT).read_text())
    except (OSError, ValueError):
        return initial_layout(root, folder, graph)


def run_summary(root: Path, run: dict[str, Any]) -> dict[str, Any]:
    """A run as the runs' table shows it: status, when, how long, and each training node's model and settings."""
    folder = root / run_folder_name(run["id"])
    graph = run_graph(run)
    return _summary(run, graph, run_layout(root, folder, graph), epoch_history(read_events(folder)))


def _summary(
    run: dict[str, Any], graph: dict[str, Any], layout: dict[str, Any], history: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    started = [n["started"] for n in layout["nodes"].values() if n.get("started")]
    ended = [n["ended"] for n in layout["nodes"].values() if n.get("ended")]
    return {
        "id": run["id"],
        "created": run["created"],
        "status": run["status"],
        "error": run["error"],
        "note": STOPPED_NOTE if run["status"] == "stopped" else None,
        "request": graph,
        "folder": run_folder_name(run["id"]),
        "started": min(started, default=None),
        "ended": max(ended, default=None) if run["status"] not in ("queued", "running") else None,
        "best_accuracy": max((row["val_top1"] for rows in history.values() for row in rows), default=None),
        "summary": _training_summary(graph, history),
    }


def _training_summary(graph: dict[str, Any], history: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per training node: the network it trains and the settings that tell two runs apart."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    summary = {}
    for node in graph["nodes"]:
        if node["module"] != "train":
            continue
        model = nodes.get(str(node["inputs"].get("model", "")).partition(".")[0], {})
        params = node["params"]
        rows = history.get(node["id"], [])
        summary[node["id"]] = {
            "model": model.get("params", {}).get("model_name"),
            "pretrained": model.get("params", {}).get("pretrained"),
            "epochs": params.get("epochs"),
            "lr": params.get("learning_rate", params.get("lr")),
            "batch_size": params.get("batch_size"),
            "best_accuracy": max((r["val_top1"] for r in rows), default=None),
            "epochs_done": len(rows),
        }
    return summary


def epoch_history(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each training node's epoch rows among a run's events (a validated epoch has val_top1)."""
    history: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("kind") == "epoch" and event.get("val_top1") is not None:
            history.setdefault(event.get("node") or "train", []).append(event)
    return history


def batch_history(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each training node's batch losses among a run's events, thinned evenly to MAX_BATCH_POINTS for a long run."""
    batches: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("kind") == "progress" and "batch" in event:
            batches.setdefault(event.get("node") or "train", []).append(event)
    return {node: rows[:: max(1, len(rows) // MAX_BATCH_POINTS)] for node, rows in batches.items()}


def run_details(root: Path, run: dict[str, Any]) -> dict[str, Any]:
    """The run's summary, its layout (each node's state and outputs) and its curves: its files read once each."""
    folder = root / run_folder_name(run["id"])
    graph = run_graph(run)
    layout = run_layout(root, folder, graph)
    events = read_events(folder)
    history = epoch_history(events)
    return {
        **_summary(run, graph, layout, history),
        "layout": layout,
        "history": history,
        "batches": batch_history(events),
    }


def node_output(root: Path, run: dict[str, Any], node_id: str) -> dict[str, Any]:
    """What one node wrote, as its panel shows it; 404 for no such node, 409 before it is done."""
    graph = run_graph(run)
    node = next((n for n in graph["nodes"] if n["id"] == node_id), None)
    if node is None:
        raise BadRequest(404, f"run {run['id']} has no node {node_id!r}.")
    layout = run_layout(root, root / run_folder_name(run["id"]), graph)
    entry = layout["nodes"].get(node_id, {})
    outputs = {port: root / path for port, path in entry.get("outputs", {}).items()}
    module = node["module"]
    if module == "sweep" and (entry.get("status") == "done" or (outputs["model"].parent / "trials.json").is_file()):
        return _sweep(outputs["model"], node["params"], entry.get("status", "queued"))
    if entry.get("status") != "done":
        raise BadRequest(409, f"{MODULES[node['module']].title} ({node_id}) has not produced its output yet.")
    if module in ("convert", "split"):
        return {"kind": "images", "parts": {port: _images(root, path) for port, path in outputs.items()}}
    if module == "transform":
        return {"kind": "transform", "steps": json.loads(outputs["transform"].read_text()).get("transforms", {})}
    if module in MODEL_MODULES or module == "train":
        return _model_card(outputs["model"], trained=module == "train")
    if module == "score":
        return _scores(outputs["scores"])
    return _evaluation(root, run["id"], node, graph, layout)


def _sweep(best: Path, params: dict[str, Any], status: str) -> dict[str, Any]:
    """A sweep box's trials so far (while it runs, too), and once it is done its output: the best trial's model."""
    panel = {**sweep_panel(best.parent, params), "status": status, "card": [], "classes": []}
    if status == "done":
        model = _model_card(best, trained=True)
        panel.update(card=model["card"], classes=model["classes"])
    return panel


def image_url(root: Path, path: Path) -> str:
    """The URL the page shows an image under the root with."""
    return "/api/image?path=" + urllib.parse.quote(str(path.relative_to(root)))


def _images(root: Path, path: Path) -> dict[str, Any]:
    directory = ImageDirectory.open(path)
    records = list(directory.records)
    if directory.labeled:  # a few of each class, so every class shows
        by_class = {c: [r for r in records if c in label_list(r.label)][:3] for c in directory.classes}
        records = [r for r in itertools.chain(*itertools.zip_longest(*by_class.values())) if r is not None]
    return {
        "images": len(directory),
        "labeled": directory.labeled,
        "classes": directory.class_counts() if directory.labeled else {},
        "samples": [{"label": r.label, "url": image_url(root, path / r.path)} for r in records[:SAMPLES]],
    }


def _model_card(path: Path, trained: bool) -> dict[str, Any]:
    meta = json.loads((path / MODEL_META).read_text())  # validated when it was written; only shown here
    architecture = meta.get("architecture") or {}
    card: list[list[Any]] = [
        ["network", architecture.get("model_name")],
        ["family", architecture.get("family")],
        ["pretrained", "yes" if meta.get("pretrained", meta.get("training", {}).get("pretrained")) else "no"],
    ]
    if trained:
        training = meta.get("training", {})
        card += [[name.replace("_", " "), value] for name, value in training.items() if not isinstance(value, dict)]
        if meta.get("thresholds"):
            card += [["task", "multi-label: a sigmoid per class, each with its threshold"]]
            card += [
                [f"threshold of {c}", t] for c, t in zip(meta.get("classes", []), meta["thresholds"], strict=False)
            ]
    return {"kind": "trained model" if trained else "untrained model", "card": card, "classes": meta.get("classes", [])}


def _scores(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        columns = next(reader, [])
        rows = list(itertools.islice(reader, SCORE_ROWS))
        total = len(rows) + sum(1 for _ in reader)
    return {"kind": "scores", "columns": columns, "rows": rows, "total": total}


def _evaluation(root: Path, run_id: int, node: dict[str, Any], graph: dict[str, Any], layout: dict[str, Any]) -> dict:
    path = root / layout["nodes"][node["id"]]["outputs"]["evaluation"]
    metrics = json.loads((path / "metrics.json").read_text())
    folder = root / run_folder_name(run_id)
    explanations = sorted((path / "explanations").glob("*.png")) if (path / "explanations").is_dir() else []
    return {
        "kind": "evaluation",
        "metrics": {k: v for k, v in metrics.items() if not isinstance(v, dict | list)},
        "averages": {k: metrics[k] for k in ("micro_avg", "macro_avg", "weighted_avg") if k in metrics},
        "per_class": metrics.get("per_class"),
        "confusion": metrics.get("confusion_matrix"),
        "co_occurrence": metrics.get("co_occurrence"),
        "calibration": metrics.get("calibration"),
        "errors": confident_errors(root, node, graph, layout),
        "explanations": [
            f"/api/runs/{run_id}/files/" + urllib.parse.quote(str(p.relative_to(folder))) for p in explanations
        ],
    }


def confident_errors(
    root: Path, evaluate: dict[str, Any], graph: dict[str, Any], layout: dict[str, Any], count: int = 16
) -> list[dict[str, Any]]:
    """The most confidently wrong predictions of the scores an evaluate node read, each with its image's URL."""
    nodes = {n["id"]: n for n in graph["nodes"]}

    def output(ref: str) -> tuple[dict[str, Any], Path]:
        node_id, port = resolve(ref, nodes) or ("", "")
        return nodes[node_id], root / layout["nodes"][node_id]["outputs"][port]

    score_node, scores = output(evaluate["inputs"]["scores"])
    _, images = output(score_node["inputs"]["images"])
    wrong = []
    with open(scores, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if "labels" in row:  # a multi-label model's: the truth and the answer are ';'-joined classes
                if (confidence := _multilabel_miss(row)) is not None:
                    wrong.append((confidence, {**row, "label": row["labels"]}))
            elif row.get("label") and row.get(SCORED_LABELS) and row["label"] != row[SCORED_LABELS]:
                wrong.append((float(row[PROBABILITY_PREFIX + row[SCORED_LABELS]]), row))
    wrong.sort(key=lambda pair: -pair[0])
    return [
        {
            "url": image_url(root, images / row["path"]) if (images / row["path"]).is_file() else None,
            "true": _shown(row["label"]) if "labels" in row else row["label"],
            "predicted": _shown(row[SCORED_LABELS]) if "labels" in row else row[SCORED_LABELS],
            "probability": probability,
        }
        for probability, row in wrong[:count]
    ]


def _multilabel_miss(row: dict[str, str]) -> float | None:
    """How confident a multi-label row's most confident wrong class was (its probability when given, one minus it
    when missed); None when the row is right or has no score."""
    probability = {k[len(PROBABILITY_PREFIX) :]: v for k, v in row.items() if k.startswith(PROBABILITY_PREFIX)}
    if row.get("error") or "" in probability.values():
        return None
    truth, given = ({c for c in row[key].split(LABEL_SEPARATOR) if c} for key in ("labels", SCORED_LABELS))
    wrong = [
        float(probability[c]) if c in given else 1 - float(probability[c]) for c in truth ^ given if c in probability
    ]
    return max(wrong, default=None)


def _shown(classes: str) -> str:
    """A scores cell as the page shows it: a multi-label answer's classes with commas, none as "none"."""
    return ", ".join(classes.split(LABEL_SEPARATOR)) if classes else "none"
