"""Run code in a fresh interpreter where some modules cannot be imported (to prove they are not needed)."""
from __future__ import annotations

import subprocess
import sys


def blocked_python(modules: tuple[str, ...], code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a new ``python -c`` in which importing any of ``modules`` (or their submodules) fails."""
    prelude = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {tuple(modules)!r}:
            raise ImportError(f"blocked in this test: {{name}}")
sys.meta_path.insert(0, Block())
"""
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=timeout)
