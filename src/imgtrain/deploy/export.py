"""Export a trained model for other runtimes: ONNX (float32 or INT8), TorchScript, OpenVINO (float32 or INT8) or
Core ML, each with normalization and softmax inside (deploy.exported), described by `imgtrain-export.json`, and checked
against the PyTorch model on the images the user names (deploy.check).
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ParameterError
from ..files import atomic_write_json, building_dir, check_output
from ..models.model_directory import TrainedModel, open_model_directory
from ..models.tracing import module_calls
from .check import CheckImages, agreement, check_images
from .exported import ExportedModel, example_size, exported_model
from .formats import (
    CALIBRATION_IMAGES,
    CHECK_IMAGES,
    EXPORT_META,
    FORMAT_RUNTIMES,
    FORMATS,
    INT8_FORMATS,
    MAX_CALIBRATION_IMAGES,
    NOT_CHECKED_COREML,
)
from .quantize import quantize_onnx, quantize_openvino
from .runtimes import Runtime, check_backend, require, write_onnx

log = logging.getLogger(__name__)

NO_IMAGES = "no images named (imgtrain export --images DIR)"


@dataclass(frozen=True)
class ExportResult:
    """Where the export is and what its check measured (None: no images named, or a format this machine cannot run)."""

    path: Path
    check: dict[str, Any] | None


def export_model(
    model: str | Path,
    out: str | Path,
    fmt: str = "onnx",
    overwrite: bool = False,
    *,
    int8: bool = False,
    images: str | Path | None = None,
    calibration_images: int = CALIBRATION_IMAGES,
    check_images_count: int = CHECK_IMAGES,
) -> ExportResult:
    """Write OUT/<the format's file> and OUT/imgtrain-export.json; with `images`, check the export against the
    PyTorch model on them (INT8 also calibrates on them, and needs them)."""
    _check_options(fmt, int8, images, calibration_images, check_images_count)
    inputs = [Path(model)] + ([Path(images)] if images else [])
    check_output(Path(out), overwrite, inputs)
    trained = open_model_directory(model)
    found = check_images(trained, images) if images is not None else None
    net = exported_model(trained)
    height, width = example_size(trained)
    with module_calls(), building_dir(Path(out), overwrite, inputs=inputs) as tmp:  # models.tracing
        main = tmp / FORMATS[fmt]
        calibration, checked = found.split(calibration_images) if found and int8 else (None, found)
        _WRITERS[fmt](net, torch.rand(1, 3, height, width), main, trained, calibration)
        check = _check(fmt, main, trained, checked.sample(check_images_count)) if checked else None
        if check is not None and calibration is not None:
            check["calibration_images"] = len(calibration.read)
            check["checked_on_calibration_images"] = checked is calibration
        meta = _describe(trained, fmt, height, width) | {
            "precision": "int8" if int8 else "fp16" if fmt == "coreml" else "fp32",
            "check": check or {"measured": False, "why": NOT_CHECKED_COREML if found else NO_IMAGES},
        }
        atomic_write_json(tmp / EXPORT_META, meta)
    log.info("exported %s as %s%s to %s", trained.path, fmt, " int8" if int8 else "", out)
    return ExportResult(Path(out), check)


def _check_options(fmt: str, int8: bool, images: object, calibration_images: int, check_count: int) -> None:
    """Every option checked before any work."""
    if fmt not in FORMATS:
        raise ParameterError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    if int8 and fmt not in INT8_FORMATS:
        raise ParameterError(
            f"--int8 applies to {' and '.join(INT8_FORMATS)}; got format {fmt}.", hint="give --format onnx or openvino."
        )
    if int8 and images is None:
        raise ParameterError(
            "INT8 quantization is calibrated on images of your own, and none were named.",
            hint="give --images VALIDDIR (an image directory or a folder of images, e.g. your validation split).",
        )
    for name, value, most in (
        ("calibration images", calibration_images, MAX_CALIBRATION_IMAGES),
        ("check images", check_count, 10**7),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ParameterError(f"{name} must be a whole number from 1 to {most}, got {value!r}.")
    if images is not None and fmt != "coreml":  # the check runs the export: its runtime must be here before any work
        check_backend(FORMAT_RUNTIMES.get(fmt, "torch"))


def _write_onnx(
    net: ExportedModel, example: torch.Tensor, path: Path, trained: TrainedModel, calibration: CheckImages | None
) -> None:
    """OUT/model.onnx; with `calibration`, ONNX Runtime's INT8 of it (the float file only passes through)."""
    onnx = require("onnx", "ONNX export", "export")
    float_file = path.with_name("float.onnx") if calibration else path
    write_onnx(net, example, float_file)
    if calibration:
        quantize_onnx(float_file, path, calibration)
        float_file.unlink()
    proto = onnx.load(str(path))
    for key, value in (
        ("imgtrain.classes", "\n".join(trained.classes)),
        ("imgtrain.input", "float32 NCHW RGB in [0, 1], resized/cropped as imgtrain-export.json says"),
        *([("imgtrain.thresholds", "\n".join(map(repr, trained.thresholds)))] if trained.thresholds else []),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _write_torchscript(
    net: ExportedModel, example: torch.Tensor, path: Path, trained: TrainedModel, calibration: CheckImages | None
) -> None:
    """OUT/model.pt, traced."""
    with torch.inference_mode(), warnings.catch_warnings():  # TorchScript is deprecated, still widely read
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(net, example), str(path))


def _write_openvino(
    net: ExportedModel, example: torch.Tensor, path: Path, trained: TrainedModel, calibration: CheckImages | None
) -> None:
    """OUT/model.xml + model.bin, read from the ONNX file; with `calibration`, NNCF's INT8."""
    openvino = require("openvino", "OpenVINO export", "deploy")
    onnx_file = path.with_name("network.onnx")
    write_onnx(net, example, onnx_file)
    ov_model = openvino.Core().read_model(str(onnx_file))
    onnx_file.unlink()
    if calibration:
        ov_model = quantize_openvino(ov_model, calibration)
    openvino.save_model(ov_model, str(path), compress_to_fp16=False)


def _write_coreml(
    net: ExportedModel, example: torch.Tensor, path: Path, trained: TrainedModel, calibration: CheckImages | None
) -> None:
    """OUT/model.mlpackage: an ML program (iOS 16+), any batch of the example's height and width."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)  # not its warnings that macOS's libraries are missing
    ct = require("coremltools", "Core ML export", "deploy")
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, example)
        converted = ct.convert(
            traced,
            inputs=[ct.TensorType(name="images", shape=(ct.RangeDim(1, 256, 1), *example.shape[1:]), dtype=np.float32)],
            outputs=[ct.TensorType(name="probabilities", dtype=np.float32)],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS16,
        )
    converted.short_description = f"imgtrain classifier: {', '.join(trained.classes)}"
    converted.save(str(path))


_WRITERS = {
    "onnx": _write_onnx,
    "torchscript": _write_torchscript,
    "openvino": _write_openvino,
    "coreml": _write_coreml,
}


def _check(fmt: str, path: Path, trained: TrainedModel, images: CheckImages) -> dict[str, Any] | None:
    """The export run on `images` against the PyTorch model (None where this machine cannot run the format)."""
    if fmt == "coreml" and sys.platform != "darwin":
        return None
    if fmt == "torchscript":
        with warnings.catch_warnings():  # TorchScript is deprecated, still widely read
            warnings.simplefilter("ignore", FutureWarning)
            loaded = torch.jit.load(str(path))

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return loaded(torch.from_numpy(batch)).numpy()

        return agreement(trained, images, run)
    if fmt == "coreml":
        import coremltools as ct

        mlmodel = ct.models.MLModel(str(path))
        return agreement(trained, images, lambda batch: mlmodel.predict({"images": batch})["probabilities"])
    runtime = Runtime(path, FORMAT_RUNTIMES[fmt])
    return agreement(trained, images, runtime.run)


def _describe(trained: TrainedModel, fmt: str, height: int, width: int) -> dict[str, Any]:
    spec = trained.transform.values()
    return {
        "format": "imgtrain.export",
        "format_version": 2,
        "runtime_format": fmt,
        "file": FORMATS[fmt],
        **({"weights_file": "model.bin"} if fmt == "openvino" else {}),
        "classes": list(trained.classes),
        "architecture": trained.architecture.to_json(),
        "input": {
            "name": "images",
            "dtype": "float32",
            "layout": "NCHW",
            "color": "RGB",
            "range": [0, 1],
            "example_size": [height, width],
            "preprocessing": "decode, convert to RGB, then the inference steps of `transform` (resize the "
            "shorter side with antialiasing, center crop, pad ...), divide by 255",
            "transform": {k: v for k, v in spec.items() if not (k.startswith("random_") or k == "color_jitter")},
            "normalization": {
                "mean": list(trained.mean),
                "std": list(trained.std),
                "applied": "inside the exported model",
            },
        },
        "output": {
            "name": "probabilities",
            "shape": ["batch", len(trained.classes)],
            "meaning": "softmax probabilities, in the order of `classes`",
            "temperature": trained.temperature,
            "temperature_applied": "inside the exported model",
        }
        | (
            {
                "meaning": "each class's own sigmoid probability, in the order of `classes`: an image has every "
                "class whose probability is at least its threshold",
                "task": "multilabel",
                "thresholds": dict(zip(trained.classes, trained.thresholds, strict=True)),
                "temperature": None,
                "temperatures": dict(
                    zip(trained.classes, trained.temperatures or (1.0,) * len(trained.classes), strict=True)
                ),
            }
            if trained.thresholds is not None
            else {}
        ),
        "source_model": str(trained.path),
    }
