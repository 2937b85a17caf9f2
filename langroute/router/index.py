"""A FAISS inner-product index over normalised vectors, keyed by exemplar id.

Inner product on unit vectors is cosine similarity. ``kind="flat"`` is exact;
``kind="hnsw"`` is approximate and fast for large sets (removals are tombstoned and
compacted). ``kind="auto"`` picks HNSW above ``auto_threshold`` vectors at build time.
An HNSW index stores its vectors as float32 (``storage="flat"``) or as 8-bit scalar
codes (``storage="sq8"``, a quarter of the memory: 1M x 384 dims in about 0.5 GB
instead of 1.7 GB, at a small cost in recall); ``storage="auto"`` picks ``sq8`` when
the first batch has at least ``sq8_threshold`` vectors.
All methods are safe to call from several threads: searches see either the state
before or after a concurrent add, never a half-added batch.

Example:
    >>> import numpy as np
    >>> from langroute.router.index import VectorIndex
    >>> index = VectorIndex(dimension=2)
    >>> index.add(["a", "b"], np.array([[1, 0], [0, 1]], dtype=np.float32))
    >>> index.search(np.array([[1, 0]], dtype=np.float32), k=1)[1][0]
    ['a']
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

IndexKind = Literal["flat", "hnsw", "auto"]
Storage = Literal["auto", "flat", "sq8"]
SMALL_BATCH = 4
"""Searches of at most this many queries use one OpenMP thread."""

_threads_configured = False


def _faiss() -> Any:
    import faiss

    global _threads_configured
    if not _threads_configured:
        _threads_configured = True
        # OpenMP already honours OMP_NUM_THREADS; LANGROUTE_NUM_THREADS caps it further.
        if os.environ.get("LANGROUTE_NUM_THREADS"):
            from langroute.embedders import num_threads

            faiss.omp_set_num_threads(num_threads())
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
        ef_search: int = 128,
        auto_threshold: int = 50_000,
        storage: Storage = "auto",
        sq8_threshold: int = 200_000,
    ) -> None:
        if kind not in ("flat", "hnsw", "auto"):
            raise ValueError(f"unknown index kind {kind!r} (use 'flat', 'hnsw' or 'auto')")
        if storage not in ("auto", "flat", "sq8"):
            raise ValueError(f"unknown storage {storage!r} (use 'auto', 'flat' or 'sq8')")
        self.dimension = dimension
        self.requested_kind: IndexKind = kind
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.auto_threshold = auto_threshold
        self.requested_storage: Storage = storage
        self.sq8_threshold = sq8_threshold
        self._lock = threading.RLock()
        self._index: Any = None
        self._kind: Literal["flat", "hnsw"] = "hnsw" if kind == "hnsw" else "flat"
        self._storage: Literal["flat", "sq8"] = "flat"
        self._key_of: dict[int, str] = {}  # faiss id -> exemplar id
        self._faiss_id: dict[str, int] = {}  # exemplar id -> faiss id
        self._tombstones: set[int] = set()
        self._next_id = 0

    # -- construction -------------------------------------------------------------

    @property
    def kind(self) -> Literal["flat", "hnsw"]:
        """The kind in use (``auto`` resolved)."""
        return self._kind

    @property
    def storage(self) -> Literal["flat", "sq8"]:
        """How an HNSW index stores vectors (``auto`` resolved); ``flat`` for a flat index."""
        return self._storage

    def describe(self) -> str:
        """A short description of the FAISS structure in use, e.g. ``hnsw-sq8(M=32,ef=128)``."""
        if self._kind == "flat":
            return "flat"
        name = "hnsw-sq8" if self._storage == "sq8" else "hnsw"
        return f"{name}(M={self.hnsw_m},ef={self.ef_search})"

    def _new_index(self, kind: Literal["flat", "hnsw"], training: np.ndarray | None = None) -> Any:
        faiss = _faiss()
        if kind == "hnsw" and self._storage == "sq8":
            inner = faiss.IndexHNSWSQ(
                self.dimension,
                faiss.ScalarQuantizer.QT_8bit,
                self.hnsw_m,
                faiss.METRIC_INNER_PRODUCT,
            )
            quantizer = faiss.downcast_index(inner.storage).sq
            quantizer.rangestat_arg = 0.05  # widen the trained range a little: fewer clips
            sample = training if training is not None else np.zeros((0, self.dimension))
            if len(sample) > 100_000:
                sample = sample[np.linspace(0, len(sample) - 1, 100_000).astype(np.int64)]
            if len(sample) < 1000:  # too few to learn ranges from: unit vectors lie in [-1, 1]
                eye = np.eye(self.dimension, dtype=np.float32)
                sample = np.vstack([sample, eye, -eye])
            inner.train(np.ascontiguousarray(sample, dtype=np.float32))
        elif kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dimension, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        else:
            inner = faiss.IndexFlatIP(self.dimension)
        if kind == "hnsw":
            inner.hnsw.efConstruction = self.ef_construction
            inner.hnsw.efSearch = self.ef_search
        return faiss.IndexIDMap2(inner)

    def _ensure_index(self, incoming: int, training: np.ndarray | None = None) -> None:
        if self._index is None:
            if self.requested_kind == "auto":
                self._kind = "hnsw" if incoming >= self.auto_threshold else "flat"
            if self._kind == "hnsw":
                self._storage = (
                    "sq8"
                    if self.requested_storage == "sq8"
                    or (self.requested_storage == "auto" and incoming >= self.sq8_threshold)
                    else "flat"
                )
            self._index = self._new_index(self._kind, training)

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
            self._ensure_index(len(keys), array)
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
        self._index = self._new_index(self._kind, vectors)
        self._tombstones.clear()
        if live:
            self._index.add_with_ids(vectors, np.asarray(live, dtype=np.int64))

    def _reconstruct_locked(self, faiss_ids: Sequence[int]) -> np.ndarray:
        if not faiss_ids:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(faiss_ids) > 64:  # one call for many rows (IndexIDMap2 keeps a reverse map)
            return np.ascontiguousarray(
                self._index.reconstruct_batch(np.asarray(faiss_ids, dtype=np.int64)),
                dtype=np.float32,
            )
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
            sims, ids = self._search_locked(array, fetch)
            key_of = self._key_of
            out_sims = np.zeros((array.shape[0], k_eff), dtype=np.float32)
            out_keys: list[list[str]] = []
            for row in range(array.shape[0]):
                # the live hits in rank order (a removed exemplar's id, or -1, has no key),
                # the first k_eff of them; plain ints, not numpy scalars, per hit
                hits = [
                    (col, key)
                    for col, faiss_id in enumerate(ids[row].tolist())
                    if (key := key_of.get(faiss_id)) is not None
                ][:k_eff]
                out_sims[row, : len(hits)] = sims[row, [col for col, _ in hits]]
                out_keys.append([key for _, key in hits])
            # An approximate index may return fewer live hits than asked: trim to the shortest.
            shortest = min(len(keys) for keys in out_keys)
            if shortest < k_eff:
                out_sims = out_sims[:, :shortest]
                out_keys = [keys[:shortest] for keys in out_keys]
            return out_sims, out_keys

    def _search_locked(self, array: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search; a few queries run on one OpenMP thread.

        Splitting one query over threads gains little, and while the encoder's own
        thread pool is still spinning (or other work shares the cores) it can cost
        tens of milliseconds; ``omp_set_num_threads`` is per calling thread, so this
        does not affect other threads' batches.
        """
        if array.shape[0] <= SMALL_BATCH:
            faiss = _faiss()
            previous = faiss.omp_get_max_threads()
            if previous > 1:
                faiss.omp_set_num_threads(1)
                try:
                    return self._index.search(array, fetch)
                finally:
                    faiss.omp_set_num_threads(previous)
        return self._index.search(array, fetch)

    # -- persistence ----------------------------------------------------------------

    def write(self, path: Path) -> list[int]:
        """Write the FAISS index to ``path``; returns the FAISS ids in :meth:`keys` order."""
        faiss = _faiss()
        with self._lock:
            if self._index is None:
                self._ensure_index(0)
            faiss.write_index(self._index, str(path))
            return sorted(self._key_of)

    def read(self, source: Path | BinaryIO, keys: Sequence[str], faiss_ids: Sequence[int]) -> None:
        """Replace the contents with an index file written by :meth:`write`.

        ``source`` is the file's path or an open binary file (read from where it stands).
        """
        faiss = _faiss()
        if isinstance(source, Path):
            index = faiss.read_index(str(source))
        else:
            index = faiss.read_index(faiss.PyCallbackIOReader(source.read))
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
            self.hnsw_m = int(inner.hnsw.nb_neighbors(1))
        storage: Literal["flat", "sq8"] = "sq8" if isinstance(inner, faiss.IndexHNSWSQ) else "flat"
        with self._lock:
            self._index = index
            self._kind = kind
            self._storage = storage
            self._key_of = dict(zip(faiss_ids, keys))
            self._faiss_id = dict(zip(keys, faiss_ids))
            self._tombstones = stored - set(faiss_ids)
            self._next_id = max(stored, default=-1) + 1
