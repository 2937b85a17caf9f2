"""Embed benchmark texts once per machine: vectors kept in the benchmarks' scratch folder.

Embedding the RouteLLM rows with the default encoder takes many minutes on a shared
CPU; replays that reuse the same texts (``learning_replay.py``, ``adaptive_dial.py``)
load them from ``<scratch>/vectors/<embedder>/`` instead: one ``.npy`` per text, named by
the text's SHA-256, written as each batch is embedded, so an interrupted run keeps
what it did and any subset of the texts is served.

Example::

    embedder = cached_embedder(as_embedder(None), texts)  # a PrecomputedEmbedder
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from results_path import scratch_dir

from langroute.embedders import embed_documents
from langroute.evaluation.datasets import PrecomputedEmbedder
from langroute.router.settings import RouterSettings

BATCH = 256


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def cached_embedder(base: Any, texts: Sequence[str]) -> PrecomputedEmbedder:
    """A :class:`PrecomputedEmbedder` over ``texts`` (and their cut forms), cached on disk.

    A router embeds a long query cut to ``max_query_chars`` (head and tail), so the cut
    form of each long text is embedded too.
    """
    prepare = RouterSettings(routes=["a"]).prepare
    unique = list(dict.fromkeys([*texts, *(prepare(t)[0] for t in texts)]))
    folder = scratch_dir() / "vectors" / hashlib.sha256(base.fingerprint.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    missing = [t for t in unique if not (folder / f"{_key(t)}.npy").is_file()]
    for start in range(0, len(missing), BATCH):
        batch = missing[start : start + BATCH]
        vectors = np.asarray(embed_documents(base, batch), dtype=np.float32)
        for text, vector in zip(batch, vectors):
            partial = folder / f"{_key(text)}.partial.npy"
            np.save(partial, vector)
            partial.replace(folder / f"{_key(text)}.npy")
        print(f"embedded {min(start + BATCH, len(missing))} of {len(missing)}", flush=True)
    vectors = np.stack([np.load(folder / f"{_key(t)}.npy") for t in unique])
    return PrecomputedEmbedder(base, unique, vectors)
