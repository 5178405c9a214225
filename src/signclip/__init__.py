"""signclip: one embedding space for sign-language poses and spoken-language text.

Names are imported lazily, so torch-free parts (preprocessing, prompts, the ONNX runtime in
:mod:`signclip.export.runtime`) can be used without loading torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "SignCLIP": "signclip.models.signclip", "create_model": "signclip.models.signclip",
    "load": "signclip.tasks.model", "TaskModel": "signclip.tasks.model", "ModelConfig": "signclip.config",
    "TrainConfig": "signclip.config",
    "get_model_config": "signclip.config", "list_models": "signclip.config",
    "convert_reference": "signclip.models.convert", "fit": "signclip.training",
    "load_dataset": "signclip.data.manifests", "push_to_hub": "signclip.export.hub",
    "PoseInputError": "signclip.errors", "TextInputError": "signclip.errors", "SignCLIPInputError": "signclip.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'signclip' has no attribute {name!r}")
    attr = "list_model_configs" if name == "list_models" else name
    return getattr(importlib.import_module(_EXPORTS[name]), attr)
