"""A FAISS inner-product index over normalised vectors, keyed by exemplar id.

Inner product on unit vectors is cosine similarity. ``kind="flat"`` is exact;
``kind="hnsw"`` is approximate and fast for large sets (removals are tombstoned and
compacted). ``kind="auto"`` picks HNSW above ``auto_threshold`` vectors at build time.
All methods are safe to call from several threads: searches see either the state
before or after a concurrent add, never a half-added batch.

Example:
    >>> import numpy as np
    >>> from langroute.index import VectorIndex
    >>> index = VectorIndex(dimension=2)
    >>> index.add(["a", "b"], np.array([[1, 0], [0, 1]], dtype=np.float32))
    >>> index.search(np.array([[1, 0]], dtype=np.float32), k=1)[1][0]
    ['a']
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

IndexKind = Literal["flat", "hnsw", "auto"]


def _faiss() -> Any:
    import faiss

    return faiss


class VectorIndex:
    """Maps exemplar ids to vectors and answers top-k inner-product searches."""

    def __init__(
        self,
        dimension: int,
        kind: IndexKind = "flat",
        *,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        auto_threshold: int = 50_000,
    ) -> None:
        if kind not in ("flat", "hnsw", "auto"):
            raise ValueError(f"unknown index kind {kind!r} (use 'flat', 'hnsw' or 'auto')")
        self.dimension = dimension
        self.requested_kind: IndexKind = kind
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.auto_threshold = auto_threshold
        self._lock = threading.RLock()
        self._index: Any = None
        self._kind: Literal["flat", "hnsw"] = "hnsw" if kind == "hnsw" else "flat"
        self._key_of: dict[int, str] = {}  # faiss id -> exemplar id
        self._faiss_id: dict[str, int] = {}  # exemplar id -> faiss id
        self._tombstones: set[int] = set()
        self._next_id = 0

    # -- construction -------------------------------------------------------------

    @property
    def kind(self) -> Literal["flat", "hnsw"]:
        """The kind in use (``auto`` resolved)."""
        return self._kind

    def _new_index(self, kind: Literal["flat", "hnsw"]) -> Any:
        faiss = _faiss()
        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dimension, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.ef_construction
            inner.hnsw.efSearch = self.ef_search
        else:
            inner = faiss.IndexFlatIP(self.dimension)
        return faiss.IndexIDMap2(inner)

    def _ensure_index(self, incoming: int) -> None:
        if self._index is None:
            if self.requested_kind == "auto":
                self._kind = "hnsw" if incoming >= self.auto_threshold else "flat"
            self._index = self._new_index(self._kind)

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        array = np.ascontiguousarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.dimension:
            raise ValueError(
                f"vectors must have shape (n, {self.dimension}), got {tuple(array.shape)}"
            )
        if not np.isfinite(array).all():
            raise ValueError("vectors contain NaN or infinity")
        return array

    # -- mutation -------------------------------------------------------------------

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Add (or replace) vectors under exemplar ids."""
        array = self._check(vectors)
        if len(keys) != array.shape[0]:
            raise ValueError(f"{len(keys)} ids for {array.shape[0]} vectors")
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate ids in one add")
        with self._lock:
            self._ensure_index(len(keys))
            replaced = [key for key in keys if key in self._faiss_id]
            if replaced:
                self._remove_locked(replaced)
            ids = np.arange(self._next_id, self._next_id + len(keys), dtype=np.int64)
            self._next_id += len(keys)
            self._index.add_with_ids(array, ids)
            for faiss_id, key in zip(ids.tolist(), keys):
                self._key_of[faiss_id] = key
                self._faiss_id[key] = faiss_id

    def remove(self, keys: Sequence[str]) -> int:
        """Remove ids; unknown ids are ignored. Returns how many were removed."""
        with self._lock:
            return self._remove_locked([key for key in keys if key in self._faiss_id])

    def _remove_locked(self, keys: Sequence[str]) -> int:
        faiss_ids = [self._faiss_id.pop(key) for key in keys]
        for faiss_id in faiss_ids:
            del self._key_of[faiss_id]
        if not faiss_ids:
            return 0
        if self._kind == "flat":
            self._index.remove_ids(np.asarray(faiss_ids, dtype=np.int64))
        else:
            # HNSW graphs cannot drop nodes: hide them, and rebuild once they pile up.
            self._tombstones.update(faiss_ids)
            if len(self._tombstones) > max(64, self._index.ntotal // 4):
                self._compact_locked()
        return len(faiss_ids)

    def _compact_locked(self) -> None:
        live = sorted(self._key_of)
        vectors = self._reconstruct_locked(live)
        self._index = self._new_index(self._kind)
        self._tombstones.clear()
        if live:
            self._index.add_with_ids(vectors, np.asarray(live, dtype=np.int64))

    def _reconstruct_locked(self, faiss_ids: Sequence[int]) -> np.ndarray:
        if not faiss_ids:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._index.reconstruct(int(i)) for i in faiss_ids]).astype(np.float32)

    def vectors(self, keys: Sequence[str]) -> np.ndarray:
        """Stored vectors of the given ids (KeyError for an unknown id)."""
        with self._lock:
            return self._reconstruct_locked([self._faiss_id[key] for key in keys])

    # -- queries --------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._faiss_id)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._faiss_id

    def keys(self) -> list[str]:
        """All exemplar ids in insertion order."""
        with self._lock:
            return [self._key_of[i] for i in sorted(self._key_of)]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k by inner product for each query row.

        Returns:
            ``(similarities, keys)``: similarities of shape ``(n, k')`` sorted
            descending and the matching exemplar ids, with ``k' = min(k, len(self))``.
        """
        array = self._check(queries)
        with self._lock:
            live = len(self._faiss_id)
            if self._index is None or live == 0 or k <= 0:
                return np.zeros((array.shape[0], 0), dtype=np.float32), [
                    [] for _ in range(array.shape[0])
                ]
            k_eff = min(k, live)
            fetch = min(k_eff + len(self._tombstones), self._index.ntotal)
            sims, ids = self._index.search(array, fetch)
            key_of = self._key_of
            out_sims = np.zeros((array.shape[0], k_eff), dtype=np.float32)
            out_keys: list[list[str]] = []
            for row in range(array.shape[0]):
                keys: list[str] = []
                for sim, faiss_id in zip(sims[row], ids[row]):
                    key = key_of.get(int(faiss_id))
                    if key is None:
                        continue
                    out_sims[row, len(keys)] = sim
                    keys.append(key)
                    if len(keys) == k_eff:
                        break
                out_keys.append(keys)
            # An approximate index may return fewer live hits than asked: trim to the shortest.
            shortest = min(len(keys) for keys in out_keys)
            if shortest < k_eff:
                out_sims = out_sims[:, :shortest]
                out_keys = [keys[:shortest] for keys in out_keys]
            return out_sims, out_keys

    # -- persistence ----------------------------------------------------------------

    def write(self, path: Path) -> list[int]:
        """Write the FAISS index to ``path``; returns the FAISS ids in :meth:`keys` order."""
        faiss = _faiss()
        with self._lock:
            if self._index is None:
                self._ensure_index(0)
            faiss.write_index(self._index, str(path))
            return sorted(self._key_of)

    def read(self, path: Path, keys: Sequence[str], faiss_ids: Sequence[int]) -> None:
        """Replace the contents with an index file written by :meth:`write`."""
        faiss = _faiss()
        index = faiss.read_index(str(path))
        if index.d != self.dimension:
            raise ValueError(f"index dimension {index.d} != expected {self.dimension}")
        stored = (
            set(faiss.vector_to_array(index.id_map).tolist()) if hasattr(index, "id_map") else set()
        )
        missing = [i for i in faiss_ids if i not in stored]
        if missing:
            raise ValueError(f"{len(missing)} exemplar ids have no vector in the index")
        inner = faiss.downcast_index(index.index)
        kind: Literal["flat", "hnsw"] = "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"
        if kind == "hnsw":
            inner.hnsw.efSearch = self.ef_search
        with self._lock:
            self._index = index
            self._kind = kind
            self._key_of = dict(zip(faiss_ids, keys))
            self._faiss_id = dict(zip(keys, faiss_ids))
            self._tombstones = stored - set(faiss_ids)
            self._next_id = max(stored, default=-1) + 1
