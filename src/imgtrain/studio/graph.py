"""A studio run as the designer draws it: modules joined by their ports into a graph, checked before any work.

Each module's parameters come from the library's declarations (params.param), as the CLI's options do; a problem
is reported at its node and field, so the page shows it where the user typed. No torch here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import CATALOG_FAMILY, FAMILIES, STUDIO_MODEL, STUDIO_TRAIN_DEFAULTS, TrainConfig, TransformSpec
from ..data.options import ConvertOptions, SplitOptions
from ..errors import ParameterError
from ..params import declared, describe
from .sweep import sweep_parameters, sweep_problems

NODE_ID = re.compile(r"[a-z0-9-]{1,32}")
MAX_NODES = 64
MODEL_MODULES = {"resnet": "resnet", "densenet": "densenet", "catalog": CATALOG_FAMILY}
#: The modules that train a model from an untrained one: Train, and the sweep whose output is its best trial's.
TRAINING_MODULES = ("train", "sweep")

SOURCE_HELP = (
    "what to convert, under the studio's root: a folder whose sub-folders are the classes (deeper folders "
    "belong to their class), a flat folder of images (unlabeled), a .zip/.tar archive of either, a CSV or "
    "JSON-lines manifest, or an image directory"
)
PRETRAINED_HELP = (
    "start from ImageNet weights (downloaded once, hash-checked); untick to train from random weights, "
    "which needs no download"
)


@dataclass(frozen=True)
class Module:
    """One box of the palette: its ports (name -> kind of data) and its parameters' declarations."""

    title: str
    inputs: dict[str, str]
    outputs: dict[str, str]
    params: type | None = None  # a declared parameter dataclass
    optional: tuple[str, ...] = ()


MODULES: dict[str, Module] = {
    "convert": Module("Convert to Image Directory", {}, {"images": "images"}, ConvertOptions),
    "split": Module(
        "Split Image Directory", {"images": "images"}, {"train": "images", "valid": "images"}, SplitOptions
    ),
    "transform": Module("Init Image Transformation", {}, {"transform": "transform"}, TransformSpec),
    "resnet": Module("ResNet", {}, {"model": "untrained model"}),
    "densenet": Module("DenseNet", {}, {"model": "untrained model"}),
    "catalog": Module("Image model (catalog)", {}, {"model": "untrained model"}),
    "train": Module(
        "Train PyTorch Model",
        {"model": "untrained model", "train": "images", "valid": "images", "transform": "transform"},
        {"model": "trained model"},
        TrainConfig,
        optional=("transform",),
    ),
    "sweep": Module(
        "Tune Model Hyperparameters",
        {"model": "untrained model", "train": "images", "valid": "images", "transform": "transform"},
        {"model": "trained model"},
        optional=("transform",),
    ),
    "score": Module("Score Image Model", {"model": "trained model", "images": "images"}, {"scores": "scores"}),
    "evaluate": Module(
        "Evaluate Model",
        {"scores": "scores", "model": "trained model"},
        {"evaluation": "evaluation"},
        optional=("model",),
    ),
}


def model_names(module: str) -> tuple[str, ...]:
    """The networks a model module offers (the catalog's are torchvision's, which loads torch to list)."""
    if module != "catalog":
        return FAMILIES[MODEL_MODULES[module]]
    from ..models.catalog import catalog_names  # here: listing torchvision's networks imports torch

    return tuple(catalog_names())


def parameters(module: str) -> dict[str, dict[str, Any]]:
    """A module's parameters as `/api/parameters` and the CLI's --help describe them (params.describe)."""
    spec = MODULES[module]
    if module in MODEL_MODULES:
        family = MODEL_MODULES[module]
        names = model_names(module)
        default = STUDIO_MODEL["model_name"] if STUDIO_MODEL["model_name"] in names else names[0]
        return {
            "model_name": _described("str", default, f"which {family} network to build", choices=list(names)),
            "pretrained": _described("bool", STUDIO_MODEL["pretrained"], PRETRAINED_HELP),
        }
    if module == "sweep":
        return sweep_parameters()
    described = describe(spec.params, studio_only=True) if spec.params else {}
    if module == "convert":
        described = {"source": _described("path", None, SOURCE_HELP), **described}
    if module == "train":
        for name, value in STUDIO_TRAIN_DEFAULTS.items():
            described[name]["default"] = value
    return described


def _described(kind: str, default: Any, help: str, choices: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": kind,
        "default": default,
        "low": None,
        "high": None,
        "above": False,
        "choices": choices or [],
        "help": help,
        "expected": "one of the listed networks" if choices else "",
    }


def modules() -> dict[str, Any]:
    """The palette as `/api/modules` gives it: every module's ports and parameters, and the designer's pipeline."""
    return {
        "modules": {
            name: {
                "title": m.title,
                "inputs": m.inputs,
                "outputs": m.outputs,
                "optional_inputs": list(m.optional),
                "parameters": parameters(name),
            }
            for name, m in MODULES.items()
        },
        "palette": list(MODULES),
        "default_graph": default_graph(),
    }


def default_graph(source: str | None = None) -> dict[str, Any]:
    """The designer's usual pipeline: convert -> split -> ResNet + transform -> train -> score -> evaluate."""
    nodes: list[dict[str, Any]] = [
        {"id": "convert", "module": "convert", "params": {"source": source} if source else {}},
        {"id": "split", "module": "split", "inputs": {"images": "convert"}},
        {"id": "transform", "module": "transform"},
        {"id": "resnet", "module": "resnet"},
        {
            "id": "train",
            "module": "train",
            "inputs": {"model": "resnet", "train": "split.train", "valid": "split.valid", "transform": "transform"},
        },
        {"id": "score", "module": "score", "inputs": {"model": "train", "images": "split.valid"}},
        {"id": "evaluate", "module": "evaluate", "inputs": {"scores": "score", "model": "train"}},
    ]
    columns = {"convert": 0, "split": 1, "transform": 1, "resnet": 1, "train": 2, "score": 3, "evaluate": 4}
    rows = {"convert": 0, "split": 0, "transform": 1, "resnet": 2, "train": 1, "score": 1, "evaluate": 1}
    positions = {name: [40 + 220 * columns[name], 40 + 120 * rows[name]] for name in columns}
    return {"nodes": nodes, "positions": positions}


@dataclass(frozen=True)
class Problem:
    """What is wrong, where: a node's field, a node as a whole (field None) or the graph (node None)."""

    node: str | None
    field: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"node": self.node, "field": self.field, "message": self.message}


def check_graph(body: Any) -> tuple[dict[str, Any], list[Problem]]:
    """The graph with every node's defaults filled in and its nodes in running order, and what is wrong with it
    (paths are checked against the root by the caller: this knows no files)."""
    if not isinstance(body, dict) or not isinstance(body.get("nodes"), list):
        return {}, [Problem(None, None, "the request must be an object with a list of nodes")]
    unknown = sorted(set(body) - {"nodes", "positions"})
    if unknown:
        return {}, [Problem(None, None, f"unknown fields {unknown}; a run is 'nodes' and, optionally, 'positions'")]
    if not 0 < len(body["nodes"]) <= MAX_NODES:
        return {}, [Problem(None, None, f"a run has 1 to {MAX_NODES} nodes, got {len(body['nodes'])}")]
    problems: list[Problem] = []
    nodes: dict[str, dict[str, Any]] = {}
    for raw in body["nodes"]:
        node = _checked_node(raw, nodes, problems)
        if node is not None:
            nodes[node["id"]] = node
    for node in nodes.values():
        _check_inputs(node, nodes, problems)
    order = _running_order(nodes, problems)
    positions = body.get("positions") or {}
    if not isinstance(positions, dict) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, int | float) for v in p) for p in positions.values()
    ):
        problems.append(Problem(None, None, "positions must map node ids to [x, y]"))
        positions = {}
    graph = {"nodes": [nodes[i] for i in order], "positions": {k: v for k, v in positions.items() if k in nodes}}
    return graph, problems


def _checked_node(raw: Any, seen: dict[str, Any], problems: list[Problem]) -> dict[str, Any] | None:
    """One node with its defaults filled in, or None (with the problem) when it cannot be read at all."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not NODE_ID.fullmatch(raw["id"]):
        problems.append(Problem(None, None, f"each node needs an id of 1-32 of a-z, 0-9 and -, got {raw!r:.80}"))
        return None
    node_id = raw["id"]
    if node_id in seen:
        problems.append(Problem(node_id, None, f"two nodes are called {node_id!r}"))
        return None
    module = raw.get("module")
    if module not in MODULES:
        problems.append(Problem(node_id, None, f"unknown module {module!r}; the modules are {', '.join(MODULES)}"))
        return None
    params, inputs = raw.get("params") or {}, raw.get("inputs") or {}
    extra = sorted(set(raw) - {"id", "module", "params", "inputs"})
    if extra or not isinstance(params, dict) or not isinstance(inputs, dict):
        problems.append(Problem(node_id, None, "a node is id, module, params (an object) and inputs (an object)"))
        return None
    return {
        "id": node_id,
        "module": module,
        "inputs": inputs,
        "params": _checked_params(node_id, module, params, problems),
    }


def _checked_params(node_id: str, module: str, given: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """The module's parameters: the given values, the defaults for the rest; each refused value at its field."""
    described = parameters(module)
    for name in sorted(set(given) - set(described)):
        problems.append(Problem(node_id, name, f"{name!r} is not a parameter of {MODULES[module].title}"))
    values = {name: given.get(name, d["default"]) for name, d in described.items()}
    spec = MODULES[module].params
    if spec is not None:
        fields = {d.name: d for d in declared(spec)}
        refused = False
        for name, value in values.items():
            if name in fields and (problem := fields[name].problem(value)):
                problems.append(Problem(node_id, name, problem))
                refused = True
        if not refused:
            try:  # the checks between parameters (a crop larger than the resize, resume with overwrite)
                spec(**{k: v for k, v in values.items() if k in fields})
            except ParameterError as exc:
                problems.append(Problem(node_id, None, str(exc)))
    elif module == "sweep":
        problems += [Problem(node_id, field, message) for field, message in sweep_problems(values)]
    elif module in MODEL_MODULES:
        if values["model_name"] not in described["model_name"]["choices"]:
            problems.append(Problem(node_id, "model_name", f"{values['model_name']!r} is not a {module} network"))
        if not isinstance(values["pretrained"], bool):
            problems.append(Problem(node_id, "pretrained", "pretrained must be true or false"))
    if module == "convert" and not (isinstance(values["source"], str) and values["source"]):
        problems.append(Problem(node_id, "source", "choose what to convert: a folder, archive or manifest"))
    return values


def _check_inputs(node: dict[str, Any], nodes: dict[str, dict[str, Any]], problems: list[Problem]) -> None:
    """Every input port joined to an output of the kind it takes; optional ones may be left open."""
    module = MODULES[node["module"]]
    for port in sorted(set(node["inputs"]) - set(module.inputs)):
        problems.append(Problem(node["id"], None, f"{module.title} has no input {port!r}"))
    for port, kind in module.inputs.items():
        ref = node["inputs"].get(port)
        if ref is None:
            if port not in module.optional:
                problems.append(Problem(node["id"], None, f"connect its {port} input (it takes {kind})"))
            continue
        found = output_kind(ref, nodes)
        if found is None:
            problems.append(Problem(node["id"], None, f"its {port} input names {ref!r}, which is no node's output"))
        elif found != kind:
            problems.append(Problem(node["id"], None, f"its {port} input takes {kind}, but {ref!r} gives {found}"))


def resolve(ref: str, nodes: dict[str, dict[str, Any]]) -> tuple[str, str] | None:
    """(node, port) of an input reference "node" (its first output) or "node.port"; None when there is none."""
    if not isinstance(ref, str):
        return None
    node_id, _, port = ref.partition(".")
    node = nodes.get(node_id)
    if node is None:
        return None
    outputs = MODULES[node["module"]].outputs
    port = port or next(iter(outputs))
    return (node_id, port) if port in outputs else None


def output_kind(ref: str, nodes: dict[str, dict[str, Any]]) -> str | None:
    """The kind of data an input reference gives, or None when it names no output."""
    found = resolve(ref, nodes)
    return MODULES[nodes[found[0]]["module"]].outputs[found[1]] if found else None


def _running_order(nodes: dict[str, dict[str, Any]], problems: list[Problem]) -> list[str]:
    """The nodes so that each comes after those it reads (in the order given where free); a cycle is a problem."""
    needs = {
        node_id: {found[0] for ref in node["inputs"].values() if (found := resolve(ref, nodes))}
        for node_id, node in nodes.items()
    }
    order: list[str] = []
    while len(order) < len(nodes):
        ready = [n for n in nodes if n not in order and needs[n] <= set(order)]
        if not ready:
            stuck = sorted(set(nodes) - set(order))
            problems.append(Problem(None, None, f"the arrows make a cycle through {', '.join(stuck)}"))
            return order + stuck
        order.append(ready[0])
    return order


def linear_graph(request: dict[str, Any]) -> dict[str, Any]:
    """The graph of the studio's first, linear request (train, valid, split_fraction, model, transform,
    train_params), which scripts may still send."""
    graph = default_graph(request.get("train"))
    by_id = {n["id"]: n for n in graph["nodes"]}
    if "split_fraction" in request:
        by_id["split"]["params"] = {"fraction": request["split_fraction"]}
    model = {**STUDIO_MODEL, **(request.get("model") or {})} if isinstance(request.get("model"), dict) else {}
    family = model.pop("family", "resnet")
    module = next((m for m, f in MODEL_MODULES.items() if f == family), family)
    by_id["resnet"].update(module=module, params=model)
    by_id["transform"]["params"] = request.get("transform") or {}
    by_id["train"]["params"] = request.get("train_params") or {}
    if request.get("valid") is not None:
        graph["nodes"].insert(1, {"id": "convert-valid", "module": "convert", "params": {"source": request["valid"]}})
        by_id["train"]["inputs"].update(train="convert", valid="convert-valid")
        by_id["score"]["inputs"]["images"] = "convert-valid"
        graph["nodes"] = [n for n in graph["nodes"] if n["id"] != "split"]
    return graph


def run_graph(run: dict[str, Any]) -> dict[str, Any]:
    """A registered run's graph (a run the studio's first version queued holds its linear request instead: its graph,
    with the defaults filled in)."""
    request = run["request"]
    return request if "nodes" in request else check_graph(linear_graph(request))[0]
