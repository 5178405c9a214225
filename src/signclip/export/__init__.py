"""Model export: ONNX encoders for torch-free inference (:mod:`signclip_onnx`)."""
from signclip.export.onnx import export_onnx

__all__ = ["export_onnx"]
