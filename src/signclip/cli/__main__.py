"""``python -m signclip.cli``: the ``signclip`` command (torchrun launches it this way)."""
from signclip.cli import app

app()
