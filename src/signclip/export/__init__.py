"""Model export: ONNX encoders (:func:`signclip.export.onnx.export_onnx`, needs torch), the torch-free
runtime that runs them (:class:`signclip.export.runtime.OnnxSignCLIP`), embeddings written to
.npy / .parquet files (:mod:`signclip.export.embeddings`), and a model with its model card on the
Hugging Face Hub (:func:`signclip.export.hub.push_to_hub`)."""
