"""Running a studio graph in the worker: each node in turn with the library, its output in the run's folder under
the node's id, its state in the run's layout (layout.json) for the page to read.

A node whose output exists is done (a resumed run starts where it stopped; training continues from its
checkpoint), but only when steps.json says that output was started for the same module, parameters and inputs: an
output from another run (a registry deleted while the run folders were kept) is refused, never shown as this run's.
A node that fails marks those that read it skipped; the others still run, so one of two compared models failing
leaves the other's results.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imgtrain

from ..config import STUDIO_TRAIN_DEFAULTS, TrainConfig, TransformSpec
from ..data.image_directory import META_NAME
from ..errors import ImgtrainError, OutputExistsError, TrainingInterrupted
from ..files import atomic_write_json
from .graph import MODEL_MODULES, MODULES, resolve
from .sweep import run_sweep, sweep_ended

LAYOUT = "layout.json"
STEPS = "steps.json"  # node id -> the fingerprint of what its output was started for
STEPS_FORMAT, STEPS_VERSION = "imgtrain-studio-steps", 1
MODEL_META = "imgtrain-model.json"  # models.architectures.MODEL_META: importing it loads torch
NODE_STATUSES = ("queued", "running", "done", "failed", "skipped", "stopped")


def output_paths(folder: Path, node: dict[str, Any], root: Path) -> dict[str, Path]:
    """Where each output of `node` is written in the run `folder` (a convert of an image directory is that
    directory, read as it is)."""
    own = folder / node["id"]
    module = node["module"]
    if module == "convert":
        source = root / node["params"]["source"]
        return {"images": source if (source / META_NAME).is_file() else own}
    if module == "split":
        return {"train": own / "train", "valid": own / "valid"}
    if module == "transform":
        return {"transform": own / "transform.json"}
    if module == "score":
        return {"scores": own / "scores.csv"}
    if module == "sweep":  # the sweep's folder is the box's; its output, the best trial's model
        return {"model": own / "best"}
    return {next(iter(MODULES[module].outputs)): own}


def initial_layout(root: Path, folder: Path, graph: dict[str, Any]) -> dict[str, Any]:
    """The layout of a run that has not started: every node queued, with the outputs it will write."""
    return {
        "order": [n["id"] for n in graph["nodes"]],
        "nodes": {
            n["id"]: {
                "module": n["module"],
                "status": "queued",
                "outputs": {port: str(p.relative_to(root)) for port, p in output_paths(folder, n, root).items()},
                "progress": None,
                "error": None,
                "started": None,
                "ended": None,
            }
            for n in graph["nodes"]
        },
    }


def _complete(output: Path) -> bool:
    """Whether an output was written whole: a file, or a folder with its format's file (a stopped training's folder
    holds only its checkpoint)."""
    if output.suffix:
        return output.is_file()
    return (output / META_NAME).is_file() or (output / MODEL_META).is_file() or (output / "metrics.json").is_file()


class Pipeline:
    """One run's graph being worked through; owns the run's layout file."""

    def __init__(self, root: Path, folder: Path, graph: dict[str, Any], on_step: Callable[[str, str, str], None]):
        self.root, self.folder, self.graph, self.on_step = root, folder, graph, on_step
        self.nodes = {n["id"]: n for n in graph["nodes"]}
        self.layout = initial_layout(root, folder, graph)
        self.paths = {n["id"]: output_paths(folder, n, root) for n in graph["nodes"]}
        self.current: str | None = None
        self.steps = _read_steps(folder / STEPS)
        #: A run folder from before steps.json (an earlier imgtrain): its outputs are its own run's, as new ids never
        #: reuse a folder; each is recorded as it is met.
        self.unrecorded = not (folder / STEPS).exists()
        #: The first node's failure, as the run's error: {"name": the library error's class, "message"}.
        self.failure: dict[str, str] | None = None

    def run(self) -> dict[str, str]:
        """Every node in order, each output's path by "node.port"; a failed node is recorded (self.failure names the
        first) and the nodes that do not read it still run; a stop (KeyboardInterrupt, TrainingInterrupted) leaves
        the running node stopped and is raised as it is."""
        for node_id in self.layout["order"]:
            node = self.nodes[node_id]
            if any(self.layout["nodes"][up]["status"] in ("failed", "skipped") for up in self._upstream(node)):
                self._set(node_id, "skipped", "an input failed")
                continue
            self._set(node_id, "running")
            try:
                self._run_node(node)
            except TrainingInterrupted:
                self._set(node_id, "stopped")
                raise
            except ImgtrainError as exc:
                self._set(node_id, "failed", str(exc))
                title = MODULES[node["module"]].title
                self.failure = self.failure or {"name": type(exc).__name__, "message": f"{title} ({node_id}): {exc}"}
                continue
            except BaseException:
                self._set(node_id, "stopped")
                raise
            self._set(node_id, "done")
        return {
            f"{n}.{port}": str(p.relative_to(self.root)) for n, ports in self.paths.items() for port, p in ports.items()
        }

    def _upstream(self, node: dict[str, Any]) -> set[str]:
        return {found[0] for ref in node["inputs"].values() if (found := resolve(ref, self.nodes))}

    def _input(self, node: dict[str, Any], port: str) -> Path:
        found = resolve(node["inputs"][port], self.nodes)
        assert found is not None  # the graph was checked
        return self.paths[found[0]][found[1]]

    def _optional_input(self, node: dict[str, Any], port: str) -> Path | None:
        return self._input(node, port) if node["inputs"].get(port) is not None else None

    def _set(self, node_id: str, status: str, error: str | None = None) -> None:
        entry = self.layout["nodes"][node_id]
        entry["status"], entry["error"] = status, error
        if status == "running":
            entry["started"], self.current = time.time(), node_id
        elif status in ("done", "failed", "stopped"):
            entry["ended"] = time.time()
        atomic_write_json(self.folder / LAYOUT, self.layout)
        self.on_step(node_id, status, error or "")

    def fingerprint(self, node_id: str) -> str:
        """A digest of what node_id's output depends on: its module, parameters and, recursively, its inputs."""
        node = self.nodes[node_id]
        inputs = {}
        for port, ref in sorted(node["inputs"].items()):
            found = resolve(ref, self.nodes) if ref is not None else None
            inputs[port] = [self.fingerprint(found[0]), found[1]] if found else None
        described = {"module": node["module"], "params": node["params"], "inputs": inputs}
        return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()

    def _claim(self, node: dict[str, Any]) -> None:
        """Record that node's output is being written for this request, or refuse an output written for another."""
        own, fingerprint = self.folder / node["id"], self.fingerprint(node["id"])
        if self.steps.get(node["id"]) == fingerprint:
            return
        if (own.exists() or own.is_symlink()) and not self.unrecorded:
            raise OutputExistsError(
                f"{own} holds the output of another run (other data or parameters, or a run folder kept when the "
                "studio's registry was deleted); it is left as it is. Move it away, or start a new run."
            )
        self.steps[node["id"]] = fingerprint
        steps = {"format": STEPS_FORMAT, "format_version": STEPS_VERSION, "steps": self.steps}
        atomic_write_json(self.folder / STEPS, steps)

    def _run_node(self, node: dict[str, Any]) -> None:
        """The library call of one node, unless its output was written whole for this same request."""
        module, params, outputs = node["module"], node["params"], self.paths[node["id"]]
        self._claim(node)
        if all(_complete(p) for p in outputs.values()) and (module != "sweep" or sweep_ended(outputs["model"].parent)):
            return
        if module == "convert":
            imgtrain.convert(self.root / params["source"], outputs["images"], skip_invalid=params["skip_invalid"])
        elif module == "split":
            imgtrain.split(self._input(node, "images"), outputs["train"], outputs["valid"], **params)
        elif module == "transform":
            imgtrain.init_transform(outputs["transform"], TransformSpec(**params))
        elif module in MODEL_MODULES:
            architecture = imgtrain.Architecture(MODEL_MODULES[module], params["model_name"])
            imgtrain.create_model_directory(outputs["model"], architecture, pretrained=params["pretrained"])
        elif module == "train":
            self._train(node, outputs["model"])
        elif module == "sweep":
            run_sweep(
                self._input(node, "model"),
                self._input(node, "train"),
                self._input(node, "valid"),
                outputs["model"].parent,
                params,
                self._optional_input(node, "transform"),
            )
        elif module == "score":
            from ..inference.scoring import score_to_file  # here: scoring loads torch, the server does not

            score_to_file(self._input(node, "model"), self._input(node, "images"), outputs["scores"])
        elif module == "evaluate":
            imgtrain.evaluate(
                self._input(node, "scores"), outputs["evaluation"], model=self._optional_input(node, "model")
            )

    def _train(self, node: dict[str, Any], out: Path) -> None:
        from ..training.checkpoints import checkpoint_path  # here: checkpoints load torch, the server does not

        transform = self._optional_input(node, "transform")
        spec = imgtrain.load_transform(transform) if transform is not None else TransformSpec()
        resume = checkpoint_path(out).is_file()  # a stopped or interrupted run continues
        config = TrainConfig(**{**STUDIO_TRAIN_DEFAULTS, **node["params"]}, progress=False, resume=resume)
        imgtrain.train(
            self._input(node, "model"), self._input(node, "train"), self._input(node, "valid"), out, config, spec
        )


def _read_steps(path: Path) -> dict[str, str]:
    """The fingerprints a run folder's steps.json records ({} for a new folder, or one that is not a steps file)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    steps = found.get("steps") if isinstance(found, dict) and found.get("format") == STEPS_FORMAT else None
    return {k: v for k, v in steps.items() if isinstance(v, str)} if isinstance(steps, dict) else {}
