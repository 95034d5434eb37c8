"""The checks of a run's data that can run before any work (prechecks), each at the node and field that fixes it:
unreadable images (tick skip_invalid), missing pretrained weights (untick pretrained), a batch larger than the
training images, validation classes that training lacks. The facts found (counts per class) go to the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from ..data.split import split_indices
from ..errors import ImgtrainError
from .graph import MODEL_MODULES, TRAINING_MODULES, Problem, resolve
from .prechecks import batch_problem, classes_problem, scan_source, unreadable_problem, weights_problem

T = TypeVar("T")


def check_data(root: Path, graph: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """(facts of each image-giving output, the problems found) of a graph whose structure and parameters passed."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    classes: dict[str, dict[str, int] | None] = {}  # "node.port" -> images per class (None: unknown or unlabeled)
    sizes: dict[str, int] = {}  # "node.port" -> images of multi-label data (its classes overlap: no sum gives this)
    facts: dict[str, Any] = {}
    problems: list[Problem] = []
    for node in graph["nodes"]:
        node_id, module, params = node["id"], node["module"], node["params"]
        if module == "convert":
            counts = _scanned(root, node, facts, problems)
            if facts.get(node_id, {}).get("multilabel"):
                sizes[f"{node_id}.images"] = facts[node_id]["images"]
            else:
                classes[f"{node_id}.images"] = counts
        elif module == "split":
            found = _images_of(node, "images", nodes, classes)
            classes[f"{node_id}.train"], classes[f"{node_id}.valid"] = _split_counts(found, params)
            if (total := _images_of(node, "images", nodes, sizes)) is not None:  # the split's sizes, as it draws them
                sizes[f"{node_id}.train"] = len(
                    split_indices([None] * total, params["fraction"], params["seed"], False)
                )
                sizes[f"{node_id}.valid"] = total - sizes[f"{node_id}.train"]
        elif module in MODEL_MODULES and params["pretrained"]:
            if problem := weights_problem(MODEL_MODULES[module], params["model_name"]):
                problems.append(Problem(node_id, "pretrained", problem))
        elif module in TRAINING_MODULES:
            train = _images_of(node, "train", nodes, classes)
            valid = _images_of(node, "valid", nodes, classes)
            train_images = sum(train.values()) if train is not None else _images_of(node, "train", nodes, sizes)
            fixed = module == "train" or "batch_size" not in str(params["search"])  # a searched one may fail a trial
            if fixed and train_images is not None and (problem := batch_problem(params["batch_size"], train_images)):
                problems.append(Problem(node_id, "batch_size", problem))
            if train is not None and valid is not None and (problem := classes_problem(train, valid)):
                problems.append(Problem(node_id, None, problem))
    return facts, problems


def _scanned(root: Path, node: dict[str, Any], facts: dict[str, Any], problems: list[Problem]) -> dict | None:
    """The class counts of a convert node's source (None when unlabeled or unreadable), its facts recorded."""
    source = node["params"]["source"]
    try:
        found = scan_source(root / source)
    except ImgtrainError as exc:
        problems.append(Problem(node["id"], "source", str(exc)))
        return None
    facts[node["id"]] = {
        "images": found.images,
        "classes": found.classes,
        "labeled": found.labeled,
        "unreadable": found.unreadable,
        "unreadable_count": found.unreadable_count,
        "ignored": found.ignored,
        "multilabel": found.multilabel,
    }
    if problem := unreadable_problem(found, node["params"]["skip_invalid"], source):
        problems.append(Problem(node["id"], "skip_invalid", problem))
    return dict(found.classes) if found.labeled else None


def _images_of(node: dict[str, Any], port: str, nodes: dict[str, Any], known: dict[str, T]) -> T | None:
    """What `known` says of the output feeding `node`'s input `port`."""
    found = resolve(node["inputs"][port], nodes)
    return known.get(f"{found[0]}.{found[1]}") if found else None


def _split_counts(counts: dict[str, int] | None, params: dict[str, Any]) -> tuple[dict | None, dict | None]:
    """Each part's images per class, as split will draw them (split_indices, the same arithmetic)."""
    if counts is None:
        return None, None
    labels = [label for label, n in sorted(counts.items()) for _ in range(n)]
    first = set(split_indices(labels, params["fraction"], params["seed"], params["stratify"]))
    train: dict[str, int] = dict.fromkeys(counts, 0)
    valid: dict[str, int] = dict.fromkeys(counts, 0)
    for i, label in enumerate(labels):
        (train if i in first else valid)[label] += 1
    return train, valid
