"""Running the app with uvicorn: ``serve`` (until interrupted) and ``ServerThread`` (in the background),
with the service's connection limits and timeouts."""
from __future__ import annotations

import socket
import threading
import time

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from signclip.serve.app import create_app
from signclip.serve.service import ServeSettings


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request line and headers have not arrived within
    ``header_timeout`` seconds of connecting or of its previous response (uvicorn has no such timeout, so
    half-open and trickling connections would stay open forever). The rest of a body the route answered
    without reading it (a 404, 405, 401 or 413) still arriving then counts as waiting too."""

    header_timeout = 10.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._cycle = 0
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def _arm(self) -> None:
        self._cycle += 1
        self.loop.call_later(self.header_timeout, self._expire, self._cycle)

    def _unread_body(self) -> bool:
        """Whether the client is still sending the body of a request that has been answered."""
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.SEND_BODY

    def _expire(self, cycle: int) -> None:
        waiting = self.conn.their_state is h11.IDLE or self._unread_body()
        if cycle == self._cycle and waiting and not self.transport.is_closing():
            self.transport.close()


def server_config(app, host: str, port: int, settings: ServeSettings, log_level: str = "info") -> uvicorn.Config:
    """uvicorn settings: header and keep-alive timeouts, a connection limit (the body timeout is the app's)."""
    protocol = type("SignclipH11Protocol", (HeaderTimeoutProtocol,), {"header_timeout": settings.header_timeout_s})
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, http=protocol, backlog=512,
                          timeout_keep_alive=int(settings.keep_alive_s), limit_concurrency=settings.max_connections)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def build_server(model_dir: str, index_dir: str | None = None, host: str = "127.0.0.1", port: int = 8000,
                 settings: ServeSettings | None = None, log_level: str = "info") -> uvicorn.Server:
    """Load a saved model (and index) and make the server that serves it; a missing or damaged model or
    index fails here, before anything listens."""
    from signclip.models.signclip import load

    index = None
    if index_dir:
        from signclip.serve.index import SearchIndex

        index = SearchIndex.load(index_dir)
    settings = settings or ServeSettings()
    app = create_app(load(model_dir), index, settings)
    return uvicorn.Server(server_config(app, host, port, settings, log_level))


def serve(model_dir: str, index_dir: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          settings: ServeSettings | None = None, log_level: str = "info") -> None:
    """Load a saved model (and index) and serve it until interrupted."""
    build_server(model_dir, index_dir, host, port, settings, log_level).run()


class ServerThread:
    """Run an app with uvicorn in a background thread (tests, benchmarks, notebooks)::

        with ServerThread(create_app(model)) as url: httpx.get(url + "/api/health")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None, log_level: str = "warning"):
        self.host, self.port = host, port or free_port(host)
        settings = app.state.service.settings
        self.server = uvicorn.Server(server_config(app, self.host, self.port, settings, log_level))
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
