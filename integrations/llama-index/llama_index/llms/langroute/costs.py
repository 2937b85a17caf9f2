"""Cost per route: an instrumentation event handler that writes to the core ``CostLedger``.

:class:`CostCallbackHandler` listens for the events of :class:`RoutingLLM` and
:class:`CascadeLLM` and stores one :class:`~langroute.costs.LedgerRecord` per model call:
route, model, tokens, cost, the baseline cost (the same tokens on the strongest route's
model), latency, escalation, and the decision's reason and confidence. Records carry
``framework="llama_index"`` and go to the same ledger (memory, JSONL, SQLite) the
LangChain integration writes, so one ``langroute report`` covers both.

Tokens are what the provider reported in its responses (see
:mod:`llama_index.llms.langroute.usage`); for streams, combined over the chunks.

Example:
    >>> from langroute.costs import CostLedger
    >>> ledger = CostLedger("costs.jsonl")  # doctest: +SKIP
    >>> with track_costs(ledger):  # doctest: +SKIP
    ...     query_engine.query("What is our refund policy?")
    >>> ledger.summary().route("small").cost  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from llama_index.core.bridge.pydantic import ConfigDict, Field
from llama_index.core.instrumentation import Dispatcher, get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.llms.langroute.events import (
    FRAMEWORK,
    CascadeTierEvent,
    RouteAttemptFailedEvent,
    RouteCompletedEvent,
)
from llama_index.llms.langroute.usage import TokenUsage, extract_usage

from langroute.costs import CostLedger, LedgerRecord

__all__ = ["FRAMEWORK", "CostCallbackHandler", "TokenUsage", "extract_usage", "track_costs"]


logger = logging.getLogger(__name__)


class CostCallbackHandler(BaseEventHandler):
    """Records every routed call and cascade attempt into a :class:`~langroute.costs.CostLedger`.

    One record per model call: the route that answered (``escalated=True`` and
    ``escalated_from`` when a cheaper route failed first), each failed attempt (with
    ``error`` and no tokens), and each cascade tier (``kind="cascade"``, ``tier``,
    ``accepted``). Routed calls become rows through the core
    (:meth:`langroute.dispatch.routed_call.RoutedCall.ledger_records`, the call each event carries),
    as in the LangChain integration; nothing is priced here. Records of one request
    share its ``run_id``. Costs are filled by the ledger's
    :class:`~langroute.costs.Pricer` (``genai-prices`` unless overridden).

    Args:
        ledger: Where to write (default: a new in-memory ledger).
        metadata: Added to every record's ``metadata`` (an app or tenant name...).
        segment_keys: Keys of the active instrument tags copied into each record's
            ``metadata`` (``with instrument_tags({"tenant": "acme"}): engine.query(...)``),
            so ``langroute monitor --segment KEY`` can watch each tenant apart.
        store_queries: Keep the routed query text in each routed record's ``query`` (off
            by default: queries may hold private data). Learning from feedback
            (``router.learn_from_feedback(ledger, record_id, verdict)`` with the
            ``record_id`` of the response's ``additional_kwargs["langroute"]``) needs it.

    Example:
        >>> from llama_index.core.instrumentation import get_dispatcher
        >>> handler = CostCallbackHandler()
        >>> get_dispatcher().add_event_handler(handler)  # doctest: +SKIP
        >>> query_engine.query("...")  # doctest: +SKIP
        >>> handler.ledger.summary().cost  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    ledger: CostLedger = Field(default_factory=CostLedger)
    metadata: dict[str, Any] = Field(default_factory=dict)
    segment_keys: list[str] = Field(default_factory=list)
    store_queries: bool = False

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "CostCallbackHandler"

    def records_for(self, event: BaseEvent) -> list[LedgerRecord]:
        """The ledger records an event stands for ([] for other events)."""
        if isinstance(event, RouteCompletedEvent):
            # the attempts after the failed ones: the route that answered (and, for a
            # stream continued after a break, the broken attempt before it)
            metadata = {**self.metadata, "call": event.kind, "streamed": event.streamed}
            query = (event.call.decision.query or None) if self.store_queries else None
            answering = range(len(event.failed_routes), len(event.call.attempts))
            return [
                record
                for index in answering
                for record in event.call.ledger_records(
                    framework=FRAMEWORK, metadata=metadata, query=query, attempt=index
                )
            ]
        if isinstance(event, RouteAttemptFailedEvent):
            # the call's last attempt is the route that failed
            metadata = {**self.metadata, "next_route": event.next_route}
            return event.call.ledger_records(framework=FRAMEWORK, metadata=metadata, attempt=-1)
        if isinstance(event, CascadeTierEvent) and event.record is not None:
            record = event.record
            metadata = {**self.metadata, **event.metadata, **record.metadata}
            return [record.model_copy(update={"metadata": metadata})]
        return []

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        """Record the event if it is one of ours.

        LlamaIndex's dispatcher silently drops exceptions raised by handlers, so a
        failing write (a full disk, a locked database) is logged here before it is.
        """
        segments = {k: event.tags[k] for k in self.segment_keys if k in event.tags}
        try:
            for record in self.records_for(event):
                if segments:
                    record = record.model_copy(update={"metadata": {**record.metadata, **segments}})
                self.ledger.record(record)
        except Exception:
            logger.exception(
                "langroute: could not record %s in %r", event.class_name(), self.ledger
            )
            raise


@contextlib.contextmanager
def track_costs(
    ledger: CostLedger | str | Path | None = None,
    *,
    dispatcher: Dispatcher | None = None,
    metadata: Mapping[str, Any] | None = None,
    segment_keys: Sequence[str] = (),
    store_queries: bool = False,
) -> Iterator[CostLedger]:
    """Record routed calls made inside the block into ``ledger``, and yield the ledger.

    Adds a :class:`CostCallbackHandler` to the root dispatcher (or ``dispatcher``) and
    removes it on exit, then flushes the ledger's pending writes (so a ledger file holds
    every record of the block). Same shape as the LangChain integration's ``track_costs``.

    Args:
        ledger: A ledger, or the path of a JSONL / SQLite ledger file (default: a new
            in-memory ledger).
        dispatcher: The dispatcher to listen on (default: the root dispatcher).
        metadata: Added to every record's ``metadata``.
        segment_keys: Instrument tags copied into each record (see
            :class:`CostCallbackHandler`).
        store_queries: Keep the routed query text in the records (see
            :class:`CostCallbackHandler`).

    Example:
        >>> with track_costs("costs.db") as ledger:  # doctest: +SKIP
        ...     llm.complete("hello")
        >>> ledger.summary().calls  # doctest: +SKIP
        1
    """
    target = dispatcher if dispatcher is not None else get_dispatcher()
    if not isinstance(ledger, CostLedger):
        ledger = CostLedger(ledger)
    handler = CostCallbackHandler(
        ledger=ledger,
        metadata=dict(metadata or {}),
        segment_keys=list(segment_keys),
        store_queries=store_queries,
    )
    target.add_event_handler(handler)
    try:
        yield ledger
    finally:
        target.event_handlers = [h for h in target.event_handlers if h is not handler]
        ledger.flush()
