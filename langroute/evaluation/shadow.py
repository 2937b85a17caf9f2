"""Read a shadow run back from the ledger: agreement, flips and the candidate's deltas.

With shadow evaluation on (``shadow=`` on an entry point, ``[serve] shadow_router``),
the ledger row of each request's first attempt carries the candidate router's decision
(``shadow_router``, ``shadow_route``, ``shadow_reason``, ``shadow_confidence``,
``shadow_error``). :func:`compare_ledger` reads those rows and reports:

* **agreement**: the share of requests the candidate routed as the live router did,
  with a 95% Wilson interval;
* **flips**: each (live -> candidate) pair with its count, the harmful ones first
  (the candidate sends a request to a *cheaper* route than live: a quality risk), then
  the costlier ones, with example requests;
* **strong share** of both routers (requests sent to the strongest route), and its delta;
* **estimated cost delta**: each request's own tokens priced at the candidate route's
  model against the live route's model (the same tokens for both, so the estimate is the
  routing difference alone), relative to the live cost, with a 95% bootstrap interval;
* **estimated quality delta** (when the ledger holds feedback): each route's share of
  "good" verdicts, averaged over the requests for the candidate's routes minus the live
  ones, with a 95% bootstrap interval that resamples requests and verdicts. It assumes a
  route's quality does not depend on which requests it gets: read it as a first signal,
  and confirm a large change offline (``langroute compare`` on an evaluation set).

Example:
    >>> from langroute.costs.records import LedgerRecord
    >>> rows = [
    ...     LedgerRecord(route="small", model="gpt-4o-mini", shadow_router="cand",
    ...                  shadow_route="small", input_tokens=100, output_tokens=50),
    ...     LedgerRecord(route="large", model="gpt-4o", baseline_model="gpt-4o",
    ...                  shadow_router="cand", shadow_route="small",
    ...                  input_tokens=100, output_tokens=50),
    ... ]
    >>> report = compare_ledger(rows, routes=["small", "large"])
    >>> report.n, report.agreement, report.flips[0].harmful
    (2, 0.5, True)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from langroute.costs.pricing import Pricer
from langroute.costs.records import LedgerRecord
from langroute.errors import NoShadowRowsError
from langroute.evaluation.reports import finite_json

__all__ = [
    "FlipExample",
    "FlipGroup",
    "NoShadowRowsError",
    "ShadowComparison",
    "compare_ledger",
    "shadow_rows",
]

_BOOTSTRAP_SAMPLES = 2000
_CONFIDENCE = 0.95


class FlipExample(BaseModel):
    """One request the candidate routed differently."""

    record_id: str
    query: str | None = Field(description="The routed text, when the ledger keeps queries.")
    live_confidence: float | None
    shadow_confidence: float | None


class FlipGroup(BaseModel):
    """Requests the live router sent to ``live`` and the candidate to ``shadow``."""

    live: str
    shadow: str
    count: int
    share: float = Field(description="Of all compared requests.")
    harmful: bool = Field(description="The candidate's route is cheaper than live's.")
    examples: list[FlipExample]


class ShadowComparison(BaseModel):
    """A candidate router against the live one, on the live traffic of a ledger.

    Attributes:
        candidate: The candidate's name (``shadow_router``).
        candidates: Every candidate named in the ledger, with its request count.
        routes: Routes cheapest first (given, or inferred from the models' prices).
        n: Requests compared (both routers decided).
        shadow_errors: Requests where the candidate failed or timed out.
        agreement: Share of requests routed alike; ``agreement_ci``: 95% Wilson interval.
        flipped: Requests routed differently; ``harmful_flips``: to a cheaper route.
        flips: The flips grouped by (live, candidate) route, harmful first.
        live_share / shadow_share: Each router's share of requests per route.
        strong_share_delta: The candidate's strongest-route share minus live's.
        cost_live / cost_shadow: The compared requests' tokens priced at each router's
            routes (USD; requests whose routes have no price are left out: ``unpriced``).
        cost_delta: ``cost_shadow / cost_live - 1``; ``cost_delta_ci``: 95% bootstrap.
        quality_live / quality_shadow: Estimated share of good answers (from feedback).
        quality_delta: ``quality_shadow - quality_live``; ``quality_delta_ci``: 95%
            bootstrap; all ``None`` without feedback on both routers' routes.
        feedback: Verdicts per route used for the quality estimate (good, total).
    """

    candidate: str
    candidates: dict[str, int]
    routes: list[str]
    n: int
    shadow_errors: int
    agreement: float
    agreement_ci: tuple[float, float]
    flipped: int
    harmful_flips: int
    flips: list[FlipGroup]
    live_share: dict[str, float]
    shadow_share: dict[str, float]
    strong_share_delta: float
    cost_live: float
    cost_shadow: float
    cost_delta: float | None
    cost_delta_ci: tuple[float, float] | None
    unpriced: int
    quality_live: float | None
    quality_shadow: float | None
    quality_delta: float | None
    quality_delta_ci: tuple[float, float] | None
    feedback: dict[str, tuple[int, int]]

    def to_json_dict(self) -> dict[str, Any]:
        """Every figure as standard JSON (NaN and infinities become None)."""
        return finite_json(self.model_dump(mode="json"))


def shadow_rows(records: Iterable[LedgerRecord]) -> list[LedgerRecord]:
    """The rows that carry a candidate's decision (one per request), oldest first."""
    return [r for r in records if r.shadow_router is not None and not r.is_feedback]


def _live_route(row: LedgerRecord) -> str | None:
    decided = row.metadata.get("decided_route")
    return decided if isinstance(decided, str) else row.route


def _route_models(records: Sequence[LedgerRecord]) -> dict[str, str]:
    """Each route's most used model among the ledger's answering rows."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        if record.route and record.model and not record.is_feedback and not record.overhead:
            counts[record.route][record.model] += 1
    return {route: models.most_common(1)[0][0] for route, models in counts.items()}


def _unit_price(pricer: Pricer, model: str | None) -> float | None:
    if model is None:
        return None
    price = pricer.price(model)
    return None if price is None else price.input_per_mtok + price.output_per_mtok


def _route_order(
    names: Iterable[str], models: dict[str, str], baseline: set[str], pricer: Pricer
) -> list[str]:
    """Routes cheapest first: the baseline model's route last, else by model price."""

    def key(route: str) -> tuple[int, float, str]:
        model = models.get(route)
        price = _unit_price(pricer, model)
        return (int(model in baseline), price if price is not None else float("inf"), route)

    return sorted(set(names), key=key)


def _wilson(successes: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    interval = binomtest(successes, n).proportion_ci(_CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


def _interval(samples: Any) -> tuple[float, float]:
    import numpy as np

    tail = (1 - _CONFIDENCE) / 2 * 100
    low, high = np.nanpercentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def compare_ledger(
    records: Iterable[LedgerRecord],
    *,
    candidate: str | None = None,
    routes: Sequence[str] | None = None,
    route_models: Mapping[str, str] | None = None,
    pricer: Pricer | None = None,
    examples: int = 5,
    seed: int = 0,
) -> ShadowComparison:
    """Compare the candidate router's shadow decisions with the live ones in ``records``.

    Args:
        records: The ledger's records (``CostLedger.records()``).
        candidate: The candidate to report (default: the one of the latest shadow row).
        routes: Routes cheapest first (default: the route of the rows' baseline model
            last, the others by their model's price).
        route_models: Route -> the model name its cost is estimated with (default: the
            model that answered the route most in the ledger; a route the live router
            never took then has no price, and its requests count as ``unpriced``).
        pricer: Prices the cost estimate (default: genai-prices' table).
        examples: Example requests kept per flip group.
        seed: Seed of the bootstrap resampling (the report is reproducible).

    Raises:
        NoShadowRowsError: No row carries a shadow decision (of ``candidate``).
    """
    import numpy as np

    records = list(records)
    pricer = pricer or Pricer()
    rows = shadow_rows(records)
    candidates = dict(Counter(r.shadow_router for r in rows if r.shadow_router))
    if not rows:
        raise NoShadowRowsError(
            "the ledger holds no shadow decisions: run with a shadow router "
            "(shadow= or [serve] shadow_router) first"
        )
    name = candidate or rows[-1].shadow_router
    rows = [r for r in rows if r.shadow_router == name]
    if not rows:
        raise NoShadowRowsError(f"no shadow decisions of {name!r}; the ledger has {candidates}")
    failed = [r for r in rows if r.shadow_route is None]
    compared = [r for r in rows if r.shadow_route is not None and _live_route(r) is not None]
    if not compared:
        raise NoShadowRowsError(f"every decision of {name!r} failed ({len(failed)} errors)")
    models = _route_models(records) | dict(route_models or {})
    live = [str(_live_route(r)) for r in compared]
    shadow = [str(r.shadow_route) for r in compared]
    baseline = {r.baseline_model for r in records if r.baseline_model}
    order = list(routes) if routes else _route_order(live + shadow, models, baseline, pricer)
    rank = {route: i for i, route in enumerate(order)}
    n = len(compared)

    agree = sum(a == b for a, b in zip(live, shadow))
    groups: dict[tuple[str, str], list[LedgerRecord]] = defaultdict(list)
    for row, a, b in zip(compared, live, shadow):
        if a != b:
            groups[(a, b)].append(row)

    def harmful(pair: tuple[str, str]) -> bool:
        return rank.get(pair[1], len(order)) < rank.get(pair[0], len(order))

    flips = [
        FlipGroup(
            live=a,
            shadow=b,
            count=len(members),
            share=len(members) / n,
            harmful=harmful((a, b)),
            examples=[
                FlipExample(
                    record_id=m.record_id,
                    query=m.query,
                    live_confidence=m.confidence,
                    shadow_confidence=m.shadow_confidence,
                )
                for m in members[:examples]
            ],
        )
        for (a, b), members in sorted(groups.items(), key=lambda g: (not harmful(g[0]), -len(g[1])))
    ]

    def shares(chosen: list[str]) -> dict[str, float]:
        counts = Counter(chosen)
        return {route: counts.get(route, 0) / n for route in order}

    strongest = order[-1]

    # cost: the same tokens priced at each router's route
    live_cost, shadow_cost = [], []
    for row, a, b in zip(compared, live, shadow):
        model_a, model_b = models.get(a), models.get(b)
        cost_a = pricer.cost(model_a, row.input_tokens, row.output_tokens) if model_a else None
        cost_b = pricer.cost(model_b, row.input_tokens, row.output_tokens) if model_b else None
        if cost_a is None or cost_b is None:
            live_cost.append(np.nan)
            shadow_cost.append(np.nan)
        else:
            live_cost.append(cost_a)
            shadow_cost.append(cost_b)
    costs_a, costs_b = np.array(live_cost), np.array(shadow_cost)
    priced = ~np.isnan(costs_a)
    rng = np.random.default_rng(seed)
    total_a, total_b = float(costs_a[priced].sum()), float(costs_b[priced].sum())
    cost_delta = cost_ci = None
    if priced.any() and total_a > 0:
        cost_delta = total_b / total_a - 1
        pa, pb = costs_a[priced], costs_b[priced]
        picks = rng.integers(0, len(pa), size=(_BOOTSTRAP_SAMPLES, len(pa)))
        sums_a = pa[picks].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cost_ci = _interval(np.where(sums_a > 0, pb[picks].sum(axis=1) / sums_a - 1, np.nan))

    # quality: each route's share of good verdicts
    verdicts: dict[str, list[int]] = defaultdict(list)
    for record in records:
        if record.is_feedback and record.route:
            verdicts[record.route].append(int(record.verdict == "good"))
    quality_a = quality_b = quality_delta = quality_ci = None
    needed = set(live) | set(shadow)
    if needed <= set(verdicts):
        rate = {route: float(np.mean(v)) for route, v in verdicts.items()}
        quality_a = float(np.mean([rate[a] for a in live]))
        quality_b = float(np.mean([rate[b] for b in shadow]))
        quality_delta = quality_b - quality_a
        index = {route: i for i, route in enumerate(sorted(needed))}
        a_idx = np.array([index[a] for a in live])
        b_idx = np.array([index[b] for b in shadow])
        deltas = np.empty(_BOOTSTRAP_SAMPLES)
        for s in range(_BOOTSTRAP_SAMPLES):
            resampled = np.array(
                [
                    rng.choice(np.asarray(verdicts[route]), len(verdicts[route])).mean()
                    for route in sorted(needed)
                ]
            )
            picks = rng.integers(0, n, size=n)
            deltas[s] = resampled[b_idx[picks]].mean() - resampled[a_idx[picks]].mean()
        quality_ci = _interval(deltas)

    live_shares, shadow_shares = shares(live), shares(shadow)
    return ShadowComparison(
        candidate=str(name),
        candidates=candidates,
        routes=order,
        n=n,
        shadow_errors=len(failed),
        agreement=agree / n,
        agreement_ci=_wilson(agree, n),
        flipped=n - agree,
        harmful_flips=sum(g.count for g in flips if g.harmful),
        flips=flips,
        live_share=live_shares,
        shadow_share=shadow_shares,
        strong_share_delta=shadow_shares[strongest] - live_shares[strongest],
        cost_live=total_a,
        cost_shadow=total_b,
        cost_delta=cost_delta,
        cost_delta_ci=cost_ci,
        unpriced=int((~priced).sum()),
        quality_live=quality_a,
        quality_shadow=quality_b,
        quality_delta=quality_delta,
        quality_delta_ci=quality_ci,
        feedback={route: (sum(v), len(v)) for route, v in sorted(verdicts.items())},
    )
