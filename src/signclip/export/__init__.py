"""Model export: ONNX encoders (:func:`signclip.export.onnx.export_onnx`, needs torch) and the
torch-free runtime that runs them (:class:`signclip.export.runtime.OnnxSignCLIP`)."""
