"""OpenTelemetry spans for routing decisions and model calls (optional).

The :class:`~langroute.dispatch.dispatcher.RouteDispatcher` calls :class:`Telemetry`
for every routed call, so ``RoutingChatModel``, ``RouterMiddleware``, ``RoutingLLM``
and ``langroute serve`` emit the same spans:

* ``langroute.route``: the routing decision (its duration is the decision's time), with
  ``langroute.route``, ``langroute.reason``, ``langroute.confidence``,
  ``langroute.stage``, ``langroute.session`` (and ``langroute.session.action``),
  ``langroute.context``, ``langroute.max_similarity``, ``langroute.call_id``,
  ``langroute.baseline_route`` and, with shadow evaluation,
  ``langroute.shadow.route`` / ``.reason`` / ``.confidence`` / ``.error``;
* one ``chat {model}`` span per attempt (a child of the decision's span, kind CLIENT),
  with the GenAI semantic conventions ``gen_ai.operation.name``,
  ``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``,
  ``gen_ai.usage.output_tokens`` and ``error.type``, and ``langroute.route``,
  ``langroute.attempt``, ``langroute.escalated``, ``langroute.escalated_from``,
  ``langroute.cost_usd`` (priced like the ledger), ``langroute.rejected``.

Spans are off unless configured: ``telemetry=None`` (the default of every entry point)
emits them only once the application has set a global tracer provider
(``opentelemetry.trace.set_tracer_provider``); ``telemetry=False`` never does;
``telemetry=True`` always uses the global provider (``[serve] otel = true``, with the
``OTEL_*`` environment variables); a ``TracerProvider`` or a :class:`Telemetry` uses
that one. ``opentelemetry-api`` (the ``otel`` extra) is imported on first use; without
it, spans are off and cost nothing.

Spans are written when each step ends, with their measured start and end times, so
no span is left open by a call that is abandoned (a stream the client dropped).

Example:
    >>> from opentelemetry.sdk.trace import TracerProvider  # doctest: +SKIP
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # doctest: +SKIP
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    ...     InMemorySpanExporter)  # doctest: +SKIP
    >>> exporter = InMemorySpanExporter()  # doctest: +SKIP
    >>> provider = TracerProvider()  # doctest: +SKIP
    >>> provider.add_span_processor(SimpleSpanProcessor(exporter))  # doctest: +SKIP
    >>> llm = RoutingChatModel(models={...}, telemetry=provider)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langroute.costs.pricing import Pricer
    from langroute.dispatch.routed_call import Attempt, RoutedCall

__all__ = ["ROUTE_SPAN", "TRACER_NAME", "Telemetry", "TelemetryOption", "resolve_telemetry"]

TRACER_NAME = "langroute"
"""The instrumentation scope of langroute's spans."""
ROUTE_SPAN = "langroute.route"
"""The name of a routing decision's span."""

TelemetryOption = Any
"""What ``telemetry=`` takes: ``None`` (on once a global provider is set), ``False``,
``True`` (the global provider), a ``TracerProvider``, or a :class:`Telemetry`."""


@functools.lru_cache(maxsize=1)
def _trace_api() -> Any:
    """``opentelemetry.trace``, or ``None`` when opentelemetry-api is not installed."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace


def _global_configured(trace: Any) -> bool:
    """Whether the application set a global tracer provider (not the API's placeholder)."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


class Telemetry:
    """Writes langroute's spans to a tracer provider (see the module docs for the spans).

    Args:
        tracer_provider: The provider to use (default: the global one, at each call).
        only_when_configured: With the global provider, emit nothing until the
            application sets one (how ``telemetry=None`` behaves).
        pricer: Prices each attempt for ``langroute.cost_usd`` (default: a
            :class:`~langroute.costs.Pricer` with no overrides; an unknown model gets
            no cost attribute).
        operation: ``gen_ai.operation.name`` of the model-call spans.

    Example:
        >>> Telemetry(only_when_configured=True).enabled in (True, False)
        True
    """

    def __init__(
        self,
        tracer_provider: Any = None,
        *,
        only_when_configured: bool = False,
        pricer: Pricer | None = None,
        operation: str = "chat",
    ) -> None:
        self.tracer_provider = tracer_provider
        self.only_when_configured = only_when_configured
        self.operation = operation
        self._pricer = pricer
        self._tracers: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"Telemetry({self.tracer_provider!r})"

    @property
    def enabled(self) -> bool:
        """Whether spans are emitted now (opentelemetry installed and a provider to use)."""
        return self._tracer() is not None

    def _tracer(self) -> Any:
        trace = _trace_api()
        if trace is None:
            return None
        provider = self.tracer_provider
        if provider is None:
            if self.only_when_configured and not _global_configured(trace):
                return None
            provider = trace.get_tracer_provider()
        tracer = self._tracers.get(id(provider))
        if tracer is None:
            tracer = provider.get_tracer(TRACER_NAME)
            self._tracers = {id(provider): tracer}  # one provider at a time; keep it small
        return tracer

    def _cost(self, model: str | None, attempt: Attempt) -> float | None:
        if model is None or attempt.usage is None:
            return None
        if self._pricer is None:
            from langroute.costs.pricing import Pricer

            self._pricer = Pricer()
        usage = attempt.usage
        try:
            price = self._pricer.price(model)
        except Exception:  # pricing never fails a span
            return None
        if price is None:
            return None
        return price.cost(usage.input_tokens, usage.output_tokens, usage.cached_tokens)

    # ------------------------------------------------------------------ spans
    def call_hook(
        self,
        call: RoutedCall,
        route_models: Mapping[str, str | None],
        then: Callable[[Attempt], Any] | None = None,
    ) -> Callable[[Attempt], Any] | None:
        """Write ``call``'s decision span now; the hook that writes each attempt's span.

        The returned hook calls ``then`` (the entry point's own hook) after its span, and
        returns what ``then`` returns. With spans off, ``then`` itself is returned.
        """
        tracer = self._tracer()
        if tracer is None:
            return then
        trace = _trace_api()
        decision_span = self._decision_span(tracer, call)
        parent = trace.set_span_in_context(decision_span)
        index = [0]

        def on_attempt(attempt: Attempt) -> Any:
            with contextlib.suppress(Exception):  # telemetry never fails a call
                self._attempt_span(tracer, parent, call, attempt, index[0], route_models)
            index[0] += 1
            return then(attempt) if then is not None else None

        return on_attempt

    def _decision_span(self, tracer: Any, call: RoutedCall) -> Any:
        decision = call.decision
        end = time.time_ns()
        start = end - int(decision.elapsed_ms * 1e6)
        attributes: dict[str, Any] = {
            "langroute.call_id": call.call_id,
            "langroute.route": decision.route,
            "langroute.reason": decision.reason,
            "langroute.confidence": float(decision.confidence),
            "langroute.baseline_route": call.baseline_route,
            "langroute.routing_ms": float(decision.elapsed_ms),
        }
        optional = {
            "langroute.stage": decision.stage,
            "langroute.context": decision.context,
            "langroute.max_similarity": decision.max_similarity,
            "langroute.session": decision.session.key if decision.session else None,
            "langroute.session.action": decision.session.action if decision.session else None,
        }
        shadow = decision.shadow
        if shadow is not None:
            optional |= {
                "langroute.shadow.router": shadow.router,
                "langroute.shadow.route": shadow.route,
                "langroute.shadow.reason": shadow.reason,
                "langroute.shadow.confidence": shadow.confidence,
                "langroute.shadow.error": shadow.error,
            }
        attributes |= {key: value for key, value in optional.items() if value is not None}
        span = tracer.start_span(ROUTE_SPAN, start_time=start, attributes=attributes)
        span.end(end_time=end)
        return span

    def _attempt_span(
        self,
        tracer: Any,
        parent: Any,
        call: RoutedCall,
        attempt: Attempt,
        index: int,
        route_models: Mapping[str, str | None],
    ) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        decision = call.decision
        requested = route_models.get(attempt.route) or attempt.model
        end = time.time_ns()
        start = end - int((attempt.latency_ms or 0.0) * 1e6)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": self.operation,
            "langroute.call_id": call.call_id,
            "langroute.route": attempt.route,
            "langroute.decided_route": decision.route,
            "langroute.reason": decision.reason,
            "langroute.confidence": float(decision.confidence),
            "langroute.attempt": index,
            "langroute.escalated": index > 0,
        }
        optional: dict[str, Any] = {
            "gen_ai.request.model": requested,
            "gen_ai.response.model": attempt.model,
            "langroute.stage": decision.stage,
            "langroute.session": decision.session.key if decision.session else None,
            "langroute.escalated_from": call.attempts[0].route if index > 0 else None,
            "langroute.rejected": True if attempt.rejected else None,
            "langroute.partial": True if attempt.partial else None,
            "langroute.cost_usd": self._cost(attempt.model or requested, attempt),
        }
        if attempt.usage is not None:
            optional["gen_ai.usage.input_tokens"] = attempt.usage.input_tokens
            optional["gen_ai.usage.output_tokens"] = attempt.usage.output_tokens
        if attempt.error is not None:
            optional["error.type"] = attempt.error.split(":", 1)[0]
        attributes |= {key: value for key, value in optional.items() if value is not None}
        span = tracer.start_span(
            f"{self.operation} {requested}" if requested else self.operation,
            context=parent,
            kind=SpanKind.CLIENT,
            start_time=start,
            attributes=attributes,
        )
        if attempt.error is not None:
            span.set_status(Status(StatusCode.ERROR, attempt.error))
        span.end(end_time=end)


_AUTO = Telemetry(only_when_configured=True)


def resolve_telemetry(telemetry: TelemetryOption) -> Telemetry | None:
    """The :class:`Telemetry` a ``telemetry=`` argument asks for (``None``: spans off).

    Raises:
        TypeError: ``telemetry`` is none of the accepted values.
    """
    if telemetry is False:
        return None
    if telemetry is None:
        return _AUTO if _trace_api() is not None else None
    if telemetry is True:
        return Telemetry()
    if isinstance(telemetry, Telemetry):
        return telemetry
    if hasattr(telemetry, "get_tracer"):
        return Telemetry(telemetry)
    raise TypeError(
        "telemetry must be None, True, False, a TracerProvider or a langroute Telemetry; "
        f"got {type(telemetry).__name__}"
    )
