"""Errors raised for bad user input; each names the file or field at fault."""
import re


class SignCLIPInputError(ValueError):
    """Base class for input a model cannot embed (the HTTP service maps it to a 4xx)."""


class PoseInputError(SignCLIPInputError):
    """A pose file or array that cannot be read or preprocessed."""


class TextInputError(SignCLIPInputError):
    """A text or language code that cannot be embedded."""


class DamagedFileError(ValueError):
    """A file signclip wrote (model, checkpoint, index) that cannot be read back: truncated, mismatched
    with its companions, or not what it claims to be. The message names the file and what to do."""


class RunLockedError(RuntimeError):
    """Another trainer is writing the same run folder."""


class UsageError(ValueError):
    """Options of a command that do not fit together, or that give it nothing to do."""


class CheckpointError(ValueError):
    """A file that is not a checkpoint signclip can convert (named in the message), or one it refuses to read."""


def refused_pickle(e: Exception) -> str:
    """What ``torch.load(weights_only=True)`` refused to unpickle ("it pickles posix.system"), without torch's
    advice to load the file with ``weights_only=False``, which would run the code."""
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    return f"it pickles {found.group(1)}" if found else "it pickles more than tensors"
