"""Measure a decider chain stage by stage, against its kNN router alone.

:func:`evaluate_chain` routes the evaluation rows twice, through the
:class:`~langroute.chains.deciders.DeciderChain` and through its kNN router alone, and reports
for each (and for each stage of the chain: the rows that stage decided) the share of
rows, accuracy, **quality loss** (sent to a cheaper route than the row needs), **cost
inflation** (sent to a stronger one), the escalation rate (unsure decisions left on the
fallback route), and what routing itself cost: the LLM router's calls, tokens and
dollars (priced like any call, with :class:`~langroute.costs.Pricer`). A stage that
costs more than it saves shows it here.

Rows are labelled (``route``) or scored (per-model ``scores``: the row needs the
cheapest route whose score is the best), as :func:`~langroute.evaluation.evaluate`
reads them.

Example:
    >>> report = evaluate_chain(chain, "heldout.jsonl")  # doctest: +SKIP
    >>> [(s.stage, round(s.quality_loss, 3)) for s in report.stages]  # doctest: +SKIP
    [('rules', 0.0), ('knn', 0.041), ('llm', 0.12)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field

from langroute.chains.deciders import DeciderChain
from langroute.costs.pricing import Pricer
from langroute.errors import RouterConfigError
from langroute.evaluation.batches import route_all
from langroute.evaluation.datasets import (
    EvalData,
    expected_routes,
    load_eval_set,
    split_contaminated,
)
from langroute.router.decision import RouteDecision

__all__ = ["ChainReport", "StageResult", "evaluate_chain"]


class StageResult(BaseModel):
    """How the rows one stage decided (or a whole router's rows) were routed."""

    stage: str = Field(description='"rules", "knn", "llm", or "chain" / "knn only" for all rows.')
    n: int
    share: float = Field(description="Share of all rows this stage decided.")
    accuracy: float | None = Field(default=None, description="Routed where the row needs.")
    quality_loss: float = Field(default=0.0, description="Sent to a cheaper route than needed.")
    cost_inflation: float = Field(default=0.0, description="Sent to a stronger route than needed.")
    escalation_rate: float = Field(
        default=0.0, description="Unsure decisions left on the fallback route."
    )
    strong_share: float = Field(default=0.0, description="Sent to the strongest route.")
    quality: float | None = Field(
        default=None,
        description="Scored rows: mean score of the route each row was sent to.",
    )


class ChainReport(BaseModel):
    """A decider chain against its kNN router alone, stage by stage, with routing's cost."""

    routes: list[str]
    n: int
    chain: StageResult
    knn_only: StageResult
    stages: list[StageResult] = Field(default_factory=list)
    routing_calls: int = 0
    routing_failures: int = Field(
        default=0, description="LLM router calls that failed or answered no route."
    )
    routing_input_tokens: int = 0
    routing_output_tokens: int = 0
    routing_cost: float | None = Field(
        default=None, description="USD for all routing calls (None: a model has no price)."
    )
    unpriced_models: list[str] = Field(default_factory=list)


def _result(
    stage: str,
    routes: Sequence[str],
    expected: Sequence[str | None],
    decisions: Sequence[RouteDecision],
    total: int,
    scores: Sequence[list[float] | None] = (),
) -> StageResult:
    index = {route: i for i, route in enumerate(routes)}
    scored = [(e, d) for e, d in zip(expected, decisions, strict=True) if e is not None]
    n = len(decisions)
    if not n:
        return StageResult(stage=stage, n=0, share=0.0)
    right = sum(index[d.route] == index[e] for e, d in scored)
    cheaper = sum(index[d.route] < index[e] for e, d in scored)
    stronger = sum(index[d.route] > index[e] for e, d in scored)
    counted = len(scored)
    got = [
        row[index[d.route]]
        for row, d in zip(scores, decisions, strict=False)
        if row is not None and not math.isnan(row[index[d.route]])
    ]
    return StageResult(
        stage=stage,
        n=n,
        share=n / total if total else 0.0,
        accuracy=right / counted if counted else None,
        quality_loss=cheaper / counted if counted else 0.0,
        cost_inflation=stronger / counted if counted else 0.0,
        escalation_rate=sum(d.escalated for d in decisions) / n,
        strong_share=sum(d.route == routes[-1] for d in decisions) / n,
        quality=math.fsum(got) / len(got) if got and len(got) == n else None,
    )


def evaluate_chain(
    chain: DeciderChain,
    eval_set: EvalData,
    *,
    pricer: Pricer | None = None,
    exclude_contaminated: bool = True,
    show_progress: bool = False,
) -> ChainReport:
    """Route ``eval_set`` through ``chain`` and through its kNN router alone, and compare.

    Args:
        chain: The decider chain to measure.
        eval_set: Labelled or scored rows (a JSONL/CSV path or exemplars).
        pricer: Prices the LLM router's calls (default: genai-prices).
        exclude_contaminated: Leave out rows marked ``contaminated``.
        show_progress: A progress bar while routing.

    Returns:
        The :class:`ChainReport`.

    Raises:
        RouterConfigError: The evaluation set has no rows.
    """
    rows, _ = split_contaminated(load_eval_set(eval_set, chain.routes), exclude_contaminated)
    if not rows:
        raise RouterConfigError("the evaluation set has no rows")
    routes = chain.routes
    keys = chain.settings.score_keys
    expected = expected_routes(rows, routes, keys)
    scores = [row.route_scores(routes, keys) if row.scores else None for row in rows]
    texts = [row.text for row in rows]
    decisions = route_all(chain, texts, show_progress)
    alone = route_all(chain.router, texts, show_progress)
    total = len(rows)
    stages = []
    for stage in ("rules", "knn", "llm"):
        mine = [i for i, d in enumerate(decisions) if d.stage == stage]
        if mine:
            stages.append(
                _result(
                    stage,
                    routes,
                    [expected[i] for i in mine],
                    [decisions[i] for i in mine],
                    total,
                    [scores[i] for i in mine],
                )
            )
    calls = [call for d in decisions for call in d.router_calls]
    pricer = pricer or Pricer()
    costs: list[float] = []
    unpriced: list[str] = []
    for call in calls:
        cost = pricer.cost(call.model, call.input_tokens, call.output_tokens, call.cached_tokens)
        if cost is None or not call.usage_reported:
            unpriced.append(call.model)
        else:
            costs.append(cost)
    failures = sum(
        1 for d in decisions for call in d.router_calls if d.stage != "llm" or call.error
    )
    return ChainReport(
        routes=list(routes),
        n=total,
        chain=_result("chain", routes, expected, decisions, total, scores),
        knn_only=_result("knn only", routes, expected, alone, total, scores),
        stages=stages,
        routing_calls=len(calls),
        routing_failures=failures,
        routing_input_tokens=sum(c.input_tokens for c in calls),
        routing_output_tokens=sum(c.output_tokens for c in calls),
        routing_cost=None if unpriced else math.fsum(costs),
        unpriced_models=sorted(set(unpriced)),
    )
