"""A bounded LRU cache of query vectors in front of any embedder."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from langroute.embedders.base import Embedder, computes_in_process

__all__ = ["DEFAULT_CACHE_MAX_BYTES", "CachedEmbedder"]

DEFAULT_CACHE_MAX_BYTES = 64 * 2**20
"""The most bytes (texts and vectors) a :class:`CachedEmbedder` holds by default."""


class CachedEmbedder:
    """Wraps an embedder with a bounded LRU cache of query vectors (exact text match).

    Bounded by entries (``max_size``) and by bytes (``max_bytes``: the texts and the
    vectors held); the least recently used go first, and a text too large to fit is
    embedded but not kept.

    Example:
        >>> from langroute.embedders import HashingEmbedder
        >>> emb = CachedEmbedder(HashingEmbedder(), max_size=2)
        >>> _ = emb.embed_queries(["a", "a"])
        >>> emb.cache_info()["hits"]
        1
    """

    def __init__(
        self, embedder: Embedder, max_size: int = 4096, max_bytes: int = DEFAULT_CACHE_MAX_BYTES
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.inner = embedder
        self.max_size = max_size
        self.max_bytes = max_bytes
        self._bytes = 0
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

    @property
    def in_process(self) -> bool:
        """Whether the wrapped embedder computes its vectors in this process."""
        return computes_in_process(self.inner)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Exemplars are embedded once; no caching needed."""
        return self.inner.embed_documents(texts)

    def lookup(self, text: str) -> np.ndarray | None:
        """The cached vector of ``text`` (counted as a hit), or ``None`` without embedding.

        Example:
            >>> from langroute.embedders import HashingEmbedder
            >>> emb = CachedEmbedder(HashingEmbedder())
            >>> emb.lookup("a") is None
            True
        """
        if self.max_size <= 0:
            return None
        with self._lock:
            vector = self._cache.get(text)
            if vector is not None:
                self._cache.move_to_end(text)
                self._hits += 1
            return vector

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
                    self._keep(text, np.array(vector))  # a copy: a row view pins its batch
                while self._cache and (
                    len(self._cache) > self.max_size or self._bytes > self.max_bytes
                ):
                    old_text, old_vector = self._cache.popitem(last=False)
                    self._bytes -= _entry_bytes(old_text, old_vector)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.ascontiguousarray(np.stack([found[i] for i in range(len(texts))]))

    def _keep(self, text: str, vector: np.ndarray) -> None:
        """Cache one vector (the caller holds the lock and trims afterwards)."""
        size = _entry_bytes(text, vector)
        if size > self.max_bytes:
            return  # it would push everything else out and still not fit
        previous = self._cache.get(text)
        if previous is not None:
            self._bytes -= _entry_bytes(text, previous)
        self._cache[text] = vector
        self._cache.move_to_end(text)
        self._bytes += size

    def cache_info(self) -> dict[str, int]:
        """Hits, misses, current size and bytes held, and the bounds."""
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "size": len(self._cache),
                "max_size": self.max_size,
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
            }

    def clear(self) -> None:
        """Empty the cache."""
        with self._lock:
            self._cache.clear()
            self._bytes = 0


def _entry_bytes(text: str, vector: np.ndarray) -> int:
    """What one cache entry holds: the text object and the vector's data."""
    return sys.getsizeof(text) + int(vector.nbytes)
