"""Model export: ONNX encoders (:func:`signclip.export.onnx.export_onnx`, needs torch), the torch-free
runtime that runs them (:class:`signclip.export.runtime.OnnxSignCLIP`), and embeddings written to
.npy / .parquet files (:mod:`signclip.export.embeddings`)."""
