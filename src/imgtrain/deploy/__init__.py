"""Deploying a trained model: export formats, INT8 quantization, the CPU runtimes, the check of an export."""
