"""The HTTP service: embed texts and poses, search an index, and a web page at ``/``.

Every pose (multipart upload, base64 in JSON) goes through :func:`signclip.pose.io.read_pose`, so any
format it reads is served. Texts and poses are embedded by :class:`DynamicBatcher` workers, so
concurrent requests share model calls; results equal the model's embedding of each input alone.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi_offline import FastAPIOffline
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from signclip.errors import PoseInputError, SignCLIPInputError, TextInputError
from signclip.index import SearchIndex, records
from signclip.pose.io import read_pose
from signclip.pose.layout import BODY, LEFT_HAND, RIGHT_HAND, get_layout
from signclip.pose.preprocess import resample_frames
from signclip.serve.batching import DynamicBatcher, QueueFull
from signclip.serve.schemas import (EmbeddingResponse, ErrorResponse, PoseRequest, SearchRequest, SearchResponse,
                                    TextRequest)

log = logging.getLogger("signclip.serve")
STATIC = Path(str(resources.files("signclip.serve") / "static"))


@dataclass
class ServeSettings:
    """Limits and batching of the service."""

    max_upload_bytes: int = 50 * 1024 * 1024  # whole request body
    max_frames: int | None = None  # frames the model sees (longer poses resampled); default: the model's
    max_items: int = 256  # texts or poses per request
    max_k: int = 1000
    batching: bool = True  # False: every input runs alone (batch size 1), for comparison
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 4096  # queued inputs per modality; beyond that requests get 503


class ApiError(Exception):
    """An error answered as ``{"detail": ..., "error": ...}`` with an HTTP status."""

    def __init__(self, status: int, detail: str, error: str = "BadRequest"):
        super().__init__(detail)
        self.status, self.detail, self.error = status, detail, error


def _error(status: int, detail: str, error: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": error}, status_code=status)


def _doc_body(model: type[BaseModel], multipart: bool = False) -> dict:
    """OpenAPI ``requestBody`` for handlers that parse the request themselves."""
    content: dict[str, Any] = {"application/json": {"schema": model.model_json_schema()}}
    if multipart:
        content["multipart/form-data"] = {"schema": {"type": "object", "properties": {
            "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                     "description": ".pose file(s); any field name"}}}}
    return {"requestBody": {"content": content, "required": False}}


ERRORS = {s: {"model": ErrorResponse} for s in (400, 413, 415, 422, 503)}


def skeleton_edges(layout_name: str) -> list[tuple[int, int]]:
    """Point pairs to draw for a layout: arms, torso and the 21-point hand skeletons."""
    layout = get_layout(layout_name)
    idx = {key: i for i, key in enumerate(layout.points)}
    body = [("LEFT_SHOULDER", "RIGHT_SHOULDER"), ("LEFT_SHOULDER", "LEFT_ELBOW"), ("LEFT_ELBOW", "LEFT_WRIST"),
            ("RIGHT_SHOULDER", "RIGHT_ELBOW"), ("RIGHT_ELBOW", "RIGHT_WRIST"), ("LEFT_SHOULDER", "LEFT_HIP"),
            ("RIGHT_SHOULDER", "RIGHT_HIP"), ("LEFT_HIP", "RIGHT_HIP")]
    edges = [(idx[(BODY, a)], idx[(BODY, b)]) for a, b in body if (BODY, a) in idx and (BODY, b) in idx]
    fingers = [[0, 1, 2, 3, 4], [0, 5, 6, 7, 8], [5, 9, 10, 11, 12], [9, 13, 14, 15, 16], [13, 17, 18, 19, 20],
               [0, 17]]
    for hand in (LEFT_HAND, RIGHT_HAND):
        ids = layout.hand_slices[hand]
        for chain in fingers:
            edges += [(ids[a], ids[b]) for a, b in zip(chain, chain[1:])]
    return edges


class Service:
    """The model, the optional index and the two batchers behind the routes."""

    def __init__(self, model, index: SearchIndex | None = None, settings: ServeSettings | None = None):
        self.model, self.index = model.eval(), index
        self.settings = settings or ServeSettings()
        self.max_frames = min(self.settings.max_frames or model.cfg.pose.max_frames, model.cfg.pose.max_frames)
        batch = self.settings.max_batch if self.settings.batching else 1
        wait = self.settings.max_wait_ms if self.settings.batching else 0.0
        self.text_batcher = DynamicBatcher(self._embed_prompts, batch, wait, self.settings.max_queue, "text-batcher")
        self.pose_batcher = DynamicBatcher(self._embed_arrays, batch, wait, self.settings.max_queue, "pose-batcher")
        self.edges = skeleton_edges(model.cfg.pose.layout)

    # ---- model calls (run in the batcher threads) ----------------------------------------------
    def _embed_prompts(self, prompts: list[str]) -> np.ndarray:
        return self.model.encode_text(prompts, batch_size=len(prompts), progress=False)  # (N, E)

    def _embed_arrays(self, arrays: list[np.ndarray]) -> np.ndarray:
        return self.model._encode_arrays(arrays, len(arrays), True, False)  # (N, E), padding-correct

    def close(self) -> None:
        self.text_batcher.close()
        self.pose_batcher.close()

    # ---- inputs -> embeddings -------------------------------------------------------------------
    def prompts(self, texts: list[str], spoken: Any, signed: Any) -> list[str]:
        if not texts:
            raise TextInputError("text: no text given (send {\"text\": [\"...\"]})")
        if len(texts) > self.settings.max_items:
            raise ApiError(413, f"text: {len(texts)} texts, at most {self.settings.max_items} per request", "TooMany")
        return self.model.prompts(texts, spoken, signed)  # raises TextInputError naming the field

    async def embed_texts(self, prompts: list[str]) -> np.ndarray:
        return np.stack(await self.text_batcher.run(prompts))  # (N, E)

    def preprocess(self, data: bytes, name: str) -> np.ndarray:
        """Uploaded bytes -> (T, P, D) through read_pose (any format it reads), frames capped."""
        x = self.model.preprocess_pose(read_pose(data, name=name), name)
        return resample_frames(x, self.max_frames) if x.shape[0] > self.max_frames else x

    def keypoints_array(self, value: Any, name: str) -> np.ndarray:
        """A JSON (T, P, D) nested list (null = missing) -> checked array."""
        try:
            x = np.array(value, dtype=np.float32)  # None -> nan
        except (TypeError, ValueError) as e:
            raise PoseInputError(f"{name}: not a numeric (frames, points, dims) array ({e})") from None
        x = self.model.preprocess_pose(x, name)
        return resample_frames(x, self.max_frames) if x.shape[0] > self.max_frames else x

    async def embed_arrays(self, arrays: list[np.ndarray]) -> np.ndarray:
        return np.stack(await self.pose_batcher.run(arrays))  # (N, E)

    async def pose_arrays(self, request: Request, body: bytes) -> list[np.ndarray]:
        """All poses of a request: multipart uploads, or JSON base64 ``pose`` / ``keypoints``."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            uploads = await self._uploads(request)
            return [await run_in_threadpool(self.preprocess, data, name) for name, data in uploads]
        payload = PoseRequest.model_validate(self._json(body, ctype))
        return await self._payload_arrays(payload.pose, payload.keypoints)

    async def _payload_arrays(self, pose: Any, keypoints: Any) -> list[np.ndarray]:
        if pose is not None:
            items = [pose] if isinstance(pose, str) else list(pose)
            self._check_count(len(items), "pose")
            out = []
            for i, b64 in enumerate(items):
                name = f"pose[{i}]"
                try:
                    data = base64.b64decode(b64, validate=True)
                except (binascii.Error, ValueError):
                    raise PoseInputError(f"{name}: not valid base64") from None
                out.append(await run_in_threadpool(self.preprocess, data, name))
            return out
        if keypoints is not None:
            single = _depth(keypoints) == 3
            items = [keypoints] if single else list(keypoints)
            self._check_count(len(items), "keypoints")
            return [await run_in_threadpool(self.keypoints_array, k, f"keypoints[{i}]") for i, k in enumerate(items)]
        raise PoseInputError("pose: no pose given (upload .pose files as multipart/form-data, or send "
                             "{\"pose\": [\"<base64>\"]} or {\"keypoints\": [...]})")

    def _check_count(self, n: int, field: str) -> None:
        if n == 0:
            raise PoseInputError(f"{field}: empty list")
        if n > self.settings.max_items:
            raise ApiError(413, f"{field}: {n} poses, at most {self.settings.max_items} per request", "TooMany")

    async def _uploads(self, request: Request) -> list[tuple[str, bytes]]:
        try:
            form = await request.form(max_files=self.settings.max_items, max_fields=100)
        except Exception as e:  # malformed multipart body, too many files
            raise ApiError(400, f"multipart body: {e}", "BadMultipart") from None
        uploads = [(v.filename or k, await v.read()) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        if not uploads:
            raise PoseInputError("file: no file in the multipart body (upload .pose files)")
        return uploads

    @staticmethod
    def _json(body: bytes, ctype: str) -> Any:
        if ctype not in ("application/json", "") and not ctype.endswith("+json"):
            raise ApiError(415, f"content-type {ctype!r} not supported; send application/json"
                                " (or multipart/form-data for uploads)", "UnsupportedMediaType")
        if not body.strip():
            return {}
        try:
            value = json.loads(body)
        except (UnicodeDecodeError, ValueError) as e:
            raise ApiError(400, f"body: not valid JSON ({e})", "BadJSON") from None
        if not isinstance(value, dict):
            raise ApiError(400, "body: expected a JSON object", "BadJSON")
        return value


def _depth(value: Any) -> int:
    d = 0
    while isinstance(value, list) and value:
        d, value = d + 1, value[0]
    return d


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it exceeds ``limit`` bytes (also without Content-Length)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"request body of {int(length)} bytes exceeds the limit of {limit} bytes", "TooLarge")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes", "TooLarge")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # starlette re-reads the cached body for request.form()
    return body


def create_app(model, index: SearchIndex | None = None, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app for a loaded model (and optional index)."""
    svc = Service(model, index, settings)
    app = FastAPIOffline(title="signclip", version="0.1.0",  # /docs assets served locally, no CDN
                         description="Embed sign-language poses and texts into one space; search an index.")
    app.state.service = svc
    app.router.add_event_handler("shutdown", svc.close)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError):
        return _error(e.status, e.detail, e.error)

    @app.exception_handler(SignCLIPInputError)
    async def _input_error(_: Request, e: SignCLIPInputError):
        return _error(422, str(e), type(e).__name__)

    @app.exception_handler(ValidationError)
    async def _validation(_: Request, e: ValidationError):
        msg = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        return _error(422, msg, "ValidationError")

    @app.exception_handler(RequestValidationError)
    async def _req_validation(_: Request, e: RequestValidationError):
        msg = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        return _error(422, msg, "ValidationError")

    @app.exception_handler(QueueFull)
    async def _busy(_: Request, e: QueueFull):
        return _error(503, str(e), "Busy")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException):
        return JSONResponse({"detail": e.detail, "error": "HTTPError"}, status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_: Request, e: Exception):
        log.exception("internal error")
        return _error(500, f"internal error: {type(e).__name__}: {e}", "InternalError")

    # ---- routes -----------------------------------------------------------------------------------
    @app.get("/api/health", tags=["service"])
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/api/info", tags=["service"])
    async def info() -> dict:
        cfg = svc.model.cfg
        return {"model": cfg.to_dict(), "embed_dim": cfg.embed_dim, "spoken_languages": cfg.spoken_languages,
                "signed_languages": cfg.signed_languages, "prompt_template": cfg.prompt_template,
                "index": svc.index.sizes() if svc.index else None, "limits": asdict(svc.settings),
                "max_frames": svc.max_frames,
                "batches": {"text": [svc.text_batcher.batches, svc.text_batcher.items],
                            "pose": [svc.pose_batcher.batches, svc.pose_batcher.items]}}

    def embedding_response(emb: np.ndarray, extra: dict | None = None) -> JSONResponse:
        return JSONResponse({"embedding": emb.tolist(), "dim": int(emb.shape[1]), "count": int(emb.shape[0]),
                             **(extra or {})})

    async def embed_text(request: Request):
        body = await read_body(request, svc.settings.max_upload_bytes)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "GET" and not body.strip():  # GET ?text=a&text=b&spoken_language=en
            q = request.query_params
            payload = TextRequest(text=q.getlist("text") or None, spoken_language=q.get("spoken_language"),
                                  signed_language=q.get("signed_language"))
        else:
            payload = TextRequest.model_validate(svc._json(body, ctype))
        prompts = svc.prompts(payload.items(), payload.spoken_language, payload.signed_language)
        return embedding_response(await svc.embed_texts(prompts), {"prompts": prompts})

    async def embed_pose(request: Request):
        body = await read_body(request, svc.settings.max_upload_bytes)
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

    @app.post("/api/search", tags=["search"], response_model=SearchResponse, responses=ERRORS,
              openapi_extra=_doc_body(SearchRequest, multipart=True))
    async def search(request: Request):
        """Text -> poses (default) or pose -> texts (default when the index has texts); top-k with scores."""
        if svc.index is None:
            raise ApiError(409, "this server has no index; start it with `signclip serve MODEL --index DIR`",
                           "NoIndex")
        body = await read_body(request, svc.settings.max_upload_bytes)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=20)
            fields = {k: v for k, v in form.multi_items() if not isinstance(v, UploadFile)}
            req = SearchRequest.model_validate(fields)
            arrays = await svc.pose_arrays(request, body)
        else:
            req = SearchRequest.model_validate(svc._json(body, ctype))
            arrays = None if req.text is not None else await svc._payload_arrays(req.pose, req.keypoints)
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
            sizes = svc.index.sizes()
            target = req.target or ("text" if sizes.get("text") else "pose")
        if target not in ("pose", "text"):
            raise ApiError(422, f"target: must be 'pose' or 'text', got {target!r}", "ValidationError")
        k = min(req.k, svc.settings.max_k)
        try:
            table = (await run_in_threadpool(svc.index.search, emb, target, k))[0]
        except KeyError as e:
            raise ApiError(409, f"target: {e.args[0]}", "NoIndex") from None
        return JSONResponse({"query": query, "target": target, "results": records(table)})

    @app.post("/api/pose/keypoints", tags=["pose"], responses=ERRORS,
              openapi_extra=_doc_body(PoseRequest, multipart=True))
    async def pose_keypoints(request: Request):
        """The preprocessed (shoulder-normalised, resampled) keypoints of one pose, for drawing."""
        body = await read_body(request, svc.settings.max_upload_bytes)
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

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def keypoints_payload(x: np.ndarray, svc: Service) -> dict:
    """(T, P, D) -> JSON: 2-D points rounded to 1e-3 (null = missing) and skeleton edges."""
    xy = np.round(x[..., :2].astype(np.float64), 3)
    frames = [[None if not np.isfinite(p).all() else [float(p[0]), float(p[1])] for p in f] for f in xy]
    return {"frames": int(x.shape[0]), "points": int(x.shape[1]), "fps": svc.model.cfg.pose.fps,
            "edges": svc.edges, "keypoints": frames}
