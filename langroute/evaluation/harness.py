"""Evaluate a router on labelled or scored data, cross-validate, calibrate the dial, tune.

Two kinds of evaluation data, both read like exemplar files (JSONL or CSV):

* **scored**: every row has per-model quality (``scores``), e.g. RouteLLM's weak and
  strong correctness. The report gives the whole cost-quality curve as the dial moves
  (APGR, CPT(50%), CPT(80%), share for 95% of the strong quality), RouteLLM's
  11-point reading, and baselines (random, always-cheap, always-strong, oracle).
* **labelled**: every row names the route it should take (``route`` or ``label``).
  The report gives accuracy, per-route precision and recall, the confusion matrix,
  the escalation rate, cost inflation and quality loss, and the misrouted examples
  with their neighbours. Rows whose label is not a route (e.g. CLINC150's ``oos``)
  measure rejection: out-of-scope recall.

Rows marked ``contaminated: true`` are left out, as RouteLLM does.

Example:
    >>> from langroute.evaluation import evaluate
    >>> report = evaluate(router, "eval.jsonl")  # doctest: +SKIP
    >>> report.apgr, report.cpt50  # doctest: +SKIP
    (0.68, 0.31)
"""

from __future__ import annotations

import hashlib
import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from langroute import rules
from langroute.decision import RouteDecision
from langroute.embedders import Embedder, as_embedder
from langroute.errors import RouterConfigError
from langroute.evaluation import metrics as m
from langroute.exemplars import Exemplar, load_exemplars
from langroute.router import ExemplarRouter, RouterSettings

EvalData = str | Path | Sequence[Exemplar]

__all__ = [
    "BaselineResult",
    "CalibrationResult",
    "CurveReport",
    "EvalReport",
    "LabelReport",
    "Misrouted",
    "PrecomputedEmbedder",
    "ScoreReport",
    "TuningReport",
    "assign_folds",
    "calibrate",
    "cross_validate",
    "evaluate",
    "fast_boundaries",
    "fast_routes",
    "load_eval_set",
    "neighbourhood",
    "tune",
]


# -- reports ----------------------------------------------------------------------------


class CurveReport(BaseModel):
    """A cost-quality curve as lists (strong-call share, quality, PGR, threshold)."""

    share: list[float]
    quality: list[float]
    pgr: list[float]
    thresholds: list[float | None] = Field(
        default_factory=list, description="Score threshold per point; None for +inf."
    )


class BaselineResult(BaseModel):
    """One baseline router on the same data."""

    name: str
    apgr: float | None = None
    cpt50: float | None = None
    cpt80: float | None = None
    share_for_95: float | None = None
    strong_share: float | None = None
    quality: float | None = None
    pgr: float | None = None
    routellm: dict[str, float] = Field(default_factory=dict)
    accuracy: float | None = None


class ScoreReport(BaseModel):
    """Evaluation on scored data: the curve as the dial moves, and the dial's own point."""

    weak: str
    strong: str
    weak_quality: float
    strong_quality: float
    apgr: float
    cpt50: float | None
    cpt80: float | None
    share_for_95: float | None = Field(
        description="Smallest strong-call share reaching 95% of the strong quality."
    )
    max_pgr: float
    routellm: dict[str, float] = Field(
        description="APGR, CPT(50%), CPT(80%) by RouteLLM's 11-point protocol."
    )
    routellm_points: CurveReport
    curve: CurveReport
    oracle_curve: CurveReport | None = None
    strong_share: float = Field(description="Strong-call share at the router's threshold.")
    quality: float = Field(description="Routed quality at the router's threshold.")
    pgr: float = Field(description="PGR at the router's threshold.")


class Misrouted(BaseModel):
    """A query sent to the wrong route, with the nearest exemplars that decided it."""

    text: str
    expected: str | None
    predicted: str
    reason: str
    confidence: float
    neighbours: list[dict[str, Any]]


class LabelReport(BaseModel):
    """Evaluation against expected routes."""

    routes: list[str]
    n: int
    accuracy: float
    precision: dict[str, float | None]
    recall: dict[str, float | None]
    support: dict[str, int]
    confusion: list[list[int]] = Field(description="Rows: expected route; columns: predicted.")
    escalation_rate: float = Field(
        description="Share of queries sent to the fallback because of uncertainty."
    )
    cost_inflation: float = Field(description="Share sent to a stronger route than needed.")
    quality_loss: float = Field(description="Share sent to a cheaper route than needed.")
    in_scope_accuracy: float | None = Field(
        default=None, description="Accuracy when an escalated in-scope query counts as wrong."
    )
    out_of_scope: int = 0
    oos_recall: float | None = Field(
        default=None, description="Share of out-of-scope rows rejected (escalated)."
    )
    misrouted: list[Misrouted] = Field(default_factory=list)


class EvalReport(BaseModel):
    """Everything :func:`evaluate` or :func:`cross_validate` measured.

    Example:
        >>> report.to_json_dict()["apgr"]  # doctest: +SKIP
        0.68
    """

    kind: Literal["scores", "labels"]
    n: int
    excluded_contaminated: int = 0
    overlap_with_exemplars: int = 0
    folds: int | None = None
    threshold: float
    settings: dict[str, Any]
    scores: ScoreReport | None = None
    labels: LabelReport | None = None
    baselines: list[BaselineResult] = Field(default_factory=list)
    fold_metrics: list[dict[str, float]] = Field(default_factory=list)
    calibration: dict[str, Any] | None = None

    @property
    def apgr(self) -> float | None:
        """The router's APGR (exact curve), scored data only."""
        return self.scores.apgr if self.scores else None

    @property
    def cpt50(self) -> float | None:
        """The router's CPT(50%), scored data only."""
        return self.scores.cpt50 if self.scores else None

    @property
    def cpt80(self) -> float | None:
        """The router's CPT(80%), scored data only."""
        return self.scores.cpt80 if self.scores else None

    @property
    def accuracy(self) -> float | None:
        """The router's accuracy against expected routes."""
        return self.labels.accuracy if self.labels else None

    def to_json_dict(self) -> dict[str, Any]:
        """All figures; the headline ones on top: ``apgr``, ``cpt50``, ``cpt80``, ``accuracy``."""
        head: dict[str, Any] = {}
        if self.scores is not None:
            head = {"apgr": self.apgr, "cpt50": self.cpt50, "cpt80": self.cpt80}
        if self.labels is not None:
            head["accuracy"] = self.accuracy
            if self.labels.oos_recall is not None:
                head["in_scope_accuracy"] = self.labels.in_scope_accuracy
                head["oos_recall"] = self.labels.oos_recall
        return _finite(head | self.model_dump(mode="json"))


def _finite(value: Any) -> Any:
    """NaN and infinities become None, so the JSON is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _opt(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# -- data -------------------------------------------------------------------------------


def load_eval_set(data: EvalData) -> list[Exemplar]:
    """Read evaluation rows (a path to JSONL/CSV, or exemplars as they are).

    Example:
        >>> rows = load_eval_set("mmlu.dev.jsonl")  # doctest: +SKIP
    """
    if isinstance(data, (str, Path)):
        return load_exemplars(data)
    return list(data)


def is_contaminated(row: Exemplar) -> bool:
    """True when the row is marked ``contaminated`` (RouteLLM leaves those out)."""
    flag = row.metadata.get("contaminated")
    if isinstance(flag, str):
        return flag.strip().lower() in ("true", "1", "yes")
    return bool(flag)


def _score_pair(
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
            vectors = _embed_with_progress(self.inner, unique, show_progress)
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


def _embed_with_progress(embedder: Embedder, texts: list[str], show: bool) -> np.ndarray:
    if not show or len(texts) <= 256:
        return embedder.embed_documents(texts)
    from rich.progress import Progress

    parts = []
    with Progress(transient=True) as progress:
        task = progress.add_task("Embedding", total=len(texts))
        for start in range(0, len(texts), 256):
            chunk = texts[start : start + 256]
            parts.append(embedder.embed_documents(chunk))
            progress.advance(task, len(chunk))
    return np.concatenate(parts)


# -- routing the evaluation rows ---------------------------------------------------------


def _route_all(
    router: ExemplarRouter, texts: list[str], show_progress: bool
) -> list[RouteDecision]:
    """Route in chunks, keeping only the nearest few neighbours of each decision.

    With a large ``k`` the full neighbour lists of thousands of decisions would take
    gigabytes; the report only shows the nearest ones.
    """
    out: list[RouteDecision] = []

    def run(chunk: list[str]) -> None:
        for d in router.route_batch(chunk):
            if len(d.neighbours) > _KEEP_NEIGHBOURS:
                d = d.model_copy(update={"neighbours": d.neighbours[:_KEEP_NEIGHBOURS]})
            out.append(d)

    if not show_progress or len(texts) <= 256:
        for start in range(0, len(texts), 256):
            run(texts[start : start + 256])
        return out
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task("Routing", total=len(texts))
        for start in range(0, len(texts), 256):
            chunk = texts[start : start + 256]
            run(chunk)
            progress.advance(task, len(chunk))
    return out


_KEEP_NEIGHBOURS = 5


def _boundaries(decisions: Sequence[RouteDecision], routes: Sequence[str]) -> np.ndarray:
    """Escalation score per boundary, ``(n, R-1)``, rebuilt from each decision's evidence."""
    if len(routes) == 1:
        return np.zeros((len(decisions), 0))
    out = np.empty((len(decisions), len(routes) - 1))
    for i, d in enumerate(decisions):
        if d.mode == "scores" and d.estimates:
            est = np.array([[d.estimates.get(r, np.nan) for r in routes]])
            out[i] = rules.escalation_from_estimates(est)[0]
        else:
            prob = np.array([[d.probabilities.get(r, 0.0) for r in routes]])
            out[i] = rules.escalation_from_probabilities(prob)[0]
        out[i, 0] = d.escalation
    return out


def _simulate(
    boundary: np.ndarray,
    max_sim: np.ndarray,
    threshold: float,
    settings: RouterSettings,
) -> np.ndarray:
    """Route index per query at ``threshold``, as the router would decide (threshold rule)."""
    routes = settings.routes
    chosen = rules.choose_by_threshold(boundary, threshold)
    margin = rules.decision_margin(boundary, chosen, threshold)
    fallback = routes.index(settings.fallback_route)
    out = chosen.copy()
    low = (margin < settings.min_margin - 1e-6) & (fallback > chosen)
    out[low] = fallback
    out[max_sim < settings.min_similarity] = fallback
    return out


def _candidate_thresholds(boundary: np.ndarray, min_margin: float) -> np.ndarray:
    values = np.unique(boundary)
    mids = (values[1:] + values[:-1]) / 2 if len(values) > 1 else values
    edges = np.concatenate([[0.0, 1.0], values, values + 1e-9, mids, mids + min_margin])
    return np.unique(np.clip(edges, 0.0, 1.0))


# -- the report --------------------------------------------------------------------------


def _curve_report(
    share: np.ndarray, quality: np.ndarray, pgr: np.ndarray, thresholds: np.ndarray
) -> CurveReport:
    return CurveReport(
        share=[float(x) for x in share],
        quality=[float(x) for x in quality],
        pgr=[float(x) for x in pgr],
        thresholds=[float(t) if math.isfinite(t) else None for t in thresholds],
    )


def _score_report(
    z: np.ndarray,
    routed: np.ndarray,
    w: np.ndarray,
    s: np.ndarray,
    weak: str,
    strong: str,
    seeds: int,
) -> tuple[ScoreReport, list[BaselineResult]]:
    curve = m.cost_quality_curve(z, w, s)
    point = m.PointMetrics.of(curve)
    protocol = m.routellm_protocol(z, w, s)
    gap = curve.gap
    quality = float(np.where(routed, s, w).mean())
    report = ScoreReport(
        weak=weak,
        strong=strong,
        weak_quality=curve.weak_quality,
        strong_quality=curve.strong_quality,
        apgr=point.apgr,
        cpt50=_opt(point.cpt50),
        cpt80=_opt(point.cpt80),
        share_for_95=_opt(point.share_for_95),
        max_pgr=point.max_pgr,
        routellm={"apgr": protocol.apgr, "cpt50": protocol.cpt50, "cpt80": protocol.cpt80},
        routellm_points=_curve_report(
            protocol.share, protocol.quality, protocol.pgr, protocol.thresholds
        ),
        curve=_curve_report(curve.share, curve.quality, curve.pgr, curve.thresholds),
        strong_share=float(routed.mean()),
        quality=quality,
        pgr=(quality - curve.weak_quality) / gap if gap else float("nan"),
    )
    random_exact, random_protocol = m.random_baseline(w, s, seeds=seeds)
    oracle_z = m.oracle_scores(w, s)
    oracle_curve = m.oracle_curve(w, s)
    oracle_point = m.PointMetrics.of(oracle_curve)
    oracle_protocol = m.routellm_protocol(oracle_z, w, s)
    report.oracle_curve = _curve_report(
        oracle_curve.share, oracle_curve.quality, oracle_curve.pgr, oracle_curve.thresholds
    )
    baselines = [
        BaselineResult(
            name=f"random ({seeds} seeds)",
            apgr=random_exact.apgr,
            cpt50=_opt(random_exact.cpt50),
            cpt80=_opt(random_exact.cpt80),
            share_for_95=_opt(random_exact.share_for_95),
            routellm=random_protocol,
        ),
        BaselineResult(name="always-cheap", strong_share=0.0, quality=curve.weak_quality, pgr=0.0),
        BaselineResult(
            name="always-strong", strong_share=1.0, quality=curve.strong_quality, pgr=1.0
        ),
        BaselineResult(
            name="oracle",
            apgr=oracle_point.apgr,
            cpt50=_opt(oracle_point.cpt50),
            cpt80=_opt(oracle_point.cpt80),
            share_for_95=_opt(oracle_point.share_for_95),
            routellm={
                "apgr": oracle_protocol.apgr,
                "cpt50": oracle_protocol.cpt50,
                "cpt80": oracle_protocol.cpt80,
            },
        ),
    ]
    return report, baselines


def _label_report(
    routes: list[str],
    expected: list[str | None],
    decisions: Sequence[RouteDecision],
    max_misrouted: int,
) -> LabelReport:
    index = {r: i for i, r in enumerate(routes)}
    in_scope = [i for i, e in enumerate(expected) if e is not None]
    oos = [i for i, e in enumerate(expected) if e is None]
    e_idx = np.array([index[expected[i]] for i in in_scope], dtype=np.int64)  # type: ignore[index]
    p_idx = np.array([index[decisions[i].route] for i in in_scope], dtype=np.int64)
    lm = m.label_metrics(e_idx, p_idx, routes)
    escalated = np.array([d.escalated for d in decisions], dtype=bool)
    in_scope_accuracy = None
    oos_recall = None
    if oos:
        ok = (e_idx == p_idx) & ~escalated[in_scope]
        in_scope_accuracy = float(ok.mean()) if len(ok) else float("nan")
        oos_recall = float(escalated[oos].mean())
    wrong = [i for i in in_scope if decisions[i].route != expected[i]]
    wrong += [i for i in oos if not decisions[i].escalated]
    misrouted = [
        Misrouted(
            text=decisions[i].query,
            expected=expected[i],
            predicted=decisions[i].route,
            reason=decisions[i].reason,
            confidence=decisions[i].confidence,
            neighbours=[
                {"text": nb.text, "route": nb.route, "similarity": round(nb.similarity, 4)}
                for nb in decisions[i].neighbours[:3]
            ],
        )
        for i in wrong[:max_misrouted]
    ]
    return LabelReport(
        routes=routes,
        n=len(in_scope),
        accuracy=lm.accuracy,
        precision={r: _opt(v) for r, v in lm.precision.items()},
        recall={r: _opt(v) for r, v in lm.recall.items()},
        support=lm.support,
        confusion=lm.confusion,
        escalation_rate=float(escalated[in_scope].mean()) if in_scope else 0.0,
        cost_inflation=lm.cost_inflation,
        quality_loss=lm.quality_loss,
        in_scope_accuracy=in_scope_accuracy,
        out_of_scope=len(oos),
        oos_recall=oos_recall,
        misrouted=misrouted,
    )


def _expected_routes(
    rows: Sequence[Exemplar], routes: list[str], score_keys: Mapping[str, str]
) -> list[str | None]:
    out: list[str | None] = []
    for row in rows:
        label = row.label_for(routes, score_keys) if row.route is None else row.route
        out.append(label if label in routes else None)
    return out


def _build_report(
    settings: RouterSettings,
    rows: Sequence[Exemplar],
    decisions: Sequence[RouteDecision],
    pair: tuple[str, str] | None,
    *,
    excluded: int,
    overlap: int,
    seeds: int,
    max_misrouted: int,
    threshold: float,
    folds: int | None = None,
) -> EvalReport:
    routes = list(settings.routes)
    strongest = routes[-1]
    score_report = None
    baselines: list[BaselineResult] = []
    if pair is not None:
        weak, strong = pair
        w = np.array([r.scores[weak] for r in rows])  # type: ignore[index]
        s = np.array([r.scores[strong] for r in rows])  # type: ignore[index]
        z = np.array([d.escalation for d in decisions])
        routed = np.array([d.route == strongest for d in decisions])
        score_report, baselines = _score_report(z, routed, w, s, weak, strong, seeds)
    expected = _expected_routes(rows, routes, settings.score_keys)
    label_report = None
    has_labels = any(r.route is not None for r in rows)
    if has_labels or pair is not None:
        label_report = _label_report(routes, expected, decisions, max_misrouted)
        if pair is None:
            baselines = _label_baselines(routes, expected, settings)
    return EvalReport(
        kind="scores" if pair is not None else "labels",
        n=len(rows),
        excluded_contaminated=excluded,
        overlap_with_exemplars=overlap,
        folds=folds,
        threshold=threshold,
        settings=settings.model_dump(mode="json"),
        scores=score_report,
        labels=label_report,
        baselines=baselines,
    )


def _label_baselines(
    routes: list[str], expected: list[str | None], settings: RouterSettings
) -> list[BaselineResult]:
    known = [e for e in expected if e is not None]
    if not known:
        return []
    counts = {r: known.count(r) for r in routes}
    majority = max(routes, key=lambda r: counts[r])
    out = [
        BaselineResult(name="random (uniform)", accuracy=1.0 / len(routes)),
        BaselineResult(name=f"majority ({majority})", accuracy=counts[majority] / len(known)),
    ]
    if settings.rule == "threshold" and len(routes) > 1:
        out.append(BaselineResult(name="always-cheap", accuracy=counts[routes[0]] / len(known)))
        out.append(BaselineResult(name="always-strong", accuracy=counts[routes[-1]] / len(known)))
    out.append(BaselineResult(name="oracle", accuracy=1.0))
    return out


def _split_contaminated(rows: Sequence[Exemplar], exclude: bool) -> tuple[list[Exemplar], int]:
    if not exclude:
        return list(rows), 0
    kept = [r for r in rows if not is_contaminated(r)]
    return kept, len(rows) - len(kept)


def evaluate(
    router: ExemplarRouter,
    eval_set: EvalData,
    *,
    weak: str | None = None,
    strong: str | None = None,
    exclude_contaminated: bool = True,
    seeds: int = 10,
    max_misrouted: int = 50,
    show_progress: bool = False,
) -> EvalReport:
    """Measure ``router`` on labelled or scored rows it was not built from.

    Args:
        router: the router to measure (its threshold gives the report's own point).
        eval_set: a JSONL/CSV path or exemplars, with ``scores`` or route labels.
        weak: score key of the weak model (scored data); by default the score key
            of the cheapest route.
        strong: score key of the strong model; by default that of the strongest route.
        exclude_contaminated: leave out rows marked ``contaminated``.
        seeds: random-baseline runs to average.
        max_misrouted: how many misrouted examples to keep in the report.
        show_progress: rich progress bar while routing large files.

    Returns:
        An :class:`EvalReport`; ``report.apgr`` / ``report.accuracy`` and friends.

    Example:
        >>> report = evaluate(router, "heldout.jsonl")  # doctest: +SKIP
        >>> print(f"APGR {report.apgr:.3f}")  # doctest: +SKIP
    """
    rows, excluded = _split_contaminated(load_eval_set(eval_set), exclude_contaminated)
    if not rows:
        raise RouterConfigError("the evaluation set has no rows")
    settings = router.settings
    pair = _score_pair(rows, settings.routes, settings.score_keys, weak, strong)
    known = {ex.text for ex in router.exemplars}
    overlap = sum(1 for r in rows if r.text in known)
    decisions = _route_all(router, [r.text for r in rows], show_progress)
    report = _build_report(
        settings,
        rows,
        decisions,
        pair,
        excluded=excluded,
        overlap=overlap,
        seeds=seeds,
        max_misrouted=max_misrouted,
        threshold=router.threshold,
    )
    report.calibration = getattr(router, "calibration", None)
    return report


def cross_validate(
    data: EvalData,
    *,
    routes: Sequence[str] | None = None,
    embedder: Any = None,
    folds: int = 5,
    seed: int = 0,
    weak: str | None = None,
    strong: str | None = None,
    out_of_scope: Sequence[str] = (),
    exclude_contaminated: bool = True,
    seeds: int = 10,
    max_misrouted: int = 50,
    show_progress: bool = False,
    **options: Any,
) -> EvalReport:
    """k-fold cross-validation on one file: each fold is routed by the other folds.

    Identical texts stay in one fold, so no query finds itself. Every row is embedded
    once. Out-of-fold decisions are pooled into one report; ``fold_metrics`` has the
    per-fold figures. Contaminated rows serve as exemplars but are not scored.

    Args:
        data: a JSONL/CSV path or exemplars with route labels or scores.
        routes: route names cheapest first; by default ``[weak, strong]`` for scored
            data, else the labels in order of first appearance.
        embedder: as for :class:`ExemplarRouter` (default: bundled MiniLM).
        folds: number of folds (at least 2).
        seed: fold assignment seed.
        weak: score key of the weak model (scored data).
        strong: score key of the strong model (scored data).
        out_of_scope: labels that are never routes (e.g. ``"oos"``): such rows are not
            exemplars; they measure rejection.
        exclude_contaminated: do not score rows marked ``contaminated``.
        seeds: random-baseline runs.
        max_misrouted: misrouted examples kept.
        show_progress: progress bars.
        **options: router settings (``k``, ``rule``, ``weighting``, ...).

    Example:
        >>> report = cross_validate("mmlu.dev.jsonl", folds=5, k=100)  # doctest: +SKIP
    """
    rows = load_eval_set(data)
    if not rows:
        raise RouterConfigError("no rows to cross-validate")
    oos = set(out_of_scope)
    route_list = _default_routes(rows, routes, weak, strong, oos)
    if weak and strong and weak in route_list and strong in route_list:
        options.setdefault("mode", "scores")
    template = ExemplarRouter(routes=route_list, embedder=_NullEmbedder(), cache_size=0, **options)
    prepared = [template._prepare(r.text)[0] for r in rows]
    base = as_embedder(embedder)
    cache = PrecomputedEmbedder(base, prepared, show_progress=show_progress)
    fold_of = assign_folds([r.text for r in rows], folds, seed)
    decisions: list[RouteDecision | None] = [None] * len(rows)
    fold_metrics: list[dict[str, float]] = []
    settings = template.settings
    pair_all = (
        _score_pair(rows, route_list, settings.score_keys, weak, strong)
        if all(r.scores for r in rows)
        else None
    )
    threshold_in_force = settings.threshold_for("scores" if pair_all else "vote")
    for f in range(folds):
        train = [r for r, g in zip(rows, fold_of) if g != f and r.route not in oos]
        test = [i for i, g in enumerate(fold_of) if g == f]
        if not test:
            continue
        router = ExemplarRouter(routes=route_list, exemplars=train, embedder=cache, **options)
        threshold_in_force = router.threshold
        fold_decisions = _route_all(router, [rows[i].text for i in test], False)
        for i, d in zip(test, fold_decisions):
            decisions[i] = d
        fold_rows = [(rows[i], d) for i, d in zip(test, fold_decisions)]
        fold_rows = [
            (r, d) for r, d in fold_rows if not (exclude_contaminated and is_contaminated(r))
        ]
        if fold_rows:
            fold_metrics.append(_quick_metrics(fold_rows, settings, pair_all))
    scored = [
        (r, d)
        for r, d in zip(rows, decisions)
        if d is not None and not (exclude_contaminated and is_contaminated(r))
    ]
    report = _build_report(
        settings,
        [r for r, _ in scored],
        [d for _, d in scored],  # type: ignore[misc]
        pair_all,
        excluded=len(rows) - len(scored),
        overlap=0,
        seeds=seeds,
        max_misrouted=max_misrouted,
        threshold=threshold_in_force,
        folds=folds,
    )
    report.fold_metrics = fold_metrics
    return report


def _quick_metrics(
    pairs: list[tuple[Exemplar, RouteDecision]],
    settings: RouterSettings,
    pair: tuple[str, str] | None,
) -> dict[str, float]:
    if pair is not None:
        w = np.array([r.scores[pair[0]] for r, _ in pairs])  # type: ignore[index]
        s = np.array([r.scores[pair[1]] for r, _ in pairs])  # type: ignore[index]
        z = np.array([d.escalation for _, d in pairs])
        curve = m.cost_quality_curve(z, w, s)
        return {
            "n": float(len(pairs)),
            "apgr": curve.apgr,
            "cpt50": curve.cpt(0.5),
            "cpt80": curve.cpt(0.8),
        }
    expected = _expected_routes([r for r, _ in pairs], settings.routes, settings.score_keys)
    hits = [d.route == e for (_, d), e in zip(pairs, expected) if e is not None]
    return {"n": float(len(pairs)), "accuracy": float(np.mean(hits)) if hits else float("nan")}


def _default_routes(
    rows: Sequence[Exemplar],
    routes: Sequence[str] | None,
    weak: str | None,
    strong: str | None,
    oos: set[str],
) -> list[str]:
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


class _NullEmbedder:
    """Placeholder for a router that only prepares texts."""

    fingerprint = "null"
    dimension = 1

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover
        raise RuntimeError("not for embedding")

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover
        raise RuntimeError("not for embedding")


# -- calibration -------------------------------------------------------------------------


class CalibrationResult(BaseModel):
    """What :func:`calibrate` chose; stored as ``router.calibration`` (saved in the manifest)."""

    threshold: float
    target_strong_share: float | None = None
    target_quality: float | None = None
    strong_share: float = Field(description="Share sent to the strongest route at the threshold.")
    quality: float = Field(description="Routed quality (scored) or 1 - quality loss (labelled).")
    quality_fraction_of_strong: float | None = None
    pgr: float | None = None
    reached: bool = Field(description="Whether the target was met exactly enough.")
    n: int
    excluded_contaminated: int = 0
    overlap_with_exemplars: int = 0
    weak: str | None = None
    strong: str | None = None
    previous_threshold: float
    calibrated_at: str
    data: str | None = None


def calibrate(
    router: ExemplarRouter,
    data: EvalData,
    *,
    target_strong_share: float | None = None,
    target_quality: float | None = None,
    weak: str | None = None,
    strong: str | None = None,
    exclude_contaminated: bool = True,
    show_progress: bool = False,
) -> CalibrationResult:
    """Set the router's dial from held-out data and record it in ``router.calibration``.

    The threshold is chosen by replaying the router's own decision (dial, low-margin
    escalation and out-of-distribution fallback) at every candidate threshold.

    * ``target_strong_share``: the strong-call share closest to the target.
    * ``target_quality``: the cheapest threshold whose quality reaches the target, as
      a fraction of the always-strong quality (scored data; e.g. 0.95), or as the
      share of queries not sent to a cheaper route than needed (labelled data).

    ``router.save()`` then stores the threshold and the calibration record.

    Raises:
        RouterConfigError: neither or both targets, a target outside [0, 1], or an
            ``argmax`` router (it has no dial).

    Example:
        >>> result = calibrate(router, "heldout.jsonl", target_strong_share=0.3)  # doctest: +SKIP
        >>> router.threshold == result.threshold  # doctest: +SKIP
        True
    """
    if (target_strong_share is None) == (target_quality is None):
        raise RouterConfigError("give exactly one of target_strong_share= or target_quality=")
    target = target_strong_share if target_strong_share is not None else target_quality
    if target is None or not 0.0 <= target <= 1.0:
        raise RouterConfigError(f"the target must be in [0, 1], got {target}")
    settings = router.settings
    if settings.rule == "argmax":
        raise RouterConfigError("an argmax router has no dial to calibrate (use rule='threshold')")
    rows, excluded = _split_contaminated(load_eval_set(data), exclude_contaminated)
    if not rows:
        raise RouterConfigError("the calibration set has no rows")
    routes = list(settings.routes)
    pair = _score_pair(rows, routes, settings.score_keys, weak, strong)
    known = {ex.text for ex in router.exemplars}
    overlap = sum(1 for r in rows if r.text in known)
    if overlap:
        warnings.warn(
            f"{overlap} calibration rows are also exemplars of the router: they find "
            "themselves, which makes the router look better; calibrate on held-out rows",
            stacklevel=2,
        )
    decisions = _route_all(router, [r.text for r in rows], show_progress)
    boundary = _boundaries(decisions, routes)
    max_sim = np.array(
        [d.max_similarity if d.max_similarity is not None else -1.0 for d in decisions]
    )
    candidates = _candidate_thresholds(boundary, settings.min_margin)
    strongest = len(routes) - 1
    if pair is not None:
        w = np.array([r.scores[pair[0]] for r in rows])  # type: ignore[index]
        s = np.array([r.scores[pair[1]] for r in rows])  # type: ignore[index]
        expected_idx = None
    else:
        expected = _expected_routes(rows, routes, settings.score_keys)
        keep = [i for i, e in enumerate(expected) if e is not None]
        expected_idx = np.array([routes.index(expected[i]) for i in keep])  # type: ignore[arg-type]
        boundary, max_sim = boundary[keep], max_sim[keep]
        if not keep:
            raise RouterConfigError("no calibration row has a route label of this router")
    shares, qualities = [], []
    for t in candidates:
        chosen = _simulate(boundary, max_sim, float(t), settings)
        shares.append(float((chosen == strongest).mean()))
        if pair is not None:
            qualities.append(float(np.where(chosen == strongest, s, w).mean()))
        else:
            qualities.append(float((chosen >= expected_idx).mean()))
    share_arr, quality_arr = np.array(shares), np.array(qualities)
    strong_quality = float(s.mean()) if pair is not None else 1.0
    if target_strong_share is not None:
        distance = np.abs(share_arr - target_strong_share)
        best = np.nonzero(distance <= distance.min() + 1e-12)[0]
        pick = int(best[np.argmax(quality_arr[best])])
        reached = bool(distance[pick] <= max(0.02, 1.0 / len(share_arr)))
    else:
        goal = (target_quality or 0.0) * strong_quality
        ok = np.nonzero(quality_arr >= goal - 1e-12)[0]
        if len(ok):
            pick = int(ok[np.lexsort((-quality_arr[ok], share_arr[ok]))[0]])
            reached = True
        else:
            pick = int(np.argmax(quality_arr))
            reached = False
    # Among thresholds giving the same decisions, take the middle one (robust to drift).
    same = np.nonzero((share_arr == share_arr[pick]) & (quality_arr == quality_arr[pick]))[0]
    contiguous = _run_around(same, pick)
    threshold = float(np.median(candidates[contiguous]))
    chosen = _simulate(boundary, max_sim, threshold, settings)
    if float((chosen == strongest).mean()) != share_arr[pick]:
        threshold = float(candidates[pick])
    previous = router.threshold
    router.threshold = threshold
    weak_quality = float(w.mean()) if pair is not None else None
    pgr = None
    if pair is not None and weak_quality is not None and strong_quality != weak_quality:
        pgr = (quality_arr[pick] - weak_quality) / (strong_quality - weak_quality)
    result = CalibrationResult(
        threshold=threshold,
        target_strong_share=target_strong_share,
        target_quality=target_quality,
        strong_share=float(share_arr[pick]),
        quality=float(quality_arr[pick]),
        quality_fraction_of_strong=(
            float(quality_arr[pick] / strong_quality)
            if pair is not None and strong_quality
            else None
        ),
        pgr=pgr,
        reached=reached,
        n=len(rows),
        excluded_contaminated=excluded,
        overlap_with_exemplars=overlap,
        weak=pair[0] if pair else None,
        strong=pair[1] if pair else None,
        previous_threshold=previous,
        calibrated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        data=str(data) if isinstance(data, (str, Path)) else None,
    )
    router.calibration = result.model_dump(mode="json")
    if not reached:
        floor = float(share_arr.min())
        if target_strong_share is not None and target_strong_share < floor:
            why = (
                f"out-of-distribution queries (below min_similarity={settings.min_similarity}) "
                f"and low-margin votes (min_margin={settings.min_margin}) always escalate, so "
                f"no threshold sends fewer than {floor:.1%} of these rows to the strongest "
                "route; lower those settings (or add exemplars) to go further"
            )
        elif target_strong_share is not None:
            why = "queries with equal escalation scores move together, so shares come in steps"
        else:
            why = "no threshold reaches that quality on these rows; the best one was kept"
        warnings.warn(
            f"calibration target not reached: closest strong share {result.strong_share:.1%} "
            f"at quality {result.quality:.3f}: {why}",
            stacklevel=2,
        )
    return result


def _run_around(indices: np.ndarray, pick: int) -> np.ndarray:
    """The contiguous run of ``indices`` (sorted) that contains ``pick``."""
    pos = int(np.searchsorted(indices, pick))
    lo = hi = pos
    while lo > 0 and indices[lo - 1] == indices[lo] - 1:
        lo -= 1
    while hi + 1 < len(indices) and indices[hi + 1] == indices[hi] + 1:
        hi += 1
    return indices[lo : hi + 1]


# -- tuning ------------------------------------------------------------------------------


@dataclass
class Neighbourhood:
    """The ``k`` nearest exemplars of many queries, searched once to try many settings."""

    sims: np.ndarray  # (n, K) float64, descending
    labels: np.ndarray  # (n, K) route index, -1 none
    scores: np.ndarray  # (n, K, R)
    weights: np.ndarray  # (n, K) exemplar weights
    exemplars: list[list[Exemplar]]
    query_lengths: np.ndarray  # (n,) length of each (prepared) query
    lengths: np.ndarray  # (n, K) length of each neighbour's text, capped like queries

    def head(self, k: int) -> Neighbourhood:
        """The first ``k`` neighbours of every query."""
        return Neighbourhood(
            self.sims[:, :k],
            self.labels[:, :k],
            self.scores[:, :k],
            self.weights[:, :k],
            [row[:k] for row in self.exemplars],
            self.query_lengths,
            self.lengths[:, :k],
        )


def neighbourhood(router: ExemplarRouter, texts: Sequence[str], k: int) -> Neighbourhood:
    """Search the ``k`` nearest exemplars of ``texts`` in ``router`` once.

    Example:
        >>> nb = neighbourhood(router, ["hello"], k=50)  # doctest: +SKIP
    """
    prepared = [router._prepare(t)[0] for t in texts]
    vectors = router.embedder.embed_queries(prepared)
    with router._lock:
        index = router._index
        if index is None:
            raise RouterConfigError("the router has no exemplars")
        sims, keys = index.search(vectors, k)
        exemplars = [[router._exemplars[key] for key in row] for row in keys]
        labels = np.array([[router._labels[key] for key in row] for row in keys], dtype=np.int64)
        scores = np.stack([np.stack([router._scores[key] for key in row]) for row in keys])
    weights = np.array([[ex.weight for ex in row] for row in exemplars], dtype=np.float64)
    limit = router.settings.max_query_chars
    lengths = np.array([[min(len(ex.text), limit) for ex in row] for row in exemplars])
    return Neighbourhood(
        sims.astype(np.float64),
        labels.reshape(len(keys), -1),
        scores,
        weights.reshape(len(keys), -1),
        exemplars,
        np.array([len(text) for text in prepared]),
        lengths.reshape(len(keys), -1),
    )


def _fast_evidence(
    router: ExemplarRouter, nb: Neighbourhood, settings: RouterSettings
) -> tuple[Neighbourhood, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Mirror of the evidence step of :meth:`ExemplarRouter._decide`."""
    cut = nb.head(settings.k)
    mode = settings.mode if settings.mode != "auto" else router.mode
    n_routes = len(settings.routes)
    weights = rules.neighbour_weights(
        cut.sims, cut.weights, settings.weighting, settings.temperature, settings.power
    )
    if settings.local_k is not None:
        weights = rules.keep_nearest(weights, settings.local_k)
    by_length = None
    if settings.length_weight > 0:
        by_length = rules.length_weights(
            cut.query_lengths, cut.lengths, cut.weights, settings.length_scale
        )
    probabilities = rules.vote(weights, cut.labels, n_routes)
    estimates = rules.estimate(weights, cut.scores) if mode == "scores" else None
    if by_length is not None:
        length_vote = rules.vote(by_length, cut.labels, n_routes)
        probabilities = rules.blend(probabilities, length_vote, settings.length_weight)
        if estimates is not None:
            length_estimates = rules.estimate(by_length, cut.scores)
            estimates = rules.blend(estimates, length_estimates, settings.length_weight)
    return cut, weights, by_length, probabilities, estimates


def fast_boundaries(
    router: ExemplarRouter, nb: Neighbourhood, settings: RouterSettings
) -> np.ndarray:
    """Escalation score per boundary ``(n, R-1)`` the router would compute under ``settings``.

    Mirrors :meth:`ExemplarRouter._decide` (threshold rule) without building decision
    objects, so a sweep over many settings is cheap; the tests check both agree.
    Column 0 is the scalar ``escalation`` that ranks queries from easy to hard.

    Example:
        >>> nb = neighbourhood(router, texts, 50)  # doctest: +SKIP
        >>> z = fast_boundaries(router, nb, router.settings)[:, 0]  # doctest: +SKIP
    """
    cut, weights, by_length, probabilities, estimates = _fast_evidence(router, nb, settings)
    if estimates is not None and settings.loss_weight != 1.0:
        boundary = rules.escalation_from_scores(weights, cut.scores, settings.loss_weight)
        if by_length is not None:
            length_boundary = rules.escalation_from_scores(
                by_length, cut.scores, settings.loss_weight
            )
            boundary = rules.blend(boundary, length_boundary, settings.length_weight)
        return boundary
    if estimates is not None:
        return rules.escalation_from_estimates(estimates)
    return rules.escalation_from_probabilities(probabilities)


def fast_routes(
    router: ExemplarRouter, nb: Neighbourhood, settings: RouterSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Route index and escalated flag per query, as the router would decide under ``settings``."""
    cut, _, _, probabilities, estimates = _fast_evidence(router, nb, settings)
    routes = settings.routes
    max_sim = cut.sims[:, 0] if cut.sims.shape[1] else np.full(len(cut.sims), -1.0)
    fallback = routes.index(settings.fallback_route)
    if settings.rule == "argmax":
        evidence = estimates if estimates is not None else probabilities
        filled = np.nan_to_num(evidence, nan=-1.0)
        chosen = filled.argmax(axis=1)
        ordered = np.sort(filled, axis=1)
        margin = ordered[:, -1] - (ordered[:, -2] if len(routes) > 1 else 0.0)
        escalated = (max_sim < settings.min_similarity) | (margin < settings.min_margin)
        return np.where(escalated, fallback, chosen), escalated
    boundary = fast_boundaries(router, nb, settings)
    threshold = settings.threshold_for(router.mode if settings.mode == "auto" else settings.mode)
    routed = _simulate(boundary, max_sim, threshold, settings)
    plain = rules.choose_by_threshold(boundary, threshold)
    escalated = (routed != plain) | (max_sim < settings.min_similarity)
    return routed, escalated


class TuningReport(BaseModel):
    """Validation-fold results of every setting tried, best first."""

    metric: str
    folds: int
    repeats: int = 1
    results: list[dict[str, Any]]
    best: dict[str, Any] = Field(description="The setting with the best mean over folds.")
    simplest: dict[str, Any] = Field(
        description=(
            "One-standard-error rule: the first setting in grid order that trails the best "
            "by at most one paired standard error over folds (list simple settings first); "
            "less prone to picking a setting that won on validation noise."
        )
    )


def tune(
    data: EvalData,
    grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]],
    *,
    routes: Sequence[str] | None = None,
    embedder: Any = None,
    folds: int = 5,
    seed: int = 0,
    weak: str | None = None,
    strong: str | None = None,
    out_of_scope: Sequence[str] = (),
    exclude_contaminated: bool = True,
    show_progress: bool = False,
    base: Mapping[str, Any] | None = None,
    router_factory: Callable[..., ExemplarRouter] | None = None,
    repeats: int = 1,
) -> TuningReport:
    """Sweep router settings (``k``, ``weighting``, ``rule``, ...) on validation folds.

    Each fold is scored by a router built from the other folds; a setting's figure is
    the mean over folds of APGR (scored data) or accuracy (labelled data). Only
    validation folds are scored, so the best setting is not tuned on its own test rows.

    Args:
        data: rows with scores or route labels.
        grid: setting name -> values to try, e.g. ``{"k": [20, 50], "weighting": [...]}``
            (every combination), or an explicit list of settings dicts.
        routes: route names cheapest first (see :func:`cross_validate`).
        embedder: the embedder (default: bundled MiniLM); every row is embedded once.
        folds: number of folds.
        seed: fold assignment seed.
        weak: score key of the weak model (scored data).
        strong: score key of the strong model (scored data).
        out_of_scope: labels that are never routes (they score as rejections).
        exclude_contaminated: do not score rows marked ``contaminated``.
        show_progress: progress bar while embedding.
        base: fixed settings applied to every trial.
        router_factory: optional ``(routes, exemplars, embedder, **settings)`` builder.
        repeats: repeat the k-fold split with seeds ``seed, seed + 1, ...`` and average
            (steadier figures on small data).

    Returns:
        A :class:`TuningReport`; ``report.best`` is the winning setting with its score.

    Example:
        >>> tune("mmlu.dev.jsonl", {"k": [50, 100]}, weak="w", strong="s").best  # doctest: +SKIP
        {'k': 100, 'apgr': 0.66, ...}
    """
    rows = load_eval_set(data)
    oos = set(out_of_scope)
    route_list = _default_routes(rows, routes, weak, strong, oos)
    base_options = dict(base or {})
    if weak and strong and weak in route_list and strong in route_list:
        base_options.setdefault("mode", "scores")
    if isinstance(grid, Mapping):
        names = list(grid)
        combos = [
            dict(zip(names, values))
            for values in itertools.product(*(list(grid[n]) for n in names))
        ]
    else:
        combos = [dict(combo) for combo in grid]
    if not combos:
        raise ValueError("the grid is empty")
    template = ExemplarRouter(
        routes=route_list, embedder=_NullEmbedder(), cache_size=0, **base_options
    )
    prepared = [template._prepare(r.text)[0] for r in rows]
    cache = PrecomputedEmbedder(as_embedder(embedder), prepared, show_progress=show_progress)
    pair = (
        _score_pair(rows, route_list, template.settings.score_keys, weak, strong)
        if all(r.scores for r in rows)
        else None
    )
    metric = "apgr" if pair is not None else "accuracy"
    k_max = max(int(c.get("k", template.settings.k)) for c in combos)
    factory = router_factory or ExemplarRouter
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    figures = np.full((len(combos), folds * repeats), np.nan)
    for column, (repeat, f) in enumerate(itertools.product(range(repeats), range(folds))):
        if f == 0:
            fold_of = assign_folds([r.text for r in rows], folds, seed + repeat)
        train = [r for r, g in zip(rows, fold_of) if g != f and r.route not in oos]
        test = [
            i
            for i, g in enumerate(fold_of)
            if g == f and not (exclude_contaminated and is_contaminated(rows[i]))
        ]
        if not test:
            continue
        router = factory(routes=route_list, exemplars=train, embedder=cache, **base_options)
        nb = neighbourhood(router, [rows[i].text for i in test], k_max)
        test_rows = [rows[i] for i in test]
        if pair is not None:
            w = np.array([r.scores[pair[0]] for r in test_rows])  # type: ignore[index]
            s = np.array([r.scores[pair[1]] for r in test_rows])  # type: ignore[index]
        else:
            expected = _expected_routes(test_rows, route_list, template.settings.score_keys)
        for c, combo in enumerate(combos):
            settings = RouterSettings.model_validate(router.settings.model_dump() | combo)
            if pair is not None:
                z = fast_boundaries(router, nb, settings)[:, 0]
                figures[c, column] = m.cost_quality_curve(z, w, s).apgr
            else:
                routed, escalated = fast_routes(router, nb, settings)
                hits = [
                    (route_list[int(p)] == e and not x) if e is not None else bool(x)
                    for p, x, e in zip(routed, escalated, expected)
                ]
                figures[c, column] = float(np.mean(hits))
    means = np.nanmean(figures, axis=1)
    order = np.argsort(-means, kind="stable")

    def row(i: int) -> dict[str, Any]:
        return combos[i] | {metric: float(means[i]), f"{metric}_sd": float(np.nanstd(figures[i]))}

    results = [row(int(i)) for i in order]
    top = int(order[0])
    simplest = top
    for i in range(len(combos)):  # grid order: simple settings first
        diff = figures[top] - figures[i]
        diff = diff[~np.isnan(diff)]
        if len(diff) == 0:
            continue
        # Paired standard error: folds differ in difficulty, settings share the folds.
        se = float(np.std(diff, ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
        if float(diff.mean()) <= se:
            simplest = i
            break
    return TuningReport(
        metric=metric,
        folds=folds,
        repeats=repeats,
        results=results,
        best=results[0],
        simplest=row(simplest),
    )
