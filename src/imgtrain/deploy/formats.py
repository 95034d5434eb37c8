"""The export formats and scoring backends, light enough for `--help`: each format's main file, which take INT8,
the defaults of the image counts; the runtimes a score can run on and the package each needs."""

from __future__ import annotations

#: Each format's main file (OpenVINO's weights lie beside it in model.bin; a Core ML package is a folder).
FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt", "openvino": "model.xml", "coreml": "model.mlpackage"}
INT8_FORMATS = ("onnx", "openvino")
#: The runtime that runs (and checks) each format here; TorchScript runs in torch, Core ML only on Apple's systems.
FORMAT_RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino"}
EXPORT_META = "imgtrain-export.json"
CALIBRATION_IMAGES = 128
#: Calibration holds its images decoded (0.6 MB each at 224 px): this many is 1.2 GB.
MAX_CALIBRATION_IMAGES = 2000
CHECK_IMAGES = 1000

FORMAT_HELP = (
    "onnx (ONNX Runtime, and most runtimes; --int8 by ONNX Runtime's static quantization), torchscript (PyTorch "
    "without Python code), openvino (Intel CPUs and GPUs; --int8 by NNCF), coreml (Apple devices: an fp16 ML "
    "program; Core ML runs only on macOS and iOS, so it cannot be checked here)"
)
NOT_CHECKED_COREML = "Core ML runs models only on macOS and iOS: load model.mlpackage there (coremltools' MLModel)."

#: What each runtime other than torch needs installed: (package, imgtrain extra).
RUNTIME_PACKAGES = {"onnxruntime": ("onnxruntime", "export"), "openvino": ("openvino", "deploy")}
BACKENDS = ("auto", "torch", *RUNTIME_PACKAGES)
BACKEND_HELP = (
    "what computes the scores: torch; onnxruntime or openvino (the network compiled for this CPU, fp32: the same "
    "labels, probabilities within float rounding of torch fp32's); auto = the fastest of torch (at its precision) "
    "and those installed, measured on the first batch (on a GPU: torch)"
)
