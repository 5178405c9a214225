"""What the HTTP routes stand on: limits, the loaded model and index, the dynamic batchers, and the
parsing of request bodies into prompts and preprocessed poses (every pose through
:func:`signclip.pose.preprocess.prepare_pose`, so any format it reads is served)."""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from signclip.errors import PoseInputError, TextInputError
from signclip.pose.layout import get_layout
from signclip.pose.preprocess import prepare_pose
from signclip.pose.video import is_video_bytes, video_to_pose
from signclip.serve.budget import MemoryBudget, Reservation
from signclip.serve.dynamic_batching import DynamicBatcher
from signclip.serve.schemas import PoseRequest, records


@dataclass
class ServeSettings:
    """Limits, batching and access of the service."""

    max_upload_bytes: int = 50 * 1024 * 1024  # whole request body
    memory_budget_bytes: int = 1024 * 1024 * 1024  # requests in flight together (bodies and their parsing)
    max_frames: int | None = None  # frames the model sees (longer poses resampled); default: the model's
    max_items: int = 256  # texts or poses per request
    max_k: int = 1000
    max_video_seconds: float = 20.0  # longer uploaded videos are refused before decoding
    batching: bool = True  # False: every input runs alone (batch size 1), for comparison
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 4096  # queued inputs per modality; beyond that requests get 503
    header_timeout_s: float = 10.0  # a connection that has not sent its request line and headers is closed
    read_timeout_s: float = 30.0  # a request body not received within this time gets 408
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed
    max_connections: int = 512  # concurrent connections; beyond that uvicorn answers 503
    api_key: str | None = field(default=None, repr=False)  # required in X-API-Key (or Bearer) on /api/* but health
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API
    precision: str = "auto"  # the model's inference precision (SignCLIP.set_precision): auto, fp32 or bf16


class ApiError(Exception):
    """An error answered as ``{"detail": ..., "error": ...}`` with an HTTP status."""

    def __init__(self, status: int, detail: str, error: str = "BadRequest"):
        super().__init__(detail)
        self.status, self.detail, self.error = status, detail, error


class Service:
    """The model, the optional index (:class:`signclip.serve.index.SearchIndex`) and the two batchers
    behind the routes."""

    def __init__(self, model, index=None, settings: ServeSettings | None = None):
        self.model, self.index = model.eval(), index
        self.settings = settings or ServeSettings()
        model.set_precision(self.settings.precision)
        self.max_frames = min(self.settings.max_frames or model.cfg.pose.max_frames, model.cfg.pose.max_frames)
        batch = self.settings.max_batch if self.settings.batching else 1
        wait = self.settings.max_wait_ms if self.settings.batching else 0.0
        self.text_batcher = DynamicBatcher(self._embed_prompts, batch, wait, self.settings.max_queue, "text-batcher")
        self.pose_batcher = DynamicBatcher(self._embed_arrays, batch, wait, self.settings.max_queue, "pose-batcher")
        self.pose_cfg = replace(model.cfg.pose, max_frames=self.max_frames)  # what uploads are preprocessed with
        self.edges = get_layout(model.cfg.pose.layout).skeleton_edges
        if index is not None:
            index.check_model(model)
        self.data_root = data_root(index)
        self.budget = MemoryBudget(self.settings.memory_budget_bytes)

    # ---- model calls (run in the batcher threads) ----------------------------------------------
    def _embed_prompts(self, prompts: list[str]) -> np.ndarray:
        return self.model.encode_text(prompts, batch_size=len(prompts), progress=False)  # (N, E)

    def _embed_arrays(self, arrays: list[np.ndarray]) -> np.ndarray:
        return self.model.encode_arrays(arrays, len(arrays), progress=False)  # (N, E), padding-correct

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
        """Uploaded bytes -> (T, P, D) through read_pose (any format it reads), frames capped; a video
        longer than ``max_video_seconds`` is refused before it is decoded."""
        if is_video_bytes(data, name):
            return prepare_pose(video_to_pose(data, name, max_seconds=self.settings.max_video_seconds),
                                self.pose_cfg, name)
        return prepare_pose(data, self.pose_cfg, name)

    def keypoints_array(self, value: Any, name: str) -> np.ndarray:
        """A JSON (T, P, D) nested list (null = missing) -> checked array, frames capped."""
        try:
            x = np.array(value, dtype=np.float32)  # None -> nan
        except (TypeError, ValueError) as e:
            raise PoseInputError(f"{name}: not a numeric (frames, points, dims) array ({e})") from None
        return prepare_pose(x, self.pose_cfg, name)

    @asynccontextmanager
    async def request_body(self, request: Request) -> AsyncIterator[bytes]:
        """The request body within this service's size and time limits; its share of the memory budget is
        held for the block (while the body is parsed, preprocessed and embedded)."""
        async with self.budget.reservation() as held:
            yield await read_body(request, self.settings.max_upload_bytes, self.settings.read_timeout_s, held)

    def results(self, table) -> list[dict]:
        """Search results as JSON rows; pose paths relative to the indexed data's folder, never absolute."""
        rows = records(table)
        if self.data_root:
            for row in rows:
                if isinstance(row.get("path"), str):
                    row["path"] = os.path.relpath(row["path"], self.data_root)
        return rows

    async def embed_arrays(self, arrays: list[np.ndarray]) -> np.ndarray:
        return np.stack(await self.pose_batcher.run(arrays))  # (N, E)

    async def pose_arrays(self, request: Request, body: bytes) -> list[np.ndarray]:
        """All poses of a request: multipart uploads, or JSON base64 ``pose`` / ``keypoints``."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            uploads = await self._uploads(request)
            return [await run_in_threadpool(self.preprocess, data, name) for name, data in uploads]
        payload = PoseRequest.model_validate(self.parse_json(body, ctype))
        return await self.payload_arrays(payload.pose, payload.keypoints)

    async def payload_arrays(self, pose: Any, keypoints: Any) -> list[np.ndarray]:
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
            single = depth(keypoints) == 3
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
    def parse_json(body: bytes, ctype: str) -> Any:
        if ctype not in ("application/json", "") and not ctype.endswith("+json"):
            raise ApiError(415, f"content-type {ctype!r} not supported; send application/json"
                                " (or multipart/form-data for uploads)", "UnsupportedMediaType")
        if not body.strip():
            return {}
        try:
            value = json.loads(body)
        except (UnicodeDecodeError, ValueError) as e:
            raise ApiError(400, f"body: not valid JSON ({e})", "BadJSON") from None
        except RecursionError:
            raise ApiError(400, "body: JSON nested too deeply", "BadJSON") from None
        if not isinstance(value, dict):
            raise ApiError(400, "body: expected a JSON object", "BadJSON")
        return value


def depth(value: Any) -> int:
    """Nesting depth of a JSON list (along its first items)."""
    d = 0
    while isinstance(value, list) and value:
        d, value = d + 1, value[0]
    return d


async def read_body(request: Request, limit: int, timeout: float = 30.0, held: Reservation | None = None) -> bytes:
    """The request body; 413 as soon as it exceeds ``limit`` bytes (also without Content-Length), 408 when it
    has not arrived within ``timeout`` seconds (a trickled body does not hold the server). With ``held``, the
    body's share of the memory budget is reserved first (from Content-Length, else chunk by chunk) within the
    same time; :class:`~signclip.serve.budget.BudgetExhausted` (503) when it is not free by then."""
    length = request.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else None
    if declared is not None and declared > limit:
        raise ApiError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes", "TooLarge")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if held is not None and declared:
        await held.grow(declared, deadline)
    chunks, size = [], 0
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(0.0, deadline - loop.time()))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise ApiError(408, f"request body: not received within {timeout:g} s", "Timeout") from None
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes", "TooLarge")
        if held is not None and declared is None:
            await held.grow(len(chunk), deadline)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # starlette re-reads the cached body for request.form()
    return body


def data_root(index) -> str | None:
    """The folder all indexed pose paths share: results show paths relative to it, never absolute ones."""
    part = index.parts.get("pose") if index is not None else None
    if part is None or "path" not in part.metadata.columns or not len(part.metadata):
        return None
    folders = {os.path.dirname(str(p)) for p in part.metadata["path"].dropna().unique()}
    return os.path.commonpath(sorted(folders)) if folders else None
