"""``signclip serve``: the HTTP service (FastAPI + uvicorn) with its web page."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from signclip.cli.hub import MODEL_HELP, PRECISION_HELP, THREADS_HELP, model_dir
from signclip.cpu import resolve_precision, use_threads


def serve_cmd(
    model: str = typer.Argument(..., help=MODEL_HELP),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help="index directory for /api/search"),
    host: str = "127.0.0.1",
    port: int = 8000,
    batching: bool = typer.Option(True, help="dynamic batching of concurrent requests"),
    max_batch: int = typer.Option(32, help="largest batch the model runs"),
    max_wait_ms: float = typer.Option(5.0, help="how long a batch waits for more requests"),
    max_queue: int = typer.Option(4096, help="queued inputs per modality before answering 503"),
    max_upload_mb: float = typer.Option(50.0, help="largest request body (MB)"),
    memory_budget_mb: float = typer.Option(1024.0, help="memory the requests in flight may hold together (MB; "
                                                        "bodies and their parsing); beyond it they wait, then 503"),
    max_frames: Optional[int] = typer.Option(None, help="longer poses are resampled (default: the model's)"),
    max_video_seconds: float = typer.Option(20.0, help="longer uploaded videos are refused before decoding"),
    read_timeout: float = typer.Option(30.0, help="seconds a request body may take to arrive (else 408)"),
    header_timeout: float = typer.Option(10.0, help="seconds a connection may take to send its request headers"),
    api_key: Optional[str] = typer.Option(None, envvar="SIGNCLIP_API_KEY", show_default=False,
                                          help="require this key in the X-API-Key header on /api/* "
                                               "(also from SIGNCLIP_API_KEY)"),
    cors_origin: Optional[list[str]] = typer.Option(None, help="a browser origin allowed to call the API "
                                                               "(repeatable), e.g. https://example.org"),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
) -> None:
    """Serve MODEL over HTTP (FastAPI + uvicorn): /api/embed/text, /api/embed/pose, /api/search, web page at /."""
    from signclip.serve import ServeSettings, build_server

    threads_line = use_threads(threads).describe()
    settings = ServeSettings(max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                             memory_budget_bytes=int(memory_budget_mb * 1024 * 1024), max_frames=max_frames,
                             batching=batching, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                             max_video_seconds=max_video_seconds, read_timeout_s=read_timeout,
                             header_timeout_s=header_timeout, api_key=api_key or None,
                             cors_origins=tuple(cors_origin or ()), precision=precision)
    local = model_dir(model)  # a hf-hub: id is downloaded (or found in the cache) before the server starts
    server = build_server(local, str(index) if index else None, host, port, settings)  # bad model: error here
    typer.echo(f"serving {model} on http://{host}:{port} (docs: /docs)" + ("; API key required" if api_key else "")
               + f"; CPU: {threads_line}; precision {resolve_precision(precision)}")
    server.run()
