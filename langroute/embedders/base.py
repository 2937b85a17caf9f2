"""The embedder protocol and the helpers every embedder shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Embedder", "embed_documents", "embedding_dimension", "normalize"]


@runtime_checkable
class Embedder(Protocol):
    """What the router needs from an embedding model.

    Vectors are float32, L2-normalised, shape ``(n, dimension)`` for batches.
    ``fingerprint`` names the model: a saved router refuses to load with another.
    """

    @property
    def fingerprint(self) -> str:
        """A stable name of the model and settings that produce the vectors."""
        ...

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed exemplar texts."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries in one batch."""
        ...


def normalize(vectors: Any) -> np.ndarray:
    """Return a C-contiguous float32 2-D array with unit-length rows (zero rows stay zero)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def computes_in_process(embedder: Any) -> bool:
    """Whether ``embedder`` computes its vectors in this process (no network, no waiting).

    True for langroute's own encoders (they say so with ``in_process = True``) and a
    :class:`~langroute.embedders.CachedEmbedder` around one; False for anything else,
    such as a LangChain or LlamaIndex embeddings object that may call an API.

    Example:
        >>> from langroute.embedders import HashingEmbedder
        >>> computes_in_process(HashingEmbedder()), computes_in_process(object())
        (True, False)
    """
    return getattr(embedder, "in_process", False) is True


def embedding_dimension(model: Any) -> int:
    """``get_embedding_dimension`` (sentence-transformers >= 6) or the older name."""
    getter = getattr(model, "get_embedding_dimension", None)
    if getter is None:
        getter = model.get_sentence_embedding_dimension
    return int(getter())


def embed_documents(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    show_progress: bool = False,
    label: str = "Embedding",
) -> np.ndarray:
    """``embedder.embed_documents(texts)`` in chunks of 256, with a progress bar if asked.

    Example:
        >>> from langroute.embedders import HashingEmbedder
        >>> embed_documents(HashingEmbedder(), ["a", "b"]).shape
        (2, 256)
    """
    if not show_progress or len(texts) <= 256:
        return embedder.embed_documents(list(texts))
    from rich.progress import Progress

    parts = []
    with Progress(transient=True) as progress:
        task = progress.add_task(label, total=len(texts))
        for start in range(0, len(texts), 256):
            chunk = list(texts[start : start + 256])
            parts.append(embedder.embed_documents(chunk))
            progress.advance(task, len(chunk))
    return np.concatenate(parts)
