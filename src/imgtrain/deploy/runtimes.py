"""The CPU runtimes other than PyTorch (ONNX Runtime, OpenVINO): one session per model file, run on float32 arrays.

Scoring with `--backend onnxruntime|openvino` runs a trained network through one of them (`network_runtime`); an
export's check runs the exported file (`open_runtime`). The only module that imports onnxruntime or openvino.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import MissingDependencyError, ParameterError
from .formats import BACKENDS, RUNTIME_PACKAGES

log = logging.getLogger(__name__)

OPSET = 17


def installed(runtime: str) -> bool:
    """Whether `runtime`'s package can be imported here."""
    return importlib.util.find_spec(RUNTIME_PACKAGES[runtime][0]) is not None


def check_backend(backend: str) -> str:
    """`backend` if it is one of BACKENDS and installed (auto and torch always are)."""
    if backend not in BACKENDS:
        raise ParameterError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    if backend in RUNTIME_PACKAGES and not installed(backend):
        package, extra = RUNTIME_PACKAGES[backend]
        raise MissingDependencyError(
            f"The {backend} backend needs the {package} package.", hint=f"pip install 'imgtrain[{extra}]'."
        )
    return backend


def require(module: str, what: str, extra: str) -> Any:
    """The optional package `module` a deploy step needs, or MissingDependencyError naming `what` and the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{what} needs {module}.", hint=f"pip install 'imgtrain[{extra}]'.") from None


def write_onnx(
    net: nn.Module, example: torch.Tensor, path: Path, output_name: str = "probabilities", dynamic_size: bool = True
) -> None:
    """`net` as an ONNX file taking `images` (batch dynamic, and height/width with `dynamic_size`)."""
    axes = {"images": {0: "batch", **({2: "height", 3: "width"} if dynamic_size else {})}, output_name: {0: "batch"}}
    with warnings.catch_warnings():  # the TorchScript-based exporter: no onnxscript needed
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["images"],
            output_names=[output_name],
            dynamic_axes=axes,
        )


class Runtime:
    """A model file compiled by ONNX Runtime or OpenVINO for this CPU: `run(images) -> first output`."""

    def __init__(self, path: Path, runtime: str, threads: int | None = None):
        check_backend(runtime)
        self.name = runtime
        self._lock = threading.Lock()
        threads = threads or torch.get_num_threads()
        self._run: Callable[[np.ndarray], np.ndarray]
        if runtime == "onnxruntime":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.log_severity_level = 3  # its warnings about unused initializers are not the user's concern
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            input_name = session.get_inputs()[0].name
            self._run = lambda images: session.run(None, {input_name: images})[0]
        else:
            import openvino

            core = openvino.Core()
            settings = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}  # no bf16 behind our back
            compiled = core.compile_model(core.read_model(str(path)), "CPU", settings)
            request = compiled.create_infer_request()
            self._run = lambda images: request.infer([images])[0].copy()

    def run(self, images: np.ndarray) -> np.ndarray:
        """The model's first output for a float32 batch (one call at a time: OpenVINO's request is not shared)."""
        with self._lock:
            return np.asarray(self._run(np.ascontiguousarray(images, dtype=np.float32)))


def network_runtime(net: nn.Module, shape: tuple[int, ...], runtime: str) -> Runtime:
    """`net` (eval mode, on the CPU) compiled by `runtime`, through an ONNX file that lasts only as long as this
    call: its outputs are `net`'s, up to float rounding."""
    with tempfile.TemporaryDirectory(prefix="imgtrain-runtime-") as tmp:
        path = Path(tmp) / "network.onnx"
        write_onnx(net.cpu().eval(), torch.zeros(shape), path, output_name="logits")
        session = Runtime(path, runtime)
    log.info("scoring with %s", runtime)
    return session
