"""Any embedding model as an :class:`~langroute.embedders.Embedder`.

LangChain ``Embeddings`` and LlamaIndex ``BaseEmbedding`` objects (or anything with
their methods) are adapted without importing either framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from langroute.embedders.base import Embedder, normalize
from langroute.embedders.cache import CachedEmbedder
from langroute.embedders.sentence_transformer import SentenceTransformerEmbedder

__all__ = ["as_embedder", "load_encoder"]


class _FrameworkEmbeddingAdapter:
    """Shared part of the adapters: a fingerprint and a dimension found by one probe."""

    def __init__(self, wrapped: Any, fingerprint: str | None = None) -> None:
        self._wrapped = wrapped
        self._fingerprint = fingerprint or _describe(wrapped)
        self._dimension: int | None = None

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.embed_queries(["dimension probe"]).shape[1])
        return self._dimension

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class _LangChainEmbeddingsAdapter(_FrameworkEmbeddingAdapter):
    """Adapts an object with ``embed_documents``/``embed_query`` (LangChain ``Embeddings``)."""

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return normalize(self._wrapped.embed_documents(list(texts)))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        # LangChain models may embed queries differently from documents: keep that.
        return normalize([self._wrapped.embed_query(text) for text in texts])


class _LlamaIndexEmbeddingAdapter(_FrameworkEmbeddingAdapter):
    """Adapts an object with ``get_text_embedding_batch``/``get_query_embedding`` (LlamaIndex)."""

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return normalize(self._wrapped.get_text_embedding_batch(list(texts)))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return normalize([self._wrapped.get_query_embedding(text) for text in texts])


def _describe(obj: Any) -> str:
    for attribute in ("model", "model_name", "model_id"):
        value = getattr(obj, attribute, None)
        if isinstance(value, str) and value:
            return f"{type(obj).__name__}:{value}"
    return type(obj).__name__


def as_embedder(obj: Any = None, *, fingerprint: str | None = None) -> Embedder:
    """Return an :class:`Embedder` for ``obj``.

    ``None`` gives the bundled MiniLM; a LangChain ``Embeddings`` or a LlamaIndex
    ``BaseEmbedding`` (or anything with their methods) is adapted; an ``Embedder`` is
    returned as is.

    Example:
        >>> from langroute.embedders import HashingEmbedder
        >>> as_embedder(HashingEmbedder()).fingerprint
        'hashing:256'
    """
    if obj is None:
        return SentenceTransformerEmbedder()
    if isinstance(obj, CachedEmbedder):
        return obj
    if hasattr(obj, "get_text_embedding_batch") and hasattr(obj, "get_query_embedding"):
        return _LlamaIndexEmbeddingAdapter(obj, fingerprint)
    if hasattr(obj, "embed_queries") and hasattr(obj, "fingerprint") and hasattr(obj, "dimension"):
        return obj
    if hasattr(obj, "embed_documents") and hasattr(obj, "embed_query"):
        return _LangChainEmbeddingsAdapter(obj, fingerprint)
    raise TypeError(
        f"{type(obj).__name__} is not an embedder: expected embed_documents/embed_queries "
        "(langroute), embed_documents/embed_query (LangChain) or "
        "get_text_embedding_batch/get_query_embedding (LlamaIndex)"
    )


def load_encoder(embedder: Any) -> float:
    """Load the model behind ``embedder`` now if it loads lazily; the seconds spent.

    ``0.0`` for an embedder that was loaded already or has nothing to load.

    Example:
        >>> from langroute.embedders import HashingEmbedder
        >>> load_encoder(CachedEmbedder(HashingEmbedder()))
        0.0
    """
    while isinstance(embedder, CachedEmbedder):
        embedder = embedder.inner
    if isinstance(embedder, SentenceTransformerEmbedder):
        return embedder.load()
    return 0.0


def embedder_from_spec(spec: str | None, fingerprint: str | None = None) -> Embedder:
    """The embedder a command-line or config value names (or a saved router's fingerprint).

    ``None``, ``"minilm"`` or ``"default"``: the bundled model; ``"hashing"`` or
    ``"hashing:SIZE"``: the model-free :class:`HashingEmbedder`; anything else: a
    sentence-transformers model name or path. With no ``spec``, a ``hashing:``
    ``fingerprint`` rebuilds that hashing embedder.

    Example:
        >>> embedder_from_spec("hashing:64").dimension
        64
    """
    from langroute.embedders.hashing import HashingEmbedder
    from langroute.embedders.sentence_transformer import (
        SentenceTransformerEmbedder,
        embedder_for_fingerprint,
    )

    if spec is None and fingerprint is not None:
        if fingerprint.startswith("hashing:"):
            return HashingEmbedder(int(fingerprint.split(":")[1]))
        return embedder_for_fingerprint(fingerprint)  # the backend that made those vectors
    if spec is None or spec in ("minilm", "default"):
        return SentenceTransformerEmbedder()
    if spec == "hashing" or spec.startswith("hashing:"):
        size = int(spec.split(":")[1]) if ":" in spec else 256
        return HashingEmbedder(size)
    return SentenceTransformerEmbedder(spec)
