"""The HTTP service: embed texts and poses, search an index, and a web page at ``/``.

Every pose (multipart upload, base64 in JSON) goes through :func:`signclip.pose.io.read_pose`, so any
format it reads is served. Texts and poses are embedded by :class:`DynamicBatcher` workers, so
concurrent requests share model calls; results equal the model's embedding of each input alone.
:func:`create_app` assembles the routes from the groups below, over a :class:`Service`.
"""
from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from signclip.errors import PoseInputError, SignCLIPInputError
from signclip.serve.budget import BudgetExhausted
from signclip.serve.dynamic_batching import QueueFull
from signclip.serve.schemas import (
    EmbeddingResponse,
    ErrorResponse,
    PoseRequest,
    SearchRequest,
    SearchResponse,
    TextRequest,
)
from signclip.serve.service import ApiError, ServeSettings, Service

log = logging.getLogger("signclip.serve")
STATIC = Path(str(resources.files("signclip.serve") / "static"))
ERRORS = {s: {"model": ErrorResponse} for s in (400, 413, 415, 422, 503)}


def _doc_body(model: type[BaseModel], multipart: bool = False) -> dict:
    """OpenAPI ``requestBody`` for handlers that parse the request themselves."""
    content: dict[str, Any] = {"application/json": {"schema": model.model_json_schema()}}
    if multipart:
        content["multipart/form-data"] = {"schema": {"type": "object", "properties": {
            "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                     "description": ".pose file(s); any field name"}}}}
    return {"requestBody": {"content": content, "required": False}}


def _error(status: int, detail: str, error: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": error}, status_code=status)


def _validation_message(e: ValidationError | RequestValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def create_app(model, index=None, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app for a loaded model (and optional :class:`signclip.serve.index.SearchIndex`)."""
    svc = Service(model, index, settings)
    app = FastAPIOffline(title="signclip", version="0.1.0",  # /docs assets served locally, no CDN
                         description="Embed sign-language poses and texts into one space; search an index.")
    app.state.service = svc
    app.router.add_event_handler("shutdown", svc.close)
    add_access_control(app, svc.settings)
    add_error_handlers(app)
    add_service_routes(app, svc)
    add_embed_routes(app, svc)
    add_search_route(app, svc)
    add_pose_routes(app, svc)
    return app


OPEN_PATHS = ("/api/health",)  # reachable without the API key (the page and its assets are not under /api)


def add_access_control(app: FastAPI, settings: ServeSettings) -> None:
    """An API key on ``/api/*`` (but the health check), compared in constant time; CORS origins."""
    if settings.api_key:
        expected = settings.api_key.encode()

        @app.middleware("http")
        async def require_key(request: Request, call_next):
            path = request.url.path
            if path.startswith("/api/") and path not in OPEN_PATHS and request.method != "OPTIONS":
                given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix(
                    "Bearer ")
                if not hmac.compare_digest(given.encode(), expected):
                    return _error(401, "API key missing or wrong: send it in the X-API-Key header", "Unauthorized")
            return await call_next(request)

    if settings.cors_origins:  # added last, so it runs first and answers pre-flight requests
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["content-type", "x-api-key", "authorization"])


def add_error_handlers(app: FastAPI) -> None:
    """Every error is ``{"detail": ..., "error": ...}``: 4xx naming the field or file, 503 when busy."""
    handlers = {
        ApiError: lambda e: _error(e.status, e.detail, e.error),
        SignCLIPInputError: lambda e: _error(422, str(e), type(e).__name__),
        ValidationError: lambda e: _error(422, _validation_message(e), "ValidationError"),
        RequestValidationError: lambda e: _error(422, _validation_message(e), "ValidationError"),
        QueueFull: lambda e: _error(503, str(e), "Busy"),
        BudgetExhausted: lambda e: _error(503, str(e), "Busy"),
        StarletteHTTPException: lambda e: JSONResponse({"detail": e.detail, "error": "HTTPError"},
                                                       status_code=e.status_code, headers=getattr(e, "headers", None)),
    }
    for exc, make in handlers.items():
        app.add_exception_handler(exc, lambda _request, e, make=make: make(e))

    @app.exception_handler(Exception)
    async def _internal(_: Request, e: Exception):
        ref = secrets.token_hex(4)
        log.exception("internal error %s", ref)  # the details go to the server log, not to the client
        return _error(500, f"internal error (reference {ref} in the server log)", "InternalError")


def add_service_routes(app: FastAPI, svc: Service) -> None:
    """Health, model information and the web page."""
    @app.get("/api/health", tags=["service"])
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/api/info", tags=["service"])
    async def info() -> dict:
        cfg = svc.model.cfg
        return {"model": cfg.to_dict(), "embed_dim": cfg.embed_dim, "spoken_languages": cfg.spoken_languages,
                "signed_languages": cfg.signed_languages, "prompt_template": cfg.prompt_template,
                "index": svc.index.sizes() if svc.index else None,
                "limits": {k: v for k, v in asdict(svc.settings).items() if k != "api_key"},
                "max_frames": svc.max_frames,
                "batches": {"text": [svc.text_batcher.batches, svc.text_batcher.items],
                            "pose": [svc.pose_batcher.batches, svc.pose_batcher.items]}}

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def embedding_response(emb: np.ndarray, extra: dict | None = None) -> JSONResponse:
    return JSONResponse({"embedding": emb.tolist(), "dim": int(emb.shape[1]), "count": int(emb.shape[0]),
                         **(extra or {})})


def add_embed_routes(app: FastAPI, svc: Service) -> None:
    """``/api/embed/text`` and ``/api/embed/pose``, on POST and (for reference clients) GET."""
    async def embed_text(request: Request):
        async with svc.request_body(request) as body:
            if request.method == "GET" and not body.strip():  # GET ?text=a&text=b&spoken_language=en
                q = request.query_params
                payload = TextRequest(text=q.getlist("text") or None, spoken_language=q.get("spoken_language"),
                                      signed_language=q.get("signed_language"))
            else:
                payload = TextRequest.model_validate(svc.parse_json(body, _content_type(request)))
            prompts = svc.prompts(payload.items(), payload.spoken_language, payload.signed_language)
            return embedding_response(await svc.embed_texts(prompts), {"prompts": prompts})

    async def embed_pose(request: Request):
        async with svc.request_body(request) as body:
            return embedding_response(await svc.embed_arrays(await svc.pose_arrays(request, body)))

    for method in ("POST", "GET"):
        doc = "Reference-client compatible GET (JSON body or ?text=...)." if method == "GET" else ""
        app.add_api_route("/api/embed/text", embed_text, methods=[method], tags=["embed"],
                          response_model=EmbeddingResponse, responses=ERRORS, openapi_extra=_doc_body(TextRequest),
                          summary=f"Embed texts ({method})", description=doc, name=f"embed_text_{method.lower()}")
        app.add_api_route("/api/embed/pose", embed_pose, methods=[method], tags=["embed"],
                          response_model=EmbeddingResponse, responses=ERRORS,
                          openapi_extra=_doc_body(PoseRequest, multipart=True),
                          summary=f"Embed poses ({method})", name=f"embed_pose_{method.lower()}")


def add_search_route(app: FastAPI, svc: Service) -> None:
    """``/api/search``: a text or a pose against the loaded index."""
    async def parse(request: Request, body: bytes) -> tuple[SearchRequest, list[np.ndarray] | None]:
        """The search request and, for a pose query, its preprocessed pose (multipart or JSON body)."""
        ctype = _content_type(request)
        if ctype == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=20)
            req = SearchRequest.model_validate({k: v for k, v in form.multi_items() if not isinstance(v, UploadFile)})
            return req, await svc.pose_arrays(request, body)
        req = SearchRequest.model_validate(svc.parse_json(body, ctype))
        return req, None if req.text is not None else await svc.payload_arrays(req.pose, req.keypoints)

    @app.post("/api/search", tags=["search"], response_model=SearchResponse, responses=ERRORS,
              openapi_extra=_doc_body(SearchRequest, multipart=True))
    async def search(request: Request):
        """Text -> poses (default) or pose -> texts (default when the index has texts); top-k with scores."""
        if svc.index is None:
            raise ApiError(409, "this server has no index; start it with `signclip serve MODEL --index DIR`",
                           "NoIndex")
        async with svc.request_body(request) as body:
            req, arrays = await parse(request, body)
            if arrays is None:
                prompts = svc.prompts([req.text], req.spoken_language, req.signed_language)
                query = {"modality": "text", "text": req.text, "prompt": prompts[0]}
                emb = await svc.embed_texts(prompts)
                target = req.target or "pose"
            else:
                if len(arrays) != 1:
                    raise PoseInputError(f"pose: search takes one pose, got {len(arrays)}")
                query = {"modality": "pose", "frames": int(arrays[0].shape[0])}
                emb = await svc.embed_arrays(arrays)
                target = req.target or ("text" if svc.index.sizes().get("text") else "pose")
        if target not in ("pose", "text"):
            raise ApiError(422, f"target: must be 'pose' or 'text', got {target!r}", "ValidationError")
        try:
            table = (await run_in_threadpool(svc.index.search, emb, target, min(req.k, svc.settings.max_k)))[0]
        except KeyError as e:
            raise ApiError(409, f"target: {e.args[0]}", "NoIndex") from None
        return JSONResponse({"query": query, "target": target, "results": svc.results(table)})


def add_pose_routes(app: FastAPI, svc: Service) -> None:
    """Preprocessed keypoints of an uploaded or indexed pose, for drawing it."""
    @app.post("/api/pose/keypoints", tags=["pose"], responses=ERRORS,
              openapi_extra=_doc_body(PoseRequest, multipart=True))
    async def pose_keypoints(request: Request):
        """The preprocessed (shoulder-normalised, resampled) keypoints of one pose, for drawing."""
        async with svc.request_body(request) as body:
            arrays = await svc.pose_arrays(request, body)
        return JSONResponse(keypoints_payload(arrays[0], svc))

    @app.get("/api/index/pose/{item}/keypoints", tags=["pose"], responses=ERRORS)
    async def index_keypoints(item: int):
        """Keypoints of a pose stored in the index (for animating a search result)."""
        part = svc.index.parts.get("pose") if svc.index else None
        if part is None or not 0 <= item < len(part) or "path" not in part.metadata.columns:
            raise ApiError(404, f"item: no pose {item} with a path in the index", "NotFound")
        path = str(part.metadata["path"].iloc[item])
        x = await run_in_threadpool(svc.model.preprocess_pose, path, Path(path).name)
        return JSONResponse(keypoints_payload(x, svc))


def keypoints_payload(x: np.ndarray, svc: Service) -> dict:
    """(T, P, D) -> JSON: 2-D points rounded to 1e-3 (null = missing) and skeleton edges."""
    xy = np.round(x[..., :2].astype(np.float64), 3)
    frames = [[None if not np.isfinite(p).all() else [float(p[0]), float(p[1])] for p in f] for f in xy]
    return {"frames": int(x.shape[0]), "points": int(x.shape[1]), "fps": svc.model.cfg.pose.fps,
            "edges": svc.edges, "keypoints": frames}
