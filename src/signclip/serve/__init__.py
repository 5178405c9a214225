"""HTTP service: ``create_app(model, index)``, ``serve(...)`` and an in-process ``ServerThread``; the
embedding index it searches (:mod:`signclip.serve.index`, faiss: the ``index`` extra) is imported only when used."""
from __future__ import annotations

import socket
import threading
import time

import uvicorn

from signclip.serve.app import create_app
from signclip.serve.batching import DynamicBatcher, QueueFull
from signclip.serve.service import ServeSettings

__all__ = ["ServeSettings", "create_app", "serve", "ServerThread", "DynamicBatcher", "QueueFull", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve(model_dir: str, index_dir: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          settings: ServeSettings | None = None, log_level: str = "info") -> None:
    """Load a saved model (and index) and serve it until interrupted."""
    from signclip.models.signclip import load

    index = None
    if index_dir:
        from signclip.serve.index import SearchIndex

        index = SearchIndex.load(index_dir)
    app = create_app(load(model_dir), index, settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=30)


class ServerThread:
    """Run an app with uvicorn in a background thread (tests, benchmarks, notebooks)::

        with ServerThread(create_app(model)) as url: httpx.get(url + "/api/health")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None, log_level: str = "warning"):
        self.host, self.port = host, port or free_port(host)
        self.server = uvicorn.Server(uvicorn.Config(app, host=self.host, port=self.port, log_level=log_level,
                                                    backlog=512, timeout_keep_alive=30))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        self.thread.start()
        deadline = time.time() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > deadline:
                raise RuntimeError(f"server did not start on {self.url}")
            time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
