"""Cost per route: a callback handler that writes every routed call to a cost ledger.

:class:`CostCallbackHandler` watches model runs made by a
:class:`~langchain_langroute.chat_models.RoutingChatModel` or inside a
:class:`~langchain_langroute.cascade.CascadeRunnable` and writes one
:class:`langroute.costs.LedgerRecord` per call: route, model, input/output/cached tokens
from ``usage_metadata``, cost (``genai-prices`` via :class:`langroute.costs.Pricer`), the
baseline cost at the strongest route's model, latency, escalation and error. Aggregation
(per-route calls, tokens, cost, latency p50/p95, escalation rate, savings) and storage
(memory, JSONL, SQLite) live in the core :class:`langroute.costs.CostLedger`.

:func:`track_costs` attaches a handler to every LangChain call in a ``with`` block, the
way ``get_usage_metadata_callback`` does for token counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.context import register_configure_hook
from langroute.costs import CostLedger, LedgerRecord, Pricer
from langroute.errors import AllRoutesFailedError

from langchain_langroute.cascade import (
    CASCADE_EVENT,
    META_ATTEMPT,
    META_BASELINE,
    META_ROLE,
    META_RUN,
    META_TIER,
    META_TIER_NAME,
)
from langchain_langroute.chat_models import ROUTE_EVENT, ROUTE_METADATA_KEY, ROUTING_LLM_TYPE

__all__ = ["CostCallbackHandler", "track_costs"]


@dataclass
class _Run:
    """What the handler knows about one model run between its start and its end."""

    started: float
    routing: bool
    metadata: dict[str, Any]
    model_hint: str | None
    decision: dict[str, Any] | None = None


@dataclass
class _Pending:
    """Records of one cascade attempt, held until the cascade says whether it was accepted."""

    records: list[dict[str, Any]] = field(default_factory=list)


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _usage(message: BaseMessage | None) -> tuple[int, int, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    details = usage.get("input_token_details") or {}
    return (
        int(usage.get("input_tokens") or 0),
        int(usage.get("output_tokens") or 0),
        int(details.get("cache_read") or 0),
    )


class CostCallbackHandler(BaseCallbackHandler):
    """Records the cost of every model call made through routing models and cascades.

    One :class:`~langroute.costs.LedgerRecord` per call. For a routing model: the route
    and model that answered, tokens (cached ones included), cost, baseline cost (the same
    tokens at the strongest route's model), latency, and escalation after errors (each
    failed attempt is recorded too, with its error and no tokens). For a cascade: one
    record per tier attempt (``kind="cascade"``, ``tier``, ``accepted``), plus judge calls
    (``route="judge"``). Records of one user request share ``run_id``, so the ledger's
    summary counts the request, and its baseline, once.

    Other model calls are ignored unless ``record_all=True``.

    Thread- and async-safe: state is guarded by a lock and the ledger is thread-safe.

    Setup:
        .. code-block:: bash

            pip install langchain-langroute

    Instantiate:
        .. code-block:: python

            from langroute.costs import CostLedger, ModelPrice, Pricer
            from langchain_langroute import CostCallbackHandler

            handler = CostCallbackHandler(
                ledger=CostLedger("costs.db"),  # or None (memory), "costs.jsonl"
                pricer=Pricer({"my-local-model": ModelPrice(input_per_mtok=0, output_per_mtok=0)}),
            )

    Invoke:
        .. code-block:: python

            llm.invoke("hi", config={"callbacks": [handler]})
            handler.ledger.summary().route("small").cost

    Context manager:
        .. code-block:: python

            with track_costs() as ledger:
                chain.invoke({"question": "..."})
            print(ledger.summary().savings)
    """

    raise_error: bool = False
    run_inline: bool = True

    def __init__(
        self,
        ledger: CostLedger | None = None,
        pricer: Pricer | None = None,
        *,
        record_all: bool = False,
        framework: str = "langchain",
    ) -> None:
        """Create a handler.

        Args:
            ledger: Where records go (default: a new in-memory :class:`CostLedger`).
            pricer: Prices calls (default: the ledger's pricer). Unknown models cost
                ``None`` with one warning; pricing never raises.
            record_all: Also record model calls that are neither routed nor cascaded
                (``route=None``).
            framework: The ``framework`` field of the records.
        """
        super().__init__()
        self.ledger = ledger if ledger is not None else CostLedger(pricer=pricer)
        self.pricer = pricer if pricer is not None else self.ledger.pricer
        self.record_all = record_all
        self.framework = framework
        self._lock = threading.Lock()
        self._runs: dict[UUID, _Run] = {}
        self._pending: dict[str, _Pending] = {}

    def __repr__(self) -> str:
        return f"CostCallbackHandler(ledger={self.ledger!r})"

    # ------------------------------------------------------------------ callbacks
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Note the start of a model run (time, whether it is routed or cascaded)."""
        metadata = dict(metadata or {})
        params = kwargs.get("invocation_params") or {}
        routing = params.get("_type") == ROUTING_LLM_TYPE
        routed = isinstance(metadata.get(ROUTE_METADATA_KEY), Mapping)  # RouterMiddleware
        if not (routing or routed or META_ATTEMPT in metadata or self.record_all):
            return
        with self._lock:
            self._runs[run_id] = _Run(
                started=time.perf_counter(),
                routing=routing,
                metadata=metadata,
                model_hint=metadata.get("ls_model_name"),
            )

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Completion (non-chat) models: tracked like chat models when in scope."""
        self.on_chat_model_start(
            serialized,
            [],
            run_id=run_id,
            parent_run_id=parent_run_id,
            tags=tags,
            metadata=metadata,
            **kwargs,
        )

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Keep routing decisions; finish cascade attempts once their verdict is known."""
        if name == ROUTE_EVENT and isinstance(data, Mapping):
            with self._lock:
                run = self._runs.get(run_id)
                if run is not None:
                    run.decision = dict(data)
        elif name == CASCADE_EVENT and isinstance(data, Mapping):
            with self._lock:
                pending = self._pending.pop(str(data.get("attempt_id")), None)
            for fields in pending.records if pending else []:
                self._write(self._cascade_fields(fields, data))

    def on_llm_end(
        self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """Record the finished call."""
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        latency_ms = (time.perf_counter() - run.started) * 1000
        generation = (
            response.generations[0][0] if response.generations and response.generations[0] else None
        )
        message = generation.message if isinstance(generation, ChatGeneration) else None
        info = (message.response_metadata if message is not None else None) or {}
        if generation is not None and generation.generation_info:
            info = {**generation.generation_info, **info}
        routing = info.get(ROUTE_METADATA_KEY) if isinstance(info, Mapping) else None
        if not isinstance(routing, Mapping):
            routing = run.metadata.get(ROUTE_METADATA_KEY)
        input_tokens, output_tokens, cached = _usage(message)
        model = info.get("model_name") or (routing or {}).get("model") or run.model_hint
        records: list[dict[str, Any]] = []
        if isinstance(routing, Mapping):
            for index, attempt in enumerate(routing.get("attempts") or []):
                records.append(
                    {
                        "run_id": str(run_id),
                        "route": attempt.get("route"),
                        "model": attempt.get("model"),
                        "baseline_model": routing.get("baseline_model"),
                        "escalated": index > 0,
                        "escalated_from": routing["attempts"][0]["route"] if index else None,
                        "error": attempt.get("error"),
                        "reason": routing.get("reason"),
                        "confidence": routing.get("confidence"),
                        "metadata": {"decided_route": routing.get("decided_route")},
                    }
                )
            records.append(
                {
                    "run_id": str(run_id),
                    "route": routing.get("route"),
                    "model": model,
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cached_tokens": cached,
                    "baseline_model": routing.get("baseline_model"),
                    "latency_ms": latency_ms,
                    "escalated": bool(routing.get("escalated")),
                    "escalated_from": routing.get("escalated_from"),
                    "reason": routing.get("reason"),
                    "confidence": routing.get("confidence"),
                    "metadata": {
                        "decided_route": routing.get("decided_route"),
                        "routing_ms": routing.get("routing_ms"),
                    },
                }
            )
        else:
            records.append(
                {
                    "run_id": str(run_id),
                    "route": None,
                    "model": model,
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cached_tokens": cached,
                    "latency_ms": latency_ms,
                }
            )
        self._dispatch(run, records)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record the failed call (each failed route attempt when routing gave up)."""
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        latency_ms = (time.perf_counter() - run.started) * 1000
        decision = run.decision or run.metadata.get(ROUTE_METADATA_KEY) or {}
        route_models: Mapping[str, str] = decision.get("route_models") or {}
        base = {
            "run_id": str(run_id),
            "baseline_model": decision.get("baseline_model"),
            "reason": decision.get("reason"),
            "confidence": decision.get("confidence"),
        }
        records: list[dict[str, Any]] = []
        if isinstance(error, AllRoutesFailedError) and error.attempts:
            first = error.attempts[0][0]
            for index, (route, cause) in enumerate(error.attempts):
                records.append(
                    {
                        **base,
                        "route": route,
                        "model": route_models.get(route),
                        "escalated": index > 0,
                        "escalated_from": first if index else None,
                        "error": _error_text(cause),
                        "latency_ms": latency_ms if index == len(error.attempts) - 1 else None,
                    }
                )
        else:
            route = decision.get("route")
            records.append(
                {
                    **base,
                    "route": route,
                    "model": decision.get("model") or run.model_hint,
                    "escalated": bool(decision.get("escalated")),
                    "escalated_from": decision.get("escalated_from"),
                    "error": _error_text(error),
                    "latency_ms": latency_ms,
                }
            )
        self._dispatch(run, records)

    # ------------------------------------------------------------------ records
    def _dispatch(self, run: _Run, records: list[dict[str, Any]]) -> None:
        attempt = run.metadata.get(META_ATTEMPT)
        if attempt is None:
            for fields in records:
                self._write({"kind": "route", **fields})
            return
        cascade_fields = {
            "run_id": str(run.metadata.get(META_RUN)),
            "kind": "cascade",
            "tier": run.metadata.get(META_TIER),
            "tier_name": run.metadata.get(META_TIER_NAME),
            "role": run.metadata.get(META_ROLE),
            "baseline_model": run.metadata.get(META_BASELINE),
        }
        with self._lock:
            pending = self._pending.setdefault(str(attempt), _Pending())
            for fields in records:
                metadata = dict(fields.get("metadata") or {})
                if fields.get("route") is not None:
                    metadata["routed_route"] = fields["route"]
                pending.records.append({**fields, **cascade_fields, "metadata": metadata})

    def _cascade_fields(self, fields: dict[str, Any], verdict: Mapping[str, Any]) -> dict[str, Any]:
        role = fields.pop("role", None)
        tier_name = fields.pop("tier_name", None)
        metadata = dict(fields.get("metadata") or {})
        metadata["cascade_reason"] = verdict.get("reason")
        if verdict.get("score") is not None:
            metadata["score"] = verdict.get("score")
        tier = fields.get("tier")
        if role == "judge":
            metadata["role"] = "judge"
            return {
                **fields,
                "route": "judge",
                "baseline_model": None,
                "accepted": None,
                "escalated": False,
                "metadata": metadata,
            }
        escalated = bool(tier)
        return {
            **fields,
            "route": tier_name,
            "accepted": bool(verdict.get("accepted")) and not fields.get("error"),
            "escalated": escalated or bool(fields.get("escalated")),
            "reason": fields.get("reason") or "cascade",
            "metadata": metadata,
        }

    def _write(self, fields: dict[str, Any]) -> None:
        fields = {k: v for k, v in fields.items() if v is not None or k in ("accepted",)}
        model = fields.get("model")
        tokens = (
            int(fields.get("input_tokens", 0)),
            int(fields.get("output_tokens", 0)),
            int(fields.get("cached_tokens", 0)),
        )
        if model is not None:
            fields["cost"] = self.pricer.cost(model, *tokens)
        baseline = fields.get("baseline_model")
        if baseline is not None:
            fields["baseline_cost"] = (
                fields.get("cost") if baseline == model else self.pricer.cost(baseline, *tokens)
            )
        self.ledger.record(LedgerRecord(framework=self.framework, **fields))

    def flush(self) -> int:
        """Write cascade records still waiting for a verdict (``accepted=None``).

        Normally every attempt gets its verdict from the cascade; records can only be left
        over when a cascade was interrupted. Returns how many records were written.
        """
        with self._lock:
            pending, self._pending = self._pending, {}
        written = 0
        for item in pending.values():
            for fields in item.records:
                fields.pop("role", None)
                fields["route"] = fields.pop("tier_name", None)
                self._write(fields)
                written += 1
        return written


_handler_var: ContextVar[CostCallbackHandler | None] = ContextVar(
    "langroute_cost_handler", default=None
)
register_configure_hook(_handler_var, inheritable=True)


@contextmanager
def track_costs(
    ledger: CostLedger | str | None = None,
    *,
    pricer: Pricer | None = None,
    record_all: bool = False,
) -> Iterator[CostLedger]:
    """Record the cost of every routed or cascaded call made inside the ``with`` block.

    Works like ``langchain_core.callbacks.get_usage_metadata_callback``: a
    :class:`CostCallbackHandler` is attached to every LangChain run started in this
    context (threads started by LangChain and asyncio tasks inherit it). A nested
    ``track_costs`` block replaces the outer one for its duration.

    Args:
        ledger: A :class:`CostLedger`, a sink path (``"costs.jsonl"``, ``"costs.db"``),
            or ``None`` for a new in-memory ledger.
        pricer: Prices the calls (default: the ledger's pricer).
        record_all: Also record model calls that are neither routed nor cascaded.

    Yields:
        The ledger being written.

    Example:
        .. code-block:: python

            with track_costs() as ledger:
                llm.invoke("hi")
            ledger.summary().calls  # 1
    """
    if not isinstance(ledger, CostLedger):
        ledger = CostLedger(ledger, pricer=pricer)
    handler = CostCallbackHandler(ledger, pricer=pricer, record_all=record_all)
    token = _handler_var.set(handler)
    try:
        yield ledger
    finally:
        _handler_var.reset(token)
        handler.flush()
