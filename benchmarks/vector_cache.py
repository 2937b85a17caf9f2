"""Embed benchmark texts once per machine: vectors kept in the benchmarks' scratch folder.

Embedding the RouteLLM rows with the default encoder takes minutes on a shared CPU;
replays that reuse the same texts (``learning_replay.py``, ``adaptive_dial.py``) load
them from ``<scratch>/vectors-<hash>.npy`` instead. The file is keyed by the embedder's
fingerprint and the texts, so a change to either embeds again.

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


def cached_embedder(base: Any, texts: Sequence[str]) -> PrecomputedEmbedder:
    """A :class:`PrecomputedEmbedder` over ``texts`` (and their cut forms), cached on disk.

    A router embeds a long query cut to ``max_query_chars`` (head and tail), so the cut
    form of each long text is embedded too.
    """
    prepare = RouterSettings(routes=["a"]).prepare
    unique = list(dict.fromkeys([*texts, *(prepare(t)[0] for t in texts)]))
    digest = hashlib.sha256(base.fingerprint.encode())
    for text in unique:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\x00")
    path = scratch_dir() / f"vectors-{digest.hexdigest()[:16]}.npy"
    if path.is_file():
        vectors = np.load(path)
        if vectors.shape[0] == len(unique):
            return PrecomputedEmbedder(base, unique, vectors)
    vectors = np.asarray(embed_documents(base, unique), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, vectors)
    partial.replace(path)
    return PrecomputedEmbedder(base, unique, vectors)
