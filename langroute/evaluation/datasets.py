"""Evaluation data: reading rows, contamination, weak/strong score keys, folds, routes.

Evaluation rows are read like exemplar files (JSONL or CSV). Rows marked
``contaminated: true`` are left out of scoring, as RouteLLM does.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from langroute.embedders import Embedder, as_embedder, embed_documents
from langroute.errors import RouterConfigError
from langroute.router.exemplars import (
    Exemplar,
    check_route_labels,
    check_scores_complete,
    located_rows,
)

EvalData = str | Path | Sequence[Exemplar]
"""A JSONL/CSV path, or exemplars as they are."""

__all__ = [
    "EvalData",
    "PrecomputedEmbedder",
    "assign_folds",
    "default_routes",
    "expected_routes",
    "is_contaminated",
    "load_eval_set",
    "require_two_routes",
    "score_pair",
    "split_contaminated",
]


def load_eval_set(
    data: EvalData,
    routes: Sequence[str] | None = None,
    *,
    out_of_scope: Sequence[str] = (),
    infer_routes: bool = False,
) -> list[Exemplar]:
    """Read evaluation rows (a path to JSONL/CSV, or exemplars as they are), checked.

    Checked before anything is embedded, each error naming the row (``file:line``):
    a set where some rows have scores has them on every row; with ``routes`` given, no
    label differs from a route only in case; with ``infer_routes`` (the routes will be
    the labels), the labels pass :func:`~langroute.exemplars.check_route_labels`.

    Raises:
        ExemplarFormatError: The file is malformed.
        RouterConfigError: A check failed.

    Example:
        >>> rows = load_eval_set("mmlu.dev.jsonl")  # doctest: +SKIP
    """
    located = located_rows(data)
    check_scores_complete(located)
    if routes is not None:
        check_route_labels(located, routes)
    elif infer_routes:
        check_route_labels(located, out_of_scope=out_of_scope)
    return [ex for _, ex in located]


def require_two_routes(routes: Sequence[str]) -> None:
    """Refuse to evaluate or tune over fewer than two routes.

    Raises:
        RouterConfigError: One route (every query goes there: every figure would be 100%).
    """
    if len(routes) < 2:
        raise RouterConfigError(
            f"only one route ({list(routes)}): evaluating or tuning a router needs two or "
            "more routes (with one, every query goes there and every figure is 100%)"
        )


def is_contaminated(row: Exemplar) -> bool:
    """True when the row is marked ``contaminated`` (RouteLLM leaves those out)."""
    flag = row.metadata.get("contaminated")
    if isinstance(flag, str):
        return flag.strip().lower() in ("true", "1", "yes")
    return bool(flag)


def score_pair(
    rows: Sequence[Exemplar],
    routes: Sequence[str],
    score_keys: Mapping[str, str],
    weak: str | None,
    strong: str | None,
) -> tuple[str, str] | None:
    """The (weak, strong) score keys of scored data, or None for labelled data."""
    if weak or strong:
        if not (weak and strong):
            raise RouterConfigError("pass both weak= and strong= model names")
        missing = [
            r.id for r in rows if not r.scores or weak not in r.scores or strong not in r.scores
        ]
        if missing:
            raise RouterConfigError(
                f"{len(missing)} rows lack scores for {weak!r} and {strong!r} (first: {missing[0]})"
            )
        return weak, strong
    if not rows or not all(r.scores for r in rows):
        return None
    keys = [score_keys.get(r, r) for r in routes]
    if len(keys) >= 2 and all(keys[0] in r.scores and keys[-1] in r.scores for r in rows):  # type: ignore[operator]
        return keys[0], keys[-1]
    common = set.intersection(*(set(r.scores or {}) for r in rows))
    if len(common) == 2:
        a, b = sorted(common)
        mean_a = float(np.mean([r.scores[a] for r in rows]))  # type: ignore[index]
        mean_b = float(np.mean([r.scores[b] for r in rows]))  # type: ignore[index]
        pair = (a, b) if mean_a <= mean_b else (b, a)
        warnings.warn(
            f"weak/strong models not given: taking {pair[0]!r} as weak and {pair[1]!r} as "
            "strong (lower mean score is weak); pass weak= and strong= to be explicit",
            stacklevel=3,
        )
        return pair
    raise RouterConfigError(
        f"cannot tell which scores are the weak and the strong model (score keys {sorted(common)}"
        f", routes {list(routes)}): pass weak= and strong="
    )


def assign_folds(texts: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """Fold number per row; identical texts always share a fold.

    Groups of identical texts are ordered by a seeded hash and dealt round-robin, so
    folds have near-equal numbers of distinct texts and the result is reproducible.

    Example:
        >>> folds = assign_folds(["a", "b", "a", "c"], 2)
        >>> bool(folds[0] == folds[2])
        True
    """
    if folds < 2:
        raise ValueError("folds must be at least 2")
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        groups.setdefault(text, []).append(i)
    order = sorted(groups, key=lambda t: hashlib.sha256(f"{seed}\x00{t}".encode()).hexdigest())
    out = np.zeros(len(texts), dtype=np.int64)
    for j, text in enumerate(order):
        out[groups[text]] = j % folds
    return out


class PrecomputedEmbedder:
    """Serves vectors computed once for known texts; other texts go to the inner embedder.

    Lets cross-validation build many routers over subsets of one file without
    re-embedding. The fingerprint is the inner embedder's.

    Example:
        >>> from langroute.embedders import HashingEmbedder
        >>> emb = PrecomputedEmbedder(HashingEmbedder(), ["a b"])
        >>> emb.embed_queries(["a b"]).shape
        (1, 256)
    """

    def __init__(
        self,
        inner: Any,
        texts: Sequence[str] = (),
        vectors: np.ndarray | None = None,
        *,
        show_progress: bool = False,
    ) -> None:
        self.inner: Embedder = as_embedder(inner)
        unique = list(dict.fromkeys(texts))
        if vectors is None:
            vectors = embed_documents(self.inner, unique, show_progress=show_progress)
            self._vectors = {t: v for t, v in zip(unique, vectors)}
        else:
            if len(vectors) != len(texts):
                raise ValueError("texts and vectors differ in length")
            self._vectors = {t: v for t, v in zip(texts, vectors)}

    @property
    def fingerprint(self) -> str:
        """The inner embedder's fingerprint."""
        return self.inner.fingerprint

    @property
    def dimension(self) -> int:
        """The inner embedder's dimension."""
        return self.inner.dimension

    def _get(self, texts: Sequence[str], documents: bool) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            fresh = (
                self.inner.embed_documents(missing)
                if documents
                else self.inner.embed_queries(missing)
            )
            self._vectors.update(zip(missing, fresh))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.ascontiguousarray(np.stack([self._vectors[t] for t in texts]), dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of exemplar texts."""
        return self._get(texts, True)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of queries."""
        return self._get(texts, False)


def default_routes(
    rows: Sequence[Exemplar],
    routes: Sequence[str] | None,
    weak: str | None,
    strong: str | None,
    oos: set[str],
) -> list[str]:
    """Route names cheapest first: as given, ``[weak, strong]``, or the labels in order."""
    if routes:
        return list(routes)
    if weak and strong:
        return [weak, strong]
    labels = list(
        dict.fromkeys(r.route for r in rows if r.route is not None and r.route not in oos)
    )
    if labels:
        return labels
    raise RouterConfigError("pass routes=[...] (cheapest first) or weak= and strong=")


def expected_routes(
    rows: Sequence[Exemplar], routes: list[str], score_keys: Mapping[str, str]
) -> list[str | None]:
    """The route each row should take (its label, or derived from scores); None if not a route."""
    out: list[str | None] = []
    for row in rows:
        label = row.label_for(routes, score_keys) if row.route is None else row.route
        out.append(label if label in routes else None)
    return out


def split_contaminated(rows: Sequence[Exemplar], exclude: bool) -> tuple[list[Exemplar], int]:
    """The rows to score, and how many contaminated ones were left out."""
    if not exclude:
        return list(rows), 0
    kept = [r for r in rows if not is_contaminated(r)]
    return kept, len(rows) - len(kept)


def exemplar_vectors(router: Any) -> PrecomputedEmbedder:
    """The router's own exemplar vectors, served for their prepared texts (none re-embedded).

    What cross-validation within a router's exemplars builds its fold routers with.
    """
    rows = router.exemplars
    prepared = [router.settings.prepare(r.text)[0] for r in rows]
    return PrecomputedEmbedder(router.embedder, prepared, router.vectors([r.id for r in rows]))


def exemplar_score_pair(router: Any) -> tuple[str, str] | None:
    """The score keys of the cheapest and the strongest route, when every exemplar has both.

    ``None`` for a router that does not decide on scores (labelled exemplars).
    """
    routes = list(router.settings.routes)
    if router.mode != "scores" or len(routes) < 2:
        return None
    weak, strong = (router.settings.score_keys.get(r, r) for r in (routes[0], routes[-1]))
    if all(r.scores and weak in r.scores and strong in r.scores for r in router.exemplars):
        return weak, strong
    return None
