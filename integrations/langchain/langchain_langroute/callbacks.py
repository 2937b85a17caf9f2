"""Cost per route: a callback handler that writes every routed call to a cost ledger.

:class:`CostCallbackHandler` watches model runs made by a
:class:`~langchain_langroute.chat_models.RoutingChatModel` or inside a
:class:`~langchain_langroute.cascade.CascadeRunnable` and writes one
:class:`langroute.costs.LedgerRecord` per attempt: route, model, input/output/cached
tokens from ``usage_metadata``, latency, escalation and error. A routed call's rows come
from the core record (:class:`langroute.dispatch.routed_call.RouteMetadata` read back
into a :class:`langroute.dispatch.routed_call.RoutedCall`, then its
:meth:`~langroute.dispatch.routed_call.RoutedCall.ledger_records`).
Pricing (cost, and the baseline cost at the strongest route's model), aggregation
(per-route calls, tokens, cost, latency p50/p95, escalation rate, savings) and storage
(memory, JSONL, SQLite) live in the core :class:`langroute.costs.CostLedger`.

:func:`track_costs` attaches a handler to every LangChain call in a ``with`` block, the
way ``get_usage_metadata_callback`` does for token counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from langroute.costs.records import UNMEASURED_KEY
from langroute.dispatch.routed_call import ROUTE_KEY, Attempt, RoutedCall, RouteMetadata, error_text
from langroute.errors import AllRoutesFailedError
from langroute.router.decision import RouteDecision

from langchain_langroute.cascade import (
    CASCADE_EVENT,
    META_ATTEMPT,
    META_BASELINE,
    META_ROLE,
    META_RUN,
    META_TIER,
    META_TIER_NAME,
)
from langchain_langroute.chat_models import ROUTING_LLM_TYPE
from langchain_langroute.events import CALL_CONTINUED_EVENT, CALL_FAILED_EVENT, ROUTE_EVENT
from langchain_langroute.query import last_human_message
from langchain_langroute.route_models import (
    usage_of_message,
)

__all__ = [
    "QUERY_METADATA",
    "RECORD_ID_METADATA",
    "CostCallbackHandler",
    "RecordsHook",
    "track_costs",
]

RECORD_ID_METADATA = "langroute_record_id"
"""Run metadata key: the ``record_id`` the answering attempt's ledger row takes (so an
application that made the id up front, like ``langroute serve``, finds the row by it)."""
QUERY_METADATA = "langroute_query"
"""Run metadata key: the query text every row of the call keeps in ``query``."""

RecordsHook = Callable[[Mapping[str, Any], list[LedgerRecord]], None]
"""Called with a run's metadata and its records as the ledger stored them (priced)."""


@dataclass
class _Run:
    """What the handler knows about one model run between its start and its end."""

    started: float
    routing: bool
    metadata: dict[str, Any]
    model_hint: str | None
    decision: dict[str, Any] | None = None
    failed_call: dict[str, Any] | None = None
    continued_call: dict[str, Any] | None = None  # a stream continued on another model
    query: str | None = None  # the last user message, kept with store_queries=True

    def routed_query(self) -> str | None:
        """The text the router routed on (its decision), else the last user message."""
        decision = (self.decision or {}).get("decision")
        routed = decision.get("query") if isinstance(decision, Mapping) else None
        return routed or self.query


@dataclass
class _Pending:
    """Records of one cascade attempt, held until the cascade says whether it was accepted.

    Each item is a record with its cascade role (``"tier"``/``"judge"``) and tier name.
    """

    records: list[tuple[LedgerRecord, str | None, str | None]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # the attempt's run metadata


def _event_call(event: Mapping[str, Any], last: Attempt) -> RoutedCall:
    """The routed call of a ``"langroute_route"`` event's decision, tried once: ``last``."""
    kwargs = {"call_id": event["call_id"]} if event.get("call_id") else {}
    return RoutedCall(
        decision=RouteDecision.model_validate(event["decision"]),
        attempts=[last],
        baseline_route=event.get("baseline_route") or event["decision"]["route"],
        baseline_model=event.get("baseline_model"),
        **kwargs,
    )


class CostCallbackHandler(BaseCallbackHandler):
    """Records the cost of every model call made through routing models and cascades.

    One :class:`~langroute.costs.LedgerRecord` per call. For a routing model: the route
    and model that answered, tokens (cached ones included), cost, baseline cost (the same
    tokens at the strongest route's model), latency, and escalation after errors (each
    failed attempt is recorded too, with its own route, model and error). A call whose
    provider reported no usage is recorded unmeasured (not priced, not $0). For a cascade: one
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
        segment_keys: Sequence[str] = (),
        store_queries: bool = False,
        on_records: RecordsHook | None = None,
    ) -> None:
        """Create a handler.

        Args:
            ledger: Where records go (default: a new in-memory :class:`CostLedger`).
            pricer: Prices calls: it becomes the ledger's pricer (pricing happens only in
                :meth:`CostLedger.record`), replacing that of a ``ledger`` passed in.
                Default: the ledger's own. Unknown models cost ``None`` with one
                warning; pricing never raises.
            record_all: Also record model calls that are neither routed nor cascaded
                (``route=None``).
            framework: The ``framework`` field of the records.
            segment_keys: Keys of the run's metadata (``config={"metadata": {...}}``)
                copied into each record's ``metadata``, so ``langroute monitor --segment
                KEY`` can watch each tenant, language or app apart.
            store_queries: Keep the routed query text in each record's ``query`` (off
                by default: queries may hold private data). Learning from feedback
                (``router.learn_from_feedback(ledger, record_id, verdict)``, with the
                ``record_id`` of ``response_metadata["langroute"]``) needs it. A run whose
                metadata holds :data:`QUERY_METADATA` keeps that text in any case.
            on_records: Called with each run's metadata and its records as
                :meth:`CostLedger.record` stored them (priced once, there): for budgets,
                metrics or anything else that follows spend.
        """
        super().__init__()
        self.ledger = ledger if ledger is not None else CostLedger(pricer=pricer)
        if pricer is not None:
            self.ledger.pricer = pricer
        self.record_all = record_all
        self.framework = framework
        self.segment_keys = tuple(segment_keys)
        self.store_queries = store_queries
        self.on_records = on_records
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
        routed = isinstance(metadata.get(ROUTE_KEY), Mapping)  # RouterMiddleware
        if not (routing or routed or META_ATTEMPT in metadata or self.record_all):
            return
        with self._lock:
            self._runs[run_id] = _Run(
                started=time.perf_counter(),
                routing=routing,
                metadata=metadata,
                model_hint=metadata.get("ls_model_name"),
                query=last_human_message(messages[0]) if self.store_queries and messages else None,
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
        elif name in (CALL_FAILED_EVENT, CALL_CONTINUED_EVENT) and isinstance(data, Mapping):
            with self._lock:
                run = self._runs.get(run_id)
                if run is not None and isinstance(data.get("call"), Mapping):
                    if name == CALL_FAILED_EVENT:
                        run.failed_call = dict(data["call"])
                    else:
                        run.continued_call = dict(data["call"])
        elif name == CASCADE_EVENT and isinstance(data, Mapping):
            with self._lock:
                pending = self._pending.pop(str(data.get("attempt_id")), None)
            if pending is not None:
                self._store(
                    pending.metadata,
                    [
                        self._cascade_verdict(record, role, tier_name, data)
                        for record, role, tier_name in pending.records
                    ],
                )

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
        usage = usage_of_message(message)
        if run.continued_call is not None:  # every attempt, each with its own usage
            continued = RoutedCall.model_validate(run.continued_call)
            self._dispatch(run, continued.ledger_records(framework=self.framework))
            return
        meta = RouteMetadata.from_metadata(info)  # a RoutingChatModel answer
        own_run = meta is not None
        if meta is None and isinstance(run.metadata.get(ROUTE_KEY), Mapping):
            meta = RouteMetadata.from_metadata(run.metadata)  # a RouterMiddleware model run
        model = info.get("model_name") or (meta.model if meta else None) or run.model_hint
        if meta is None:
            plain = LedgerRecord(
                framework=self.framework,
                run_id=str(run_id),
                model=model,
                input_tokens=usage.input_tokens if usage else 0,
                output_tokens=usage.output_tokens if usage else 0,
                cached_tokens=usage.cached_tokens if usage else 0,
                latency_ms=latency_ms,
                metadata={UNMEASURED_KEY: True} if usage is None else {},
            )
            self._dispatch(run, [plain])
            return
        # the router's one-time encoder load is recorded apart (router_load_ms)
        latency_ms = max(0.0, latency_ms - meta.router_load_ms)
        answered = Attempt(route=meta.route, model=model, usage=usage, latency_ms=latency_ms)
        # A RoutingChatModel run made every attempt; under RouterMiddleware the failed
        # attempts were model runs of their own (recorded by on_llm_error).
        records = meta.to_call(answered).ledger_records(
            framework=self.framework, attempt=None if own_run else -1
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
        if run.failed_call is not None:  # a RoutingChatModel reported every attempt
            failed = RoutedCall.model_validate(run.failed_call)
            self._dispatch(run, failed.ledger_records(framework=self.framework))
            return
        call = getattr(error, "call", None) if isinstance(error, AllRoutesFailedError) else None
        if isinstance(call, RoutedCall):  # a RoutingChatModel that ran out of routes
            self._dispatch(run, call.ledger_records(framework=self.framework))
            return
        event = run.decision
        meta = RouteMetadata.from_metadata(run.metadata)
        route = meta.route if meta else (event or {}).get("route")
        model = (meta.model if meta else (event or {}).get("model")) or run.model_hint
        failed = Attempt(
            route=route or "", model=model, error=error_text(error), latency_ms=latency_ms
        )
        if route is not None and meta is not None:  # a RouterMiddleware attempt
            # its earlier attempts were runs of their own: only this one is recorded here
            records = meta.to_call(failed).ledger_records(framework=self.framework, attempt=-1)
        elif route is not None and event is not None and isinstance(event.get("decision"), Mapping):
            records = _event_call(event, failed).ledger_records(framework=self.framework)
        else:
            records = [
                LedgerRecord(
                    framework=self.framework,
                    run_id=str(run_id),
                    model=model,
                    error=failed.error,
                    latency_ms=latency_ms,
                )
            ]
        self._dispatch(run, records)

    # ------------------------------------------------------------------ records
    def _dispatch(self, run: _Run, records: list[LedgerRecord]) -> None:
        segments = {k: run.metadata[k] for k in self.segment_keys if k in run.metadata}
        if segments:
            records = [
                r.model_copy(update={"metadata": {**r.metadata, **segments}}) for r in records
            ]
        query = run.metadata.get(QUERY_METADATA) or (
            run.routed_query() if self.store_queries else None
        )
        if query:
            records = [r.model_copy(update={"query": query}) for r in records]
        record_id = run.metadata.get(RECORD_ID_METADATA)
        if record_id and records and records[-1].error is None:
            records[-1] = records[-1].model_copy(update={"record_id": str(record_id)})
        attempt = run.metadata.get(META_ATTEMPT)
        if attempt is None:
            self._store(run.metadata, records)
            return
        role = run.metadata.get(META_ROLE)
        tier_name = run.metadata.get(META_TIER_NAME)
        with self._lock:
            pending = self._pending.setdefault(str(attempt), _Pending(metadata=run.metadata))
            for record in records:
                metadata = dict(record.metadata)
                if record.route is not None:
                    metadata["routed_route"] = record.route
                cascaded = record.model_copy(
                    update={
                        "run_id": str(run.metadata.get(META_RUN)),
                        "kind": "cascade",
                        "tier": run.metadata.get(META_TIER),
                        "baseline_model": run.metadata.get(META_BASELINE),
                        "metadata": metadata,
                    }
                )
                pending.records.append((cascaded, role, tier_name))

    @staticmethod
    def _cascade_verdict(
        record: LedgerRecord, role: str | None, tier_name: str | None, verdict: Mapping[str, Any]
    ) -> LedgerRecord:
        metadata = dict(record.metadata)
        metadata["cascade_reason"] = verdict.get("reason")
        if verdict.get("score") is not None:
            metadata["score"] = verdict.get("score")
        if role == "judge":
            metadata["role"] = "judge"
            update: dict[str, Any] = {
                "route": "judge",
                "baseline_model": None,
                "accepted": None,
                "escalated": False,
            }
        else:  # the cascade's own fields of the row, as the core's CascadeCall gives them
            row = verdict["row"]
            metadata.update(row["metadata"])
            update = {
                "record_id": row["record_id"],
                "run_id": row["run_id"],
                "route": row["route"],
                "accepted": bool(row["accepted"]) and not record.error,
                "escalated": row["escalated"] or record.escalated,
                "escalated_from": row["escalated_from"] or record.escalated_from,
                "reason": row["reason"],
                "confidence": row["confidence"],
            }
        return record.model_copy(update={**update, "metadata": metadata})

    def flush(self) -> int:
        """Write cascade records still waiting for a verdict (``accepted=None``).

        Normally every attempt gets its verdict from the cascade; records can only be left
        over when a cascade was interrupted. Returns how many records were written.
        """
        with self._lock:
            pending, self._pending = self._pending, {}
        written = 0
        for item in pending.values():
            records = [
                record.model_copy(update={"route": tier_name})
                for record, _role, tier_name in item.records
            ]
            self._store(item.metadata, records)
            written += len(records)
        return written

    def _store(self, metadata: Mapping[str, Any], records: list[LedgerRecord]) -> None:
        """Write a run's records (the ledger prices them) and give them to ``on_records``."""
        stored = [self.ledger.record(record) for record in records]
        if self.on_records is not None and stored:
            self.on_records(metadata, stored)


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
    segment_keys: Sequence[str] = (),
    store_queries: bool = False,
) -> Iterator[CostLedger]:
    """Record the cost of every routed or cascaded call made inside the ``with`` block.

    Works like ``langchain_core.callbacks.get_usage_metadata_callback``: a
    :class:`CostCallbackHandler` is attached to every LangChain run started in this
    context (threads started by LangChain and asyncio tasks inherit it). A nested
    ``track_costs`` block replaces the outer one for its duration.

    Args:
        ledger: A :class:`CostLedger`, a sink path (``"costs.jsonl"``, ``"costs.db"``),
            or ``None`` for a new in-memory ledger.
        pricer: Prices the calls; it becomes the ledger's pricer (default: the ledger's).
        record_all: Also record model calls that are neither routed nor cascaded.
        segment_keys: Run metadata keys copied into every record (see
            :class:`CostCallbackHandler`).
        store_queries: Keep the routed query text in the records (see
            :class:`CostCallbackHandler`).

    Yields:
        The ledger being written. On exit its pending writes are flushed, so a ledger
        file holds every record of the block.

    Example:
        .. code-block:: python

            with track_costs() as ledger:
                llm.invoke("hi")
            ledger.summary().calls  # 1
    """
    if not isinstance(ledger, CostLedger):
        ledger = CostLedger(ledger, pricer=pricer)
    handler = CostCallbackHandler(
        ledger,
        pricer=pricer,
        record_all=record_all,
        segment_keys=segment_keys,
        store_queries=store_queries,
    )
    token = _handler_var.set(handler)
    try:
        yield ledger
    finally:
        _handler_var.reset(token)
        handler.flush()
        ledger.flush()
