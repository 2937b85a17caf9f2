"""A model-free embedder for tests and surface-vocabulary routing."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from langroute.embedders.base import normalize

__all__ = ["HashingEmbedder"]


class HashingEmbedder:
    """A model-free embedder: hashed word unigrams and bigrams, normalised.

    Deterministic and instant; good for tests and for routing on surface vocabulary.

    Example:
        >>> emb = HashingEmbedder(dimension=32)
        >>> float(emb.embed_queries(["a b"])[0] @ emb.embed_queries(["a b"])[0]) > 0.99
        True
    """

    _TOKEN = re.compile(r"[a-z0-9]+")
    in_process = True
    """Its vectors are computed here (see :func:`~langroute.embedders.computes_in_process`)."""

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
