"""HTTP service: ``create_app(model, index)``, ``serve(...)`` and an in-process ``ServerThread``; the
embedding index it searches (:mod:`signclip.serve.index`, faiss: the ``index`` extra) is imported only when used."""
from signclip.serve.app import create_app
from signclip.serve.dynamic_batching import DynamicBatcher, QueueFull
from signclip.serve.server import ServerThread, build_server, free_port, serve
from signclip.serve.service import ServeSettings

__all__ = ["ServeSettings", "create_app", "serve", "build_server", "ServerThread", "DynamicBatcher", "QueueFull",
           "free_port"]
