"""signclip: one embedding space for sign-language poses and spoken-language text."""
from signclip.config import ModelConfig, TrainConfig, get_model_config, list_model_configs
from signclip.errors import PoseInputError, SignCLIPInputError, TextInputError
from signclip.models.signclip import SignCLIP, create_model, load

__version__ = "0.1.0"
list_models = list_model_configs

__all__ = [
    "SignCLIP", "create_model", "load", "list_models", "ModelConfig", "TrainConfig", "get_model_config",
    "PoseInputError", "TextInputError", "SignCLIPInputError", "__version__",
]
