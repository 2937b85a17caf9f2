"""What a routing call returns: the decision and the evidence behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import numpy as np

DecisionReason = Literal[
    "vote",  # label vote over the k nearest exemplars
    "scores",  # quality estimates from the neighbours' per-route scores
    "low_confidence",  # the vote was too close to the dial: escalated to the fallback
    "out_of_distribution",  # no exemplar is similar enough: fallback route
    "forced",  # the caller named the route
    "no_query",  # nothing to route on (integrations): fallback route
    "cascade",  # a cascade: the cheapest tier first, escalating on a low score
    "routed_past",  # a cascade whose router skipped cheaper tiers it expects to fail
    "rule",  # a heuristic gate's rule matched (langroute.chains.deciders)
    "llm",  # an LLM router chose, asked because the kNN decision was unsure
    "scoped_learned",  # this caller's own feedback moved the route (ScopedLearning)
]

DecisionStage = Literal["rules", "knn", "llm"]
"""The stage of a decider chain that decided (``None`` on a plain router's decision)."""


class RouterCall(BaseModel):
    """A model call made to decide (an LLM router), paid for like any call.

    The integrations write it to the ledger as a call of role ``"router"`` in the same
    request, so its cost counts against the request's savings.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0)
    usage_reported: bool = Field(
        default=True, description="False when the provider reported no usage (cost unknown)."
    )
    latency_ms: float = 0.0
    error: str | None = Field(default=None, description='"ErrorType: message" if it failed.')


class Neighbour(BaseModel):
    """One exemplar among the k nearest to the query."""

    model_config = ConfigDict(frozen=True)

    id: str
    text: str
    similarity: float = Field(description="Cosine similarity to the query, in [-1, 1].")
    route: str | None = Field(
        default=None,
        description="The route this exemplar votes for (its label, or derived from scores).",
    )
    scores: dict[str, float] | None = None
    weight: float = 1.0


SessionAction = Literal[
    "new",  # the first turn of a session: nothing to hold on to yet
    "kept",  # the router chose the session's route again
    "upgrade",  # the router chose a stronger route: the session moves up with it
    "sticky",  # the router chose a cheaper route: the session's route was kept instead
    "topic_shift",  # the turn left the earlier topic: the session starts over from it
]


class SessionInfo(BaseModel):
    """What a conversation's session did to one decision (see :mod:`langroute.router.conversation`).

    Example:
        >>> SessionInfo(key="s1", action="sticky", routed="small", previous="large").action
        'sticky'
    """

    model_config = ConfigDict(frozen=True)

    key: str = Field(description="The session key (given by the caller or derived).")
    action: SessionAction
    routed: str = Field(description="The route the router chose for this turn on its own.")
    previous: str | None = Field(
        default=None, description="The session's route before this turn (None: a new session)."
    )
    similarity: float | None = Field(
        default=None,
        description="Highest cosine similarity of this turn to the topic's earlier turns.",
    )
    turn: int = Field(default=1, description="The turn's number within the session's topic.")


class ShadowDecision(BaseModel):
    """A candidate router's decision on a live request it did not answer (shadow evaluation).

    :class:`~langroute.dispatch.shadow.ShadowRouter` makes it next to the live decision;
    the ledger row of the request's first attempt carries it (``shadow_router``,
    ``shadow_route``, ``shadow_reason``, ``shadow_confidence``, ``shadow_error``), so
    ``langroute compare --ledger`` can measure agreement and the candidate's estimated delta.

    Example:
        >>> ShadowDecision(router="routers/candidate", route="large", reason="vote",
        ...                confidence=0.8).failed
        False
    """

    model_config = ConfigDict(frozen=True)

    router: str = Field(description="The candidate's name (its path, or its class name).")
    route: str | None = Field(default=None, description="The candidate's route (None: failed).")
    reason: str | None = None
    confidence: float | None = None
    stage: str | None = Field(default=None, description="Decider chains: the stage that decided.")
    elapsed_ms: float = Field(default=0.0, description="Time the live request waited for it.")
    error: str | None = Field(
        default=None, description='"ErrorType: message" when the candidate failed or timed out.'
    )

    @property
    def failed(self) -> bool:
        """True when the candidate gave no route (an error or a timeout)."""
        return self.route is None


class _Carried:
    """A value a decision carries for the steps after routing, not part of what it is.

    ``==`` ignores it (equal to any other, and to ``None``, a decision's default), so
    decisions compare by their fields alone.
    """

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, _Carried)

    __hash__ = None  # type: ignore[assignment]


class RouteDecision(BaseModel):
    """The outcome of routing one query, with everything needed to explain it.

    Example:
        >>> decision = router.route("What is the capital of France?")  # doctest: +SKIP
        >>> decision.route, decision.reason, round(decision.confidence, 2)  # doctest: +SKIP
        ('small', 'vote', 0.93)
    """

    model_config = ConfigDict(frozen=True)

    route: str = Field(description="The chosen route (a name from the router's routes).")
    confidence: float = Field(
        description=(
            "For a cheaper route: the estimated probability that it suffices. "
            "For the strongest route: the estimated probability that it was needed."
        )
    )
    reason: DecisionReason
    mode: Literal["vote", "scores"] = "vote"
    probabilities: dict[str, float] = Field(
        default_factory=dict,
        description="Vote mode: weighted share of the neighbours' votes per route.",
    )
    estimates: dict[str, float] = Field(
        default_factory=dict,
        description="Scores mode: estimated quality per route, in [0, 1].",
    )
    escalation: float = Field(
        default=0.0,
        description=(
            "Estimated probability that the cheapest route does not suffice; the scalar "
            "that ranks queries from easy to hard (used by evaluation and calibration)."
        ),
    )
    threshold: float = Field(default=0.5, description="The dial in force for this decision.")
    neighbours: list[Neighbour] = Field(
        default_factory=list,
        description="The nearest exemplars, nearest first: the first 10 of the k that "
        "decided (all k count in probabilities, estimates and escalation).",
    )
    max_similarity: float | None = None
    query: str = Field(default="", description="The text routed on (truncated if long).")
    truncated: bool = False
    elapsed_ms: float = 0.0
    timings_ms: dict[str, float] = Field(
        default_factory=dict, description="embed / search / decide split of elapsed_ms."
    )
    context: str | None = Field(
        default=None,
        description="The conversation strategy routed on (None: the query alone).",
    )
    session: SessionInfo | None = Field(
        default=None,
        description="What a conversation session did (stickiness, topic shift); None: no session.",
    )
    stage: DecisionStage | None = Field(
        default=None, description="Decider chains: the stage that decided."
    )
    stage_note: str | None = Field(
        default=None,
        description="Decider chains: why that stage decided (or why a later one was skipped).",
    )
    router_calls: list[RouterCall] = Field(
        default_factory=list, description="Model calls made to decide (an LLM router)."
    )
    shadow: ShadowDecision | None = Field(
        default=None,
        description="A candidate router's decision on the same request (shadow evaluation).",
    )
    # a field, not a private attribute: a model with private attributes pays for their
    # set-up on every construction (about doubling it), and decisions are built by the
    # thousand in evaluation; with_query_vector sets it, query_vector reads it
    carried_vector: Any = Field(
        default=None,
        exclude=True,
        repr=False,
        description="Internal: the embedding behind query_vector (not serialised, ignored by ==).",
    )

    @property
    def query_vector(self) -> np.ndarray | None:
        """The embedding of :attr:`query` the router made for this decision (float32), or None.

        Set by a router that embedded :attr:`query` itself (``ExemplarRouter.route``, a
        conversation's current turn), so a step after routing (per-caller learning)
        reuses it instead of embedding the query again. Not serialised, ignored by
        ``==``, kept by ``model_copy``; ``None`` when the router made none (batches,
        vectors given by the caller, other routers).

        Example:
            >>> router.route("hello there").query_vector.shape  # doctest: +SKIP
            (384,)
        """
        if not isinstance(self.carried_vector, _Carried):
            return None
        import numpy as np

        return np.frombuffer(self.carried_vector.value, dtype=np.float32)

    def with_query_vector(self, vector: Any, **update: Any) -> RouteDecision:
        """A copy that carries ``vector`` (the embedding of :attr:`query`) as :attr:`query_vector`.

        ``update`` changes fields in the same copy (as ``model_copy(update=...)``).

        Example:
            >>> d = RouteDecision(route="a", confidence=1.0, reason="forced", query="hi")
            >>> d.with_query_vector([0.6, 0.8]).query_vector.tolist()
            [0.6000000238418579, 0.800000011920929]
        """
        import numpy as np

        data = np.asarray(vector, dtype=np.float32).ravel().tobytes()
        return self.model_copy(update={**update, "carried_vector": _Carried(data)})

    @property
    def escalated(self) -> bool:
        """True when uncertainty sent the query to the fallback route."""
        return self.reason in ("low_confidence", "out_of_distribution")
