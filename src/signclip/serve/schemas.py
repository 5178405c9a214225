"""Request and response bodies of the HTTP API (pydantic; also the OpenAPI documentation)."""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

StrOrList = Union[str, list[str]]


class TextRequest(BaseModel):
    """``{"text": ["house", ...]}`` (the reference service's body; a single string is accepted)."""

    model_config = ConfigDict(extra="ignore")
    text: Optional[StrOrList] = Field(None, description="text(s) to embed", examples=[["house", "A"]])
    texts: Optional[StrOrList] = Field(None, description="alias of text")
    spoken_language: Optional[StrOrList] = Field(None, description="e.g. 'en' (one code, or one per text)")
    signed_language: Optional[StrOrList] = Field(None, description="e.g. 'ase' (one code, or one per text)")

    def items(self) -> list[str]:
        value = self.text if self.text is not None else self.texts
        if value is None:
            return []
        return [value] if isinstance(value, str) else list(value)


class PoseRequest(BaseModel):
    """``{"pose": ["<base64 .pose>", ...]}`` (reference body) or preprocessed ``keypoints``."""

    model_config = ConfigDict(extra="ignore")
    pose: Optional[StrOrList] = Field(None, description="base64 of .pose file bytes (one or a list)")
    keypoints: Optional[list[Any]] = Field(
        None, description="preprocessed poses in the model's layout: one (T, P, D) nested list or a list of them; "
                          "null for missing points")


class SearchRequest(BaseModel):
    """A text or a pose query against the loaded index."""

    model_config = ConfigDict(extra="ignore")
    text: Optional[str] = Field(None, description="query text (searches poses by default)")
    spoken_language: Optional[str] = None
    signed_language: Optional[str] = None
    pose: Optional[str] = Field(None, description="base64 .pose query (searches texts if the index has them)")
    keypoints: Optional[list[Any]] = Field(None, description="one preprocessed (T, P, D) pose")
    k: int = Field(10, ge=1, le=1000, description="number of results")
    target: Optional[str] = Field(None, description="'pose' or 'text': which part of the index to search")


class EmbeddingResponse(BaseModel):
    embedding: list[list[float]] = Field(..., description="(N, E) L2-normalised embeddings, in request order")
    dim: int
    count: int


class SearchResponse(BaseModel):
    query: dict[str, Any]
    target: str
    results: list[dict[str, Any]] = Field(..., description="rank, score (cosine), id, then metadata columns")


class ErrorResponse(BaseModel):
    detail: str = Field(..., description="what was wrong, naming the field or file")
    error: str = Field(..., description="error type, e.g. PoseInputError")


def records(table: pd.DataFrame) -> list[dict]:
    """JSON-safe rows (NaN -> None, numpy scalars -> Python)."""
    clean = table.astype(object).where(pd.notna(table), None)
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
            for row in clean.to_dict(orient="records")]
