"""INT8 post-training quantization, calibrated on the user's images: ONNX Runtime's static quantization of the
ONNX file (QDQ, weights per channel), and OpenVINO's through NNCF. Both keep the float32 file's inputs and outputs."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

from .check import CheckImages
from .runtimes import require

log = logging.getLogger(__name__)


def quantize_onnx(float_file: Path, out: Path, images: CheckImages) -> None:
    """`float_file` quantized to INT8 (activations uint8, weights int8 per channel) into `out`."""
    require("onnxruntime", "INT8 ONNX export", "export")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        """The calibration batches, read in strides of one: ONNX Runtime merges each batch's ranges and drops its
        activations before the next, so calibration holds one batch's activations, not every batch's."""

        def __init__(self) -> None:
            self.batches = [batch for batch, _ in images.batches()]
            self.set_range(0, len(self.batches))

        def __len__(self) -> int:
            return len(self.batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.pending = iter(self.batches[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.pending, None)
            return None if batch is None else {"images": batch}

    prepared = out.with_name("prepared.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant_pre_process(str(float_file), str(prepared))
        quantize_static(
            str(prepared),
            str(out),
            Batches(),
            op_types_to_quantize=sorted(_network_ops(prepared)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"CalibStridedMinMax": 1},
        )
    prepared.unlink()


def _network_ops(path: Path) -> set[str]:
    """The operations of the network itself: not the normalization, temperature and softmax around it, which stay
    float32: probabilities in steps of 1/255 tie, and without them efficientnet_lite0 scored 14% faster here."""
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node} - {"Sub", "Div", "Softmax", "Sigmoid"}


def quantize_openvino(float_model: object, images: CheckImages) -> object:
    """An OpenVINO model (openvino.Model) quantized to INT8 by NNCF on `images`."""
    nncf = require("nncf", "INT8 OpenVINO export", "deploy")
    batches = [batch for batch, _ in images.batches()]
    logging.getLogger("nncf").setLevel(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):  # its progress bar, on stderr with the others
        return nncf.quantize(
            float_model, nncf.Dataset(batches), subset_size=len(batches), preset=nncf.QuantizationPreset.PERFORMANCE
        )
