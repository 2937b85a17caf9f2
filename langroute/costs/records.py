"""The ledger record (one paid model call), the error for malformed files, the torn-line warning."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from langroute.errors import LedgerFormatError, TornLinesWarning
from langroute.files.textfiles import MAX_JSON_DEPTH, JSONTooDeepError, load_json

__all__ = [
    "LABELLING_PURPOSE",
    "OVERHEAD_ROLES",
    "PURPOSE_KEY",
    "ROLE_KEY",
    "UNMEASURED_KEY",
    "LedgerFormatError",
    "LedgerRecord",
    "TornLinesWarning",
    "Verdict",
]

UNMEASURED_KEY = "unmeasured"
"""``metadata`` key set to ``true`` on a record whose provider reported no token usage."""
PURPOSE_KEY = "purpose"
"""``metadata`` key naming what a call was for, when it was not serving a user."""
LABELLING_PURPOSE = "labelling"
"""Its value on the calls of a labelling run (``langroute label``): reported apart."""
ROLE_KEY = "role"
"""``metadata`` key naming a call's part in a request when it did not write the answer."""
OVERHEAD_ROLES = frozenset({"judge", "router"})
"""Roles of calls that serve the decision (an LLM judge, an LLM router), not the user.

They cost money like any call and share the request's ``run_id``, so their cost counts
against the request's savings; they never count as the route that answered."""


EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=timezone.utc)
"""Ledger records are dated from this instant on (earlier ones are refused)."""

LATEST_TIMESTAMP = datetime(3000, 1, 1, tzinfo=timezone.utc)
"""Ledger records are dated before this instant: report and monitor windows stay in range."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_record_id() -> str:
    """A fresh, globally unique record id (32 hex digits)."""
    return uuid.uuid4().hex


Verdict = Literal["good", "bad"]
"""What a feedback record says about the answer it refers to."""


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so what is stored equals what is read back.

    Raises:
        ValueError: Nested deeper than the readers take (``MAX_JSON_DEPTH``): a record
            written so would make the ledger unreadable.
    """
    try:
        text = json.dumps(value, default=str)
    except RecursionError as exc:
        raise JSONTooDeepError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from exc
    return load_json(text)


class LedgerRecord(BaseModel):
    """One paid model call (or one attempt of a cascade), as the ledger stores it.

    Attempts that belong to one user request (cascade tiers, a fallback after an error)
    should share ``run_id``: the summary then counts the request, and its baseline cost,
    once. Records without ``run_id`` are each their own request.

    ``baseline_cost`` is what the same tokens would have cost on ``baseline_model`` (the
    strongest route's model). :meth:`~langroute.costs.CostLedger.record` fills ``cost`` and
    ``baseline_cost`` from its :class:`~langroute.costs.Pricer` when they are left ``None``,
    except for an unmeasured record (``metadata["unmeasured"]``: the call produced output
    but its provider reported no usage), whose cost is unknown rather than zero.

    Every record has a unique ``record_id``: an application passes it on (with the
    answer) so that feedback can name the call later. A *feedback* record
    (``kind="feedback"``) is not a call: it says that the answer of the record
    ``feedback_for`` was ``"good"`` or ``"bad"`` (:meth:`CostLedger.feedback
    <langroute.costs.CostLedger.feedback>` writes it, copying that record's route, model,
    run and metadata, so it lands in the same segment). Summaries count feedback apart
    from calls. ``query`` holds the routed query text only when the caller asked the
    ledger to keep queries (it is what learning from feedback needs).

    Money and latency are finite and never negative, and ``timestamp`` falls between
    :data:`EARLIEST_TIMESTAMP` (1970) and :data:`LATEST_TIMESTAMP` (3000): a record
    that breaks this is refused when written, and a ledger file holding one fails to
    read with an error naming its line, instead of totals of ``$nan`` or a crash.

    Example:
        >>> rec = LedgerRecord(framework="core", kind="route", route="small",
        ...                    model="gpt-4o-mini", input_tokens=12, output_tokens=30)
        >>> rec.timestamp.tzinfo is not None, rec.escalated
        (True, False)
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    record_id: str = Field(
        default_factory=new_record_id, min_length=1, description="Unique id of this record."
    )
    timestamp: datetime = Field(default_factory=_utcnow, description="When the call ended (UTC).")
    framework: str = Field(default="core", description='"langchain", "llama_index", "core", ...')
    run_id: str | None = Field(default=None, description="Identifier of the user request.")
    kind: Literal["route", "cascade", "feedback"] = "route"
    route: str | None = None
    model: str | None = None
    input_tokens: int = Field(default=0, ge=0, description="Input tokens, cached ones included.")
    output_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0, description="Part of input_tokens read from cache.")
    cost: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="USD; None when the price is unknown.",
    )
    baseline_model: str | None = Field(default=None, description="The strongest route's model.")
    baseline_cost: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="The same tokens priced at baseline_model (USD).",
    )
    latency_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    escalated: bool = Field(
        default=False, description="This call happened because a cheaper route failed/was rejected."
    )
    escalated_from: str | None = None
    error: str | None = Field(default=None, description='"ErrorType: message" if it failed.')
    reason: str | None = Field(default=None, description='Decision reason ("vote", ...).')
    confidence: float | None = None
    tier: int | None = Field(default=None, description="Cascade tier index (0 = cheapest).")
    accepted: bool | None = Field(default=None, description="Cascade: was this answer accepted.")
    query: str | None = Field(
        default=None, description="The routed query, when the caller keeps queries."
    )
    feedback_for: str | None = Field(
        default=None, description="Feedback: the record_id of the answer it judges."
    )
    verdict: Verdict | None = Field(default=None, description='Feedback: "good" or "bad".')
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Shadow evaluation: a candidate router's decision on this request, on the row of
    # its first attempt only (escalated is false), so each request counts once.
    shadow_router: str | None = Field(
        default=None, description="Shadow evaluation: the candidate router's name (its path)."
    )
    shadow_route: str | None = Field(
        default=None, description="Shadow evaluation: the candidate's route (None: none made)."
    )
    shadow_reason: str | None = Field(default=None, description="The candidate's reason.")
    shadow_confidence: float | None = Field(
        default=None, allow_inf_nan=False, description="The candidate's confidence."
    )
    shadow_error: str | None = Field(
        default=None, description='"ErrorType: message" when the candidate failed or timed out.'
    )

    @property
    def is_feedback(self) -> bool:
        """True for a feedback record (a verdict on an earlier call, not a call).

        Example:
            >>> LedgerRecord(kind="feedback", feedback_for="ab12", verdict="bad").is_feedback
            True
        """
        return self.kind == "feedback"

    @property
    def measured(self) -> bool:
        """False when the provider reported no usage for a call that produced output.

        Such a record's token counts are not the call's (they are zeros), so it is never
        priced, and the summary counts it in ``unmeasured_calls``, outside cost and
        savings.

        Example:
            >>> LedgerRecord(metadata={"unmeasured": True}).measured
            False
        """
        return self.metadata.get(UNMEASURED_KEY) is not True

    @property
    def overhead(self) -> bool:
        """True for a call that served the decision (a judge or LLM router), not the user.

        Example:
            >>> LedgerRecord(route="judge", metadata={"role": "judge"}).overhead
            True
        """
        return self.metadata.get(ROLE_KEY) in OVERHEAD_ROLES

    @property
    def labelling(self) -> bool:
        """True for a call made to label exemplars (``metadata["purpose"]``), not to serve.

        Example:
            >>> LedgerRecord(metadata={"purpose": "labelling"}).labelling
            True
        """
        return self.metadata.get(PURPOSE_KEY) == LABELLING_PURPOSE

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        try:
            utc = (
                value.replace(tzinfo=timezone.utc)
                if value.tzinfo is None
                else value.astimezone(timezone.utc)
            )
        except OverflowError:  # year 1 or 9999 shifted by its offset
            utc = None
        if utc is None or not EARLIEST_TIMESTAMP <= utc < LATEST_TIMESTAMP:
            raise ValueError(
                f"timestamp {value.isoformat()} is out of range: records must fall between "
                f"{EARLIEST_TIMESTAMP:%Y-%m-%d} and {LATEST_TIMESTAMP:%Y-%m-%d} (UTC)"
            )
        return utc

    @model_validator(mode="after")
    def _feedback_complete(self) -> LedgerRecord:
        if self.is_feedback and (self.feedback_for is None or self.verdict is None):
            raise ValueError("a feedback record needs feedback_for and verdict")
        if not self.is_feedback and self.verdict is not None:
            raise ValueError(f"only feedback records carry a verdict (kind is {self.kind!r})")
        return self

    @field_validator("metadata")
    @classmethod
    def _metadata_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _json_safe(value)
