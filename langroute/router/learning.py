"""Learned exemplars: what cascades and users observe, kept as exemplars with provenance.

An *outcome* says that one route's answer to a query was good or bad: a cascade's
scorer accepted or rejected a cheap tier's answer, or a user gave a thumbs up or down on
a routed answer (through the cost ledger's record id). The router turns each outcome
into a *learned exemplar* (:meth:`ExemplarRouter.learn
<langroute.router.ExemplarRouter.learn>`):

- **Label.** A good answer from route ``r`` labels the query ``r`` (the cheapest route
  known to suffice); a bad one labels it with the next stronger route. Repeated outcomes
  on the same text are counted per route, and the label is the cheapest route whose
  answers were good more often than bad (else the route after the strongest one seen to
  fail). A label is what a vote-mode router uses; a labelled exemplar also implies
  per-route quality scores (1 from its route up, 0 below), so scores mode uses it too.
  A router already in scores mode also gets the observed good rate of each judged route
  as its score, so the cheap route's estimate is the measured acceptance rate; the
  label's route never scores below a cheaper one (a thumbs-down never makes a query
  cheaper).
- **Provenance.** ``metadata`` holds ``learned: True``, ``source`` (``"cascade"``,
  ``"feedback"``, ``"user"``, ...), ``learned_at`` and ``updated_at`` (UTC, ISO 8601),
  ``confirmations`` (outcomes seen), ``outcomes`` (per route: ``[good, bad]``) and, when
  a scorer judged, ``scorer`` and its last ``score``.
- **Guard rails.** One learned exemplar per text (a repeated outcome updates it), kept
  as the router routes on it (cut to ``max_query_chars``); a hand-made exemplar of the
  same text, or one within the near-duplicate radius
  (:attr:`RouterSettings.near_duplicate_similarity
  <langroute.router.settings.RouterSettings.near_duplicate_similarity>`, 0.98: a variant
  in case, spacing or invisible characters) is never overridden or outvoted: the outcome
  is refused and recorded (:class:`RefusedOutcome`, ``router.refused_outcomes``); at most
  :attr:`RouterSettings.max_learned <langroute.router.settings.RouterSettings.max_learned>`
  exemplars and ``max_learned_bytes`` of text are kept, evicting the least confirmed (or
  oldest) first; they can be listed and removed by source, and they are saved with the
  router.

:class:`CascadeLearner` is what both integrations' cascades use: it asks the router
before the cheap attempt (*route, then cascade*) and turns each outcome into a learned
exemplar. :func:`learn_from_feedback` turns a ledger verdict into one.

Example:
    >>> from langroute import Exemplar, ExemplarRouter
    >>> from langroute.embedders import HashingEmbedder
    >>> router = ExemplarRouter(
    ...     routes=["small", "large"],
    ...     exemplars=[Exemplar(text="hello there", route="small"),
    ...                Exemplar(text="prove the theorem", route="large")],
    ...     embedder=HashingEmbedder(),
    ... )
    >>> ex = router.learn("translate this poem into Latin verse", "small", good=False,
    ...                   source="cascade")
    >>> ex.route, ex.metadata["source"], ex.metadata["outcomes"]
    ('large', 'cascade', {'small': [0, 1]})
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from langroute.errors import RouterConfigError
from langroute.router.decision import RouteDecision
from langroute.router.exemplars import Exemplar

if TYPE_CHECKING:
    from langroute.costs import CostLedger
    from langroute.dispatch.cascade import CascadeCall
    from langroute.router.exemplar_router import ExemplarRouter

__all__ = [
    "LEARNED_KEY",
    "CascadeLearner",
    "CascadeLearningStats",
    "Exploration",
    "Outcome",
    "RefusedOutcome",
    "eviction_order",
    "is_learned",
    "learn_from_feedback",
    "learned_exemplar",
    "learned_label",
    "text_bytes",
]

Outcome = Literal["good", "bad"]
LEARNED_KEY = "learned"
"""``Exemplar.metadata`` key marking a learned exemplar (``True``)."""
_PLAIN_REASONS = ("vote", "scores")
"""Decisions the neighbours made (not escalated for doubt, not forced)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def text_bytes(text: str) -> int:
    """The UTF-8 size of ``text`` (what the learned-exemplar byte bound counts).

    Example:
        >>> text_bytes("héllo")
        6
    """
    return len(text.encode("utf-8", "surrogatepass"))


class RefusedOutcome(BaseModel):
    """An outcome :meth:`ExemplarRouter.learn <langroute.router.ExemplarRouter.learn>` refused.

    Attributes:
        text: The query (as routed on, cut to 300 characters).
        route / good / source: The outcome.
        reason: Why it was refused.
        exemplar_id: The hand-made exemplar it would have overridden or outvoted.
        similarity: Its similarity to that exemplar.
        at: When (UTC, ISO 8601).
    """

    model_config = ConfigDict(frozen=True)

    text: str
    route: str
    good: bool
    source: str
    reason: str
    exemplar_id: str | None = None
    similarity: float | None = None
    at: str = Field(default_factory=_now)


def is_learned(exemplar: Exemplar) -> bool:
    """True for an exemplar made from an observed outcome (not written by hand).

    Example:
        >>> is_learned(Exemplar(text="hi", route="small"))
        False
    """
    return exemplar.metadata.get(LEARNED_KEY) is True


def learned_label(outcomes: Mapping[str, Sequence[int]], routes: Sequence[str]) -> str:
    """The route a query's counted outcomes vote for.

    ``outcomes`` maps a route to ``[good, bad]`` counts. The label is the cheapest route
    whose answers were good more often than bad; otherwise the route after the strongest
    one that was judged (a tie counts as not good enough: quality first).

    Example:
        >>> learned_label({"small": [2, 1]}, ["small", "large"])
        'small'
        >>> learned_label({"small": [1, 1]}, ["small", "large"])
        'large'
    """
    order = list(routes)
    judged = [r for r in order if r in outcomes]
    for route in judged:
        good, bad = outcomes[route]
        if good > bad:
            return route
    if not judged:
        raise RouterConfigError("no outcome names one of the routes")
    return order[min(order.index(judged[-1]) + 1, len(order) - 1)]


def learned_exemplar(
    existing: Exemplar | None,
    text: str,
    route: str,
    good: bool,
    *,
    routes: Sequence[str],
    source: str,
    score_keys: Mapping[str, str] | None = None,
    with_scores: bool = False,
    scorer: str | None = None,
    score: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Exemplar:
    """The learned exemplar for ``text`` after one more outcome on ``route``.

    ``existing`` is the learned exemplar of the same text, if any: its counts are
    updated and its id, ``learned_at`` and earlier provenance are kept (the latest
    ``source`` and ``scorer`` win). ``with_scores`` adds per-route quality scores
    (scores mode): the observed good rate of each judged route, and what the label
    implies for the others.
    """
    if route not in routes:
        raise RouterConfigError(f"unknown route {route!r}; routes are {list(routes)}")
    before = dict(existing.metadata) if existing is not None else {}
    counts: dict[str, list[int]] = {
        name: [int(pair[0]), int(pair[1])]
        for name, pair in dict(before.get("outcomes") or {}).items()
        if name in routes
    }
    pair = counts.setdefault(route, [0, 0])
    pair[0 if good else 1] += 1
    counts = {name: counts[name] for name in routes if name in counts}  # route order
    label = learned_label(counts, routes)
    now = _now()
    meta: dict[str, Any] = {
        **before,
        **(metadata or {}),
        LEARNED_KEY: True,
        "source": source,
        "learned_at": before.get("learned_at", now),
        "updated_at": now,
        "confirmations": sum(g + b for g, b in counts.values()),
        "outcomes": counts,
    }
    if scorer is not None:
        meta["scorer"] = scorer
    if score is not None:
        meta["score"] = float(score)
    scores = None
    if with_scores:
        scores = _learned_scores(counts, label, routes, score_keys or {})
    return Exemplar(
        text=text,
        route=label,
        scores=scores,
        id=existing.id if existing is not None else "",
        metadata=meta,
    )


def _learned_scores(
    counts: Mapping[str, Sequence[int]],
    label: str,
    routes: Sequence[str],
    score_keys: Mapping[str, str],
) -> dict[str, float]:
    """Per-route quality scores of a learned exemplar (scores mode), keyed as the router's.

    A route cheaper than the label scores its observed good rate (0 when never judged);
    the label and the stronger routes score their good rate when their answers were good
    more often than bad, else 1. A bad verdict on the strongest route then keeps the
    query there: scoring that route 0 would tie it with the cheap routes, and a tie goes
    to the cheapest route, so a thumbs-down would have moved the query to a cheaper one.

    Example:
        >>> _learned_scores({"large": [0, 1]}, "large", ["small", "large"], {})
        {'small': 0.0, 'large': 1.0}
        >>> _learned_scores({"small": [2, 1]}, "small", ["small", "large"], {})
        {'small': 0.6666666666666666, 'large': 1.0}
    """
    position = list(routes).index(label)
    scores: dict[str, float] = {}
    for i, name in enumerate(routes):
        good, bad = counts.get(name, (0, 0))
        if i < position:
            value = good / (good + bad) if good + bad else 0.0
        else:
            value = good / (good + bad) if good > bad else 1.0
        scores[score_keys.get(name, name)] = value
    return scores


def eviction_order(
    exemplars: Sequence[Exemplar], policy: Literal["least_confirmed", "oldest"]
) -> list[Exemplar]:
    """Learned exemplars in the order they are evicted (first goes first).

    ``oldest``: by ``learned_at``; ``least_confirmed``: fewest confirmations first, the
    oldest among equals. Hand-made exemplars are never in the list.

    Example:
        >>> a = Exemplar(text="a", route="s", metadata={"learned": True, "confirmations": 3,
        ...              "learned_at": "2024-01-01"})
        >>> b = Exemplar(text="b", route="s", metadata={"learned": True, "confirmations": 1,
        ...              "learned_at": "2024-02-01"})
        >>> [e.text for e in eviction_order([a, b], "least_confirmed")]
        ['b', 'a']
        >>> [e.text for e in eviction_order([a, b], "oldest")]
        ['a', 'b']
    """
    learned = [ex for ex in exemplars if is_learned(ex)]
    if policy == "oldest":
        return sorted(learned, key=lambda ex: str(ex.metadata.get("learned_at", "")))
    return sorted(
        learned,
        key=lambda ex: (
            int(ex.metadata.get("confirmations", 0)),
            str(ex.metadata.get("learned_at", "")),
        ),
    )


def learn_from_feedback(
    router: ExemplarRouter,
    ledger: CostLedger,
    record_id: str,
    verdict: Outcome,
    *,
    source: str = "user",
    metadata: Mapping[str, Any] | None = None,
) -> Exemplar | None:
    """Store a verdict on a routed answer and teach the router from it.

    Writes :meth:`CostLedger.feedback <langroute.costs.CostLedger.feedback>` for
    ``record_id``, then adds a learned exemplar (``source="feedback"``, the judge in
    ``metadata["judge"]``): ``"good"`` labels the query with the route that answered,
    ``"bad"`` with the next stronger route. Nothing is written when the record cannot
    teach (no query text, unknown route).

    Returns:
        The learned exemplar, or ``None`` when the outcome was refused (a hand-made
        exemplar has the same or nearly the same text; see ``router.refused_outcomes``).

    Raises:
        UnknownRecordError: No ledger record has that id.
        ValueError: The verdict is not ``"good"``/``"bad"``, the record is feedback, or
            it holds no query text (the cost handler keeps it with
            ``store_queries=True``).
        RouterConfigError: The record's route is not one of the router's routes.
    """
    if verdict not in ("good", "bad"):
        raise ValueError(f'verdict must be "good" or "bad", not {verdict!r}')
    record = ledger.get(record_id)
    if record.is_feedback:
        raise ValueError(f"record {record_id!r} is feedback itself, not a call")
    if not record.query:
        raise ValueError(
            f"ledger record {record_id!r} holds no query text, so the router cannot learn "
            "from it; create the cost handler with store_queries=True to keep queries"
        )
    if record.route not in router.routes:
        raise RouterConfigError(
            f"ledger record {record_id!r} was answered by route {record.route!r}, which is "
            f"not one of the router's routes {router.routes}"
        )
    ledger.feedback(record, verdict, source=source, metadata=metadata)  # no second lookup
    return router.learn(
        record.query,
        record.route,
        good=verdict == "good",
        source="feedback",
        metadata={"judge": source, "record_id": record_id, **(metadata or {})},
    )


class CascadeLearningStats(BaseModel):
    """What route-then-cascade saved so far, and how many outcomes were learned."""

    model_config = ConfigDict(extra="forbid")

    calls: int = Field(default=0, description="Cascade calls planned.")
    routed_past: int = Field(default=0, description="Calls that skipped cheaper tiers.")
    calls_saved: int = Field(default=0, description="Tier attempts skipped.")
    latency_saved_ms: float = Field(
        default=0.0,
        description="Estimated: each skipped tier at its mean observed attempt latency.",
    )
    learned: int = Field(default=0, description="Outcomes turned into learned exemplars.")
    refused: int = Field(
        default=0, description="Outcomes refused: a hand-made exemplar has (nearly) that text."
    )
    explored: int = Field(
        default=0,
        description=(
            "Calls the router would have routed past the cheaper tiers but that tried them "
            "anyway (exploration), so a wrong skip can be learned again."
        ),
    )


class Exploration(BaseModel):
    """Bounded, decaying exploration of the tiers a router would skip.

    A router attached to a cascade learns only from the tiers it tries: once it routes a
    kind of query past the cheap tier, no outcome on that tier arrives again, so a wrong
    "skip" is never revisited. With exploration, the ``n``-th call the router would
    route past tries the cheap tier anyway with probability
    ``share * half_life / (half_life + n)``: at most ``share`` of those calls, halving
    after ``half_life`` of them, and tending to zero. Explored calls pay the cheap
    attempt (and, when it is rejected, the stronger tier as well); their outcomes are
    learned like any other cascade outcome, so a region wrongly routed past is
    relabelled once the cheap tier's answers there are accepted more often than not.
    Draws come from a generator seeded with ``seed`` (reproducible replays).

    Example:
        >>> plan = Exploration(share=0.2, half_life=100)
        >>> plan.probability(0), plan.probability(100), round(plan.probability(900), 3)
        (0.2, 0.1, 0.02)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    share: float = Field(
        default=0.1, ge=0.0, le=0.5, description="Exploration probability at the start."
    )
    half_life: int = Field(
        default=200, ge=1, description="Route-past calls after which the probability halves."
    )
    seed: int | None = Field(default=0, description="Seed of the draws (None: fresh entropy).")

    def probability(self, routed_past_so_far: int) -> float:
        """The chance that the next call the router would route past tries the cheap tier."""
        return self.share * self.half_life / (self.half_life + max(routed_past_so_far, 0))


class CascadeLearner:
    """A router attached to a cascade: route before the cheap attempt, learn after.

    Both integrations' cascades hold one (``router=..., learn=...``). Its routes must be
    tier names of the cascade. With ``route_past=True``, :meth:`plan` asks the router;
    when the decision is the neighbours' own (not escalated for doubt) and its ``escalation`` (the
    estimated probability that the cheapest route fails) reaches ``route_past_at``, the cascade
    starts at the tier the router picked: the cheaper attempts, which would be thrown
    away, are not paid for. :meth:`learn` turns the cascade's scored attempts into a
    learned exemplar (``source="cascade"``).

    Example:
        >>> learner = CascadeLearner(router, ["small", "large"], route_past_at=0.8)
        >>> learner.plan("hello there") is None  # the neighbours say small will do
        True
    """

    def __init__(
        self,
        router: ExemplarRouter,
        tier_names: Sequence[str],
        *,
        learn: bool = True,
        route_past: bool = False,
        route_past_at: float = 0.8,
        source: str = "cascade",
        explore: float | Exploration = 0.0,
    ) -> None:
        """Attach ``router`` to a cascade with ``tier_names`` (cheapest first).

        Args:
            router: The router asked before each call and taught after it.
            tier_names: The cascade's tier names; every route must be one of them.
            learn: Turn each call's outcome into a learned exemplar.
            route_past: Skip cheaper tiers when the router is sure they fail (off by
                default: calibrate ``route_past_at`` on your traffic first).
            route_past_at: The escalation estimate needed to skip (in [0, 1]).
            source: The provenance of learned exemplars.
            explore: With ``route_past``: the starting share of calls the router would
                route past that try the cheaper tiers anyway (see :class:`Exploration`;
                a number is ``Exploration(share=explore)``, at most 0.5; 0: never).

        Raises:
            RouterConfigError: A route that is no tier, ``route_past_at`` outside [0, 1],
                or an exploration share outside [0, 0.5].
        """
        names = list(tier_names)
        unknown = [r for r in router.routes if r not in names]
        if unknown:
            raise RouterConfigError(
                f"the router's routes {unknown} are not tiers of the cascade {names}; "
                "name the tiers after the routes (tier_names=[...])"
            )
        if not 0.0 <= route_past_at <= 1.0:
            raise RouterConfigError(f"route_past_at must be in [0, 1], got {route_past_at}")
        self.router = router
        self.tier_names = names
        self.learn_outcomes = learn
        self.route_past = route_past
        self.route_past_at = float(route_past_at)
        self.source = source
        try:
            self.exploration: Exploration | None = (
                explore if isinstance(explore, Exploration) else Exploration(share=explore)
            )
        except ValueError as exc:
            raise RouterConfigError(f"invalid exploration: {exc}") from exc
        if self.exploration.share == 0:
            self.exploration = None
        self.stats = CascadeLearningStats()
        self._latency: dict[str, tuple[float, int]] = {}
        self._would_skip = 0  # calls the router wanted to route past (exploration's clock)
        self._draws = None if self.exploration is None else random.Random(self.exploration.seed)
        self._explore_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"CascadeLearner(router={self.router!r}, learn={self.learn_outcomes}, "
            f"route_past_at={self.route_past_at})"
        )

    def _start(self, decision: RouteDecision | None) -> RouteDecision | None:
        self.stats.calls += 1
        if (
            decision is None
            or not self.route_past
            or decision.reason not in _PLAIN_REASONS
            or decision.escalation < self.route_past_at
            or self.tier_names.index(decision.route) == 0
            or self._explores()
        ):
            return None
        skipped = self.tier_names[: self.tier_names.index(decision.route)]
        self.stats.routed_past += 1
        self.stats.calls_saved += len(skipped)
        for name in skipped:
            total, count = self._latency.get(name, (0.0, 0))
            self.stats.latency_saved_ms += total / count if count else 0.0
        return decision

    def _explores(self) -> bool:
        """Whether this call, which the router would route past, tries the cheap tier."""
        if self.exploration is None or self._draws is None:
            return False
        with self._explore_lock:
            chance = self.exploration.probability(self._would_skip)
            self._would_skip += 1
            explored = self._draws.random() < chance
            if explored:
                self.stats.explored += 1
        return explored

    def plan(self, query: str | None) -> RouteDecision | None:
        """The router's decision when the cascade should start past the cheapest tier.

        ``None``: start at the cheapest tier (no query, doubt, not sure enough, or an
        exploring call: see :class:`Exploration`).
        """
        if not self.route_past or not query or not query.strip():
            return self._start(None)
        return self._start(self.router.route(query))

    async def aplan(self, query: str | None) -> RouteDecision | None:
        """Async :meth:`plan`."""
        if not self.route_past or not query or not query.strip():
            return self._start(None)
        return self._start(await self.router.aroute(query))

    def learn(self, query: str | None, cascade: CascadeCall, scorer: str) -> Exemplar | None:
        """Turn the finished cascade call's scored attempts into a learned exemplar.

        The attempts' latencies feed the saved-latency estimate. What is learned: the
        first scored attempt that was accepted marks its tier good; scored rejections
        before it mark their tiers bad. An attempt that raised says nothing about
        quality, so a call with one learns nothing; nor does an unscored last tier alone,
        or a call whose only judged attempt is the tier the router chose and accepted
        (it would confirm the router's own guess).

        Returns:
            The learned exemplar, or ``None`` when nothing was learned.
        """
        for attempt in cascade.call.attempts:
            if attempt.latency_ms is not None and not attempt.failed:
                total, count = self._latency.get(attempt.route, (0.0, 0))
                self._latency[attempt.route] = (total + attempt.latency_ms, count + 1)
        if not self.learn_outcomes or not query or not query.strip():
            return None
        records = cascade.attempts
        if any(r.error is not None for r in records):
            return None
        judged = [
            (r, r.score)
            for r in records
            if r.score is not None and r.tier_name in self.router.routes
        ]
        judged = [(r, s) for r, s in judged if cascade.scores.get(r.tier_name) is not None]
        if not judged:
            return None
        if cascade.skipped and len(judged) == 1 and judged[0][0].accepted:
            return None
        learned = None
        for record, score in judged:
            good = record.accepted and not record.reason.startswith("last tier: returned although")
            learned = self.router.learn(
                query, record.tier_name, good=good, source=self.source, scorer=scorer, score=score
            )
            if learned is None:  # a hand-made exemplar has (nearly) this text
                self.stats.refused += 1
                return None
        self.stats.learned += 1
        return learned
