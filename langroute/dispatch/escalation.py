"""Escalation on errors: try the chosen route, then each stronger one, recording every try.

Every integration entry point (a routed ``invoke``, ``stream``, ``chat``, a cascade
tier, an agent's model call) runs its provider calls through one :class:`Escalation`,
so errors escalate alike everywhere: an error listed in ``escalate_on`` moves the call
to the next route of the path, any other error propagates at once, and when every
route fails :class:`~langroute.errors.AllRoutesFailedError` is raised with one message
format. A stream escalates until its first chunk that delivers output (an empty stream
escalates too); after that an error reaches the caller, because part of an answer has
already been delivered. Every try lands in the
call's :class:`~langroute.dispatch.routed_call.RoutedCall` as an
:class:`~langroute.dispatch.routed_call.Attempt` with its model, error, usage and latency.

Example:
    >>> from langroute.dispatch.routed_call import RoutedCall
    >>> from langroute.router.decision import RouteDecision
    >>> call = RoutedCall(
    ...     decision=RouteDecision(route="small", confidence=0.9, reason="vote"),
    ...     baseline_route="large",
    ... )
    >>> def ask(route):
    ...     if route == "small":
    ...         raise TimeoutError("read timed out")
    ...     return f"answer from {route}"
    >>> escalation = Escalation(call, ["small", "large"], model_for=lambda r: f"{r}-model")
    >>> escalation.run(ask)
    ('large', 'answer from large')
    >>> [(a.route, a.error) for a in call.attempts]
    [('small', 'TimeoutError: read timed out'), ('large', None)]
"""

from __future__ import annotations

import inspect
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from langroute.dispatch.breakers import BreakerChange, BreakerRegistry
from langroute.dispatch.equivalents import RouteTarget
from langroute.dispatch.routed_call import Attempt, RoutedCall, TokenUsage, error_text
from langroute.errors import AllRoutesFailedError, CircuitOpenError, EmptyStreamError

__all__ = [
    "Accept",
    "AsyncAccept",
    "Escalation",
    "Resume",
    "escalation_path",
    "max_usage",
    "sum_usage",
]

T = TypeVar("T")

UsageOf = Callable[[Any], TokenUsage | None]
"""Reads the usage a provider reported on an answer or a chunk (None: not reported)."""
ModelOf = Callable[[str, Any], str | None]
"""``(route, answer or first chunk)`` -> the model that served (None: the route's model)."""
UsageMerge = Callable[[TokenUsage | None, TokenUsage | None], TokenUsage | None]
FailureHook = Callable[[Attempt, str | None, BaseException], Any]
"""Called for each failed attempt with the next route to try (None: none left).

In :meth:`Escalation.arun` and :meth:`Escalation.astream` it may return an awaitable,
which is awaited before the next route runs."""
Accept = Callable[[str, T], bool]
"""``(route, answer) -> bool``: False moves a call on from an answer (a cascade's scorer)."""
AsyncAccept = Callable[[str, T], Awaitable[bool]]
AttemptHook = Callable[[Attempt], Any]
"""Called with each final attempt record; may return an awaitable in the async variants."""
Resume = Callable[[list[Any]], Callable[[RouteTarget], Any] | None]
"""``chunks delivered so far -> open_continuation(target)``, or None when they cannot be
continued (a half-delivered tool call): continues a stream that broke after it
delivered output, on the next models (the opener may return an async iterable)."""


async def _settle(value: Any) -> Any:
    """Await ``value`` when it is awaitable (sync and async hooks alike)."""
    if inspect.isawaitable(value):
        return await value
    return value


def _describe(attempt: Attempt) -> str:
    return "rejected" if attempt.rejected else f"error: {attempt.error}"


async def _settle_all(values: list[Any]) -> None:
    for value in values:
        await _settle(value)


def _close(iterator: Iterator[Any]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


def escalation_path(route: str, order: Sequence[str]) -> list[str]:
    """The chosen route, then the routes after it in ``order`` (cheapest first).

    Example:
        >>> escalation_path("medium", ["small", "medium", "large"])
        ['medium', 'large']
        >>> escalation_path("other", ["small", "large"])
        ['other']
    """
    order = list(order)
    if route not in order:
        return [route]
    return order[order.index(route) :]


def sum_usage(a: TokenUsage | None, b: TokenUsage | None) -> TokenUsage | None:
    """Chunk usage that adds up (LangChain: exactly one chunk carries it)."""
    if a is None or b is None:
        return a if b is None else b
    return a + b


def max_usage(a: TokenUsage | None, b: TokenUsage | None) -> TokenUsage | None:
    """Chunk usage reported as running totals: the field-wise maximum (LlamaIndex)."""
    if a is None or b is None:
        return a if b is None else b
    return TokenUsage(
        input_tokens=max(a.input_tokens, b.input_tokens),
        output_tokens=max(a.output_tokens, b.output_tokens),
        cached_tokens=max(a.cached_tokens, b.cached_tokens),
    )


def _no_usage(_: Any) -> TokenUsage | None:
    return None


_END = object()


async def _next(iterator: AsyncIterator[T]) -> Any:
    """The next item of an async iterator, or ``_END``."""
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _END


# The escalation logic is written once, as generators (``Escalation._answer_steps`` and
# ``Escalation._stream_steps``) that yield the steps they need carried out; the sync and
# async methods only carry them out (:func:`_drive`, :func:`_adrive`). A step that raises
# is thrown back into the generator where it was asked for, so the logic reads as if it
# made the call itself.


@dataclass(slots=True)
class _Invoke:
    """Call ``invoke(target)``; the answer is sent back."""

    target: RouteTarget


@dataclass(slots=True)
class _Open:
    """Open ``opener(target)``'s stream; its iterator is sent back."""

    target: RouteTarget
    opener: Callable[[RouteTarget], Any]


@dataclass(slots=True)
class _Next:
    """Read the next chunk of ``iterator``; the chunk (or ``_END``) is sent back."""

    iterator: Any


@dataclass(slots=True)
class _Accept:
    """Ask the caller's ``accept(target, answer)``; the verdict is sent back."""

    target: RouteTarget
    answer: Any


@dataclass(slots=True)
class _Close:
    """End a provider's stream the call no longer reads."""

    iterator: Any


@dataclass(slots=True)
class _Settle:
    """What hooks returned: awaited by the async variants (sync hooks already ran)."""

    values: list[Any]


@dataclass(slots=True)
class _Deliver:
    """Hand ``(route, item)`` to the caller: a chunk, or the one answer."""

    route: str
    item: Any


class _CallerLeft(Exception):
    """Thrown into a stream's steps when the caller closed the stream."""


_Step = _Invoke | _Open | _Next | _Accept | _Close | _Settle | _Deliver
_Steps = Generator[_Step, Any, None]


def _carry_out(step: _Step, invoke: Callable[[Any], Any] | None, accept: Any) -> Any:
    """One step, sync; ``_Settle`` has nothing to wait for."""
    if isinstance(step, _Next):
        return next(step.iterator, _END)
    if isinstance(step, _Invoke):
        return invoke(step.target)  # type: ignore[misc]
    if isinstance(step, _Open):
        return iter(step.opener(step.target))
    if isinstance(step, _Accept):
        return accept(step.target, step.answer)
    if isinstance(step, _Close):
        _close(step.iterator)
    return None


async def _acarry_out(step: _Step, invoke: Callable[[Any], Any] | None, accept: Any) -> Any:
    """One step, async: the provider's calls and every hook are awaited."""
    if isinstance(step, _Next):
        return await _next(step.iterator)
    if isinstance(step, _Invoke):
        return await invoke(step.target)  # type: ignore[misc]
    if isinstance(step, _Open):
        return (await _settle(step.opener(step.target))).__aiter__()
    if isinstance(step, _Accept):
        return await _settle(accept(step.target, step.answer))
    if isinstance(step, _Close):
        await _aclose(step.iterator)
    elif isinstance(step, _Settle):
        await _settle_all(step.values)
    return None


def _drive(
    steps: _Steps, invoke: Callable[[Any], Any] | None, accept: Any
) -> Iterator[tuple[str, Any]]:
    """Carry ``steps`` out, sync, yielding what they deliver."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(reply) if error is None else steps.throw(error)
        except StopIteration:
            return
        reply, error = None, None
        if isinstance(step, _Deliver):
            try:
                yield step.route, step.item
            except GeneratorExit:
                for rest in _after_caller_left(steps):
                    _carry_out(rest, None, None)
                raise
            except BaseException as exc:  # thrown in by the caller: the stream broke
                error = exc
            continue
        try:
            reply = _carry_out(step, invoke, accept)
        except BaseException as exc:
            error = exc


async def _adrive(
    steps: _Steps, invoke: Callable[[Any], Any] | None, accept: Any
) -> AsyncIterator[tuple[str, Any]]:
    """Carry ``steps`` out, async, yielding what they deliver."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(reply) if error is None else steps.throw(error)
        except StopIteration:
            return
        reply, error = None, None
        if isinstance(step, _Deliver):
            try:
                yield step.route, step.item
            except GeneratorExit:
                for rest in _after_caller_left(steps):
                    await _acarry_out(rest, None, None)
                raise
            except BaseException as exc:  # thrown in by the caller: the stream broke
                error = exc
            continue
        try:
            reply = await _acarry_out(step, invoke, accept)
        except BaseException as exc:
            error = exc


def _after_caller_left(steps: _Steps) -> Iterator[_Step]:
    """The steps a stream still takes once its caller closed it (record, close)."""
    try:
        step = steps.throw(_CallerLeft())
        while True:
            yield step
            step = steps.send(None)
    except StopIteration:
        return


class Escalation(Generic[T]):
    """Runs one routed call along its escalation path and records every attempt.

    Each route of the path may hold several equivalent models (``targets``): a failure
    that ``escalate_on`` covers moves the call to the route's next equivalent, then to
    the next route. With ``breakers``, a model whose circuit breaker is open is skipped
    at once (recorded as a :class:`~langroute.errors.CircuitOpenError` attempt that cost
    nothing), and every attempt's outcome is reported to its breaker; when every model
    tried failed, the first one skipped is tried anyway, once (a call never fails on
    open breakers alone).

    Args:
        call: The record the attempts are added to.
        path: Routes to try in order (see :func:`escalation_path`).
        model_for: Route -> the configured model name of that route.
        escalate_on: Errors that move the call to the next route; others propagate.
        on_failure: Called for each failed attempt (events, logging).
        usage_of: Reads the provider's usage from an answer or chunk.
        model_of: Reads the served model name from an answer or the first chunk (the
            dated name a provider reports); None keeps ``model_for(route)``.
        merge_usage: Combines chunk usages of a stream (default :func:`sum_usage`).
        on_attempt: Called with each attempt once its record is final (failed, rejected,
            answered, or a stream ended or broke), e.g. to announce it as an event.
        describe: An attempt -> its reason in the error raised when no answer was
            accepted (default: ``"rejected"`` or ``"error: ..."``).
        propagate: Errors that are signals, not failures (an agent's interrupt): they
            reach the caller at once, unrecorded, even when ``escalate_on`` matches them.
        delivers: Whether a stream chunk delivers output to the caller (text, a tool
            call). A stream escalates until its first such chunk; the chunks before it
            are held back. None: every chunk delivers.
        targets: Every model to try, in order (default: one per route of ``path``);
            see :meth:`~langroute.dispatch.equivalents.RouteEquivalents.attempt_order`.
            ``invoke`` and ``open_stream`` get these :class:`RouteTarget` s (route names
            that also say which equivalent to call).
        breakers: The circuit breakers consulted before each attempt (None: none).
        observe_latency: Called with a model's key (its breaker key) and the latency of
            each answer (a stream: to its first delivered chunk), e.g.
            :meth:`~langroute.dispatch.latency.LatencyPolicy.observe`.
    """

    def __init__(
        self,
        call: RoutedCall,
        path: Sequence[str],
        *,
        model_for: Callable[[str], str | None],
        escalate_on: tuple[type[BaseException], ...] = (Exception,),
        on_failure: FailureHook | None = None,
        usage_of: UsageOf = _no_usage,
        model_of: ModelOf | None = None,
        merge_usage: UsageMerge = sum_usage,
        on_attempt: AttemptHook | None = None,
        describe: Callable[[Attempt], str] | None = None,
        propagate: tuple[type[BaseException], ...] = (),
        delivers: Callable[[Any], bool] | None = None,
        targets: Sequence[RouteTarget] | None = None,
        breakers: BreakerRegistry | None = None,
        observe_latency: Callable[[str, float], Any] | None = None,
    ) -> None:
        if not path:
            raise ValueError("an escalation needs at least one route")
        self.call = call
        self.path = list(path)
        self.targets = list(targets) if targets else [RouteTarget(route) for route in path]
        self.model_for = model_for
        self.escalate_on = escalate_on
        self.on_failure = on_failure
        self.usage_of = usage_of
        self.model_of = model_of
        self.merge_usage = merge_usage
        self.on_attempt = on_attempt
        self.describe = describe
        self.propagate = propagate
        self.delivers = delivers
        self.breakers = breakers
        self.observe_latency = observe_latency
        self._failures: list[tuple[str, BaseException]] = []
        self._skipped: list[RouteTarget] = []
        self._forced: set[int] = set()
        self.breaker_changes: list[BreakerChange] = []
        """The breaker state changes this call caused, in order (for events)."""

    # ------------------------------------------------------------------ targets
    def _model(self, target: RouteTarget) -> str | None:
        """The configured model of an attempt (the equivalent's, else the route's)."""
        return target.model or self.model_for(target.route)

    def _key(self, target: RouteTarget) -> str:
        """The circuit-breaker key of an attempt's model."""
        if target.spec is not None:
            return target.spec.key
        return self._model(target) or target.route

    def _next_route(self, position: int) -> int:
        """The position of the first target after ``position`` on another route."""
        route = self.targets[position].route
        following = position + 1
        while following < len(self.targets) and self.targets[following].route == route:
            following += 1
        return following

    def _last_resort(self) -> bool:
        """Once every target failed or was skipped: try the first skipped one anyway.

        A call never fails on open breakers alone: when the models that were tried all
        failed, the first model skipped for its open breaker gets one request (it may
        well have recovered; a breaker only says it failed recently).
        """
        if not self._skipped or self._forced:
            return False
        self._forced.add(len(self.targets))
        self.targets.append(self._skipped[0])
        return True

    def _is_last(self, position: int) -> bool:
        """Whether no stronger route is left after ``position`` (an answer must stand)."""
        return self._next_route(position) >= len(self.targets)

    def _note(self, change: BreakerChange | None) -> None:
        if change is not None:
            self.breaker_changes.append(change)

    def _success(self, target: RouteTarget, started: float) -> None:
        if self.observe_latency is not None:
            self.observe_latency(self._key(target), (time.perf_counter() - started) * 1000)
        if self.breakers is not None:
            self._note(self.breakers.record_success(self._key(target)))

    def _breaker_failure(self, target: RouteTarget) -> None:
        if self.breakers is not None:
            self._note(self.breakers.record_failure(self._key(target)))

    def _release(self, target: RouteTarget) -> None:
        if self.breakers is not None:
            self.breakers.release(self._key(target))

    # ------------------------------------------------------------------ records
    def _served_by(self, target: RouteTarget, answer: Any) -> str | None:
        if self.model_of is not None and answer is not None:
            served = self.model_of(target, answer)
            if served:
                return served
        return self._model(target)

    def _gate(self, position: int) -> tuple[bool, list[Any]]:
        """Skip the target at ``position`` when its breaker is open (a free, failed attempt)."""
        target = self.targets[position]
        if self.breakers is None or position in self._forced:
            return False, []
        allowed, change = self.breakers.admit(self._key(target))
        self._note(change)
        if allowed:
            return False, []
        self._skipped.append(target)
        error = CircuitOpenError(f"circuit breaker of {self._key(target)!r} is open; skipped")
        return True, self._failed(position, error, None)[1]

    def _failed(
        self, position: int, error: BaseException, started: float | None
    ) -> tuple[bool, Any]:
        """Record a failed attempt (``started`` None: skipped by its breaker, no time spent).

        Returns whether the call moves on to the next target, and what ``on_failure``
        returned (an awaitable the async variants wait for).
        """
        target = self.targets[position]
        skipped = started is None
        attempt = Attempt(
            route=target.route,
            model=self._model(target),
            error=error_text(error),
            latency_ms=0.0 if started is None else (time.perf_counter() - started) * 1000,
        )
        self._failures.append((target.route, error))
        hooked = [self._record(attempt)]
        escalate = skipped or isinstance(error, self.escalate_on)
        if not skipped:
            if escalate:
                self._breaker_failure(target)
            else:
                self._release(target)
        if self.on_failure is not None:
            following = self.targets[position + 1] if position + 1 < len(self.targets) else None
            hooked.append(self.on_failure(attempt, following if escalate else None, error))
        return escalate, hooked

    def _record(self, attempt: Attempt, *, completes: bool = False) -> Any:
        """Add (or complete) an attempt's final record and announce it to ``on_attempt``."""
        if completes:
            self.call.complete_attempt(attempt)
        else:
            self.call.add_attempt(attempt)
        return self.on_attempt(attempt) if self.on_attempt is not None else None

    def _answered(
        self,
        target: RouteTarget,
        model: str | None,
        usage: TokenUsage | None,
        started: float,
        error: BaseException | None = None,
        rejected: bool = False,
    ) -> Attempt:
        return Attempt(
            route=target.route,
            model=model,
            error=error_text(error) if error is not None else None,
            usage=usage,
            latency_ms=(time.perf_counter() - started) * 1000,
            rejected=rejected,
            partial=error is not None,
        )

    def all_failed(self) -> AllRoutesFailedError:
        """The error raised when every route failed (the last provider error as its cause)."""
        if any(attempt.rejected for attempt in self.call.attempts):
            describe = self.describe or _describe
            tried = "; ".join(f"{a.route}: {describe(a)}" for a in self.call.attempts)
            message = f"no route gave an accepted answer ({tried})"
        else:
            tried = ", ".join(f"{route} ({error_text(err)})" for route, err in self._failures)
            message = f"every route failed: {tried}"
            if any(attempt.partial for attempt in self.call.attempts):
                message = (
                    "the stream broke after part of the answer was sent, and no model "
                    f"could continue it; {message}"
                )
        error = AllRoutesFailedError(message, self._failures, self.call)
        if self._failures:
            error.__cause__ = self._failures[-1][1]
        return error

    # ------------------------------------------------------------------ one answer
    def run(self, invoke: Callable[[str], T], *, accept: Accept[T] | None = None) -> tuple[str, T]:
        """``invoke(target)`` along the targets until one answers; returns ``(route, answer)``.

        Args:
            invoke: Calls the provider of one target (a route name that may also say which
                equivalent model to call: :class:`RouteTarget`).
            accept: ``(route, answer) -> bool``; a rejected answer is recorded (as a paid,
                rejected attempt) and the next route runs (not the route's next
                equivalent: the tier was not good enough). The last route's answer is
                returned whatever ``accept`` says: nothing stronger is left.

        Raises:
            AllRoutesFailedError: every target raised an error listed in ``escalate_on``
                or was skipped by its open breaker.
        """
        (answered,) = _drive(self._answer_steps(accept is not None), invoke, accept)
        return answered

    async def arun(
        self,
        invoke: Callable[[str], Awaitable[T]],
        *,
        accept: Accept[T] | AsyncAccept[T] | None = None,
    ) -> tuple[str, T]:
        """Async :meth:`run`; ``accept`` and ``on_failure`` may be coroutines."""
        steps = self._answer_steps(accept is not None)
        (answered,) = [item async for item in _adrive(steps, invoke, accept)]
        return answered

    def _answer_steps(self, accepting: bool) -> _Steps:
        """:meth:`run`'s logic, for both variants: steps that :func:`_drive` carries out."""
        position = 0
        while position < len(self.targets) or self._last_resort():
            target = self.targets[position]
            skipped, hooked = self._gate(position)
            if skipped:
                yield _Settle(hooked)
                position += 1
                continue
            started = time.perf_counter()
            try:
                answer = yield _Invoke(target)
            except Exception as error:
                if isinstance(error, self.propagate):
                    self._release(target)
                    raise
                escalate, hooked = self._failed(position, error, started)
                yield _Settle(hooked)
                if escalate:
                    position += 1
                    continue
                raise
            self._success(target, started)
            attempt = self._answered(
                target, self._served_by(target, answer), self.usage_of(answer), started
            )
            if accepting:
                accepted = yield _Accept(target, answer)
                if not accepted and not self._is_last(position):
                    yield _Settle([self._record(attempt.model_copy(update={"rejected": True}))])
                    position = self._next_route(position)
                    continue
            yield _Settle([self._record(attempt)])
            yield _Deliver(target.route, answer)
            return
        raise self.all_failed()

    # ------------------------------------------------------------------ streams
    def _delivers(self, chunk: Any) -> bool:
        return self.delivers is None or bool(self.delivers(chunk))

    def _observe(
        self, target: RouteTarget, chunk: Any, model: str | None, usage: TokenUsage | None
    ) -> tuple[str | None, TokenUsage | None]:
        """The served model (the first a chunk names) and the usage so far, with ``chunk``."""
        if model is None and self.model_of is not None:
            model = self.model_of(target, chunk) or None
        return model, self.merge_usage(usage, self.usage_of(chunk))

    def _seen(self, target: RouteTarget, held: list[Any]) -> tuple[str | None, TokenUsage | None]:
        model: str | None = None
        usage: TokenUsage | None = None
        for chunk in held:
            model, usage = self._observe(target, chunk, model, usage)
        return model, usage

    def _empty(self, target: RouteTarget) -> EmptyStreamError:
        return EmptyStreamError(
            f"the stream of route {target.route!r} ({self._model(target)}) ended without a chunk"
        )

    def _reject(self, target: RouteTarget, held: list[Any], started: float) -> Any:
        model, usage = self._seen(target, held)
        served = model or self._model(target)
        return self._record(self._answered(target, served, usage, started, rejected=True))

    def _broke(self, position: int, error: BaseException, resume: Resume | None) -> bool:
        """A stream broke after it delivered output: whether another model may continue it.

        The break counts against the model's breaker when ``escalate_on`` covers it.
        """
        target = self.targets[position]
        covered = isinstance(error, self.escalate_on) and not isinstance(error, self.propagate)
        if not covered or not isinstance(error, Exception):
            self._release(target)
            return False
        self._failures.append((target.route, error))
        self._breaker_failure(target)
        continues = target.spec is None or target.spec.continue_streams
        return resume is not None and continues and position + 1 < len(self.targets)

    def stream(
        self,
        open_stream: Callable[[str], Iterable[T]],
        *,
        accept: Accept[T] | None = None,
        resume: Resume | None = None,
    ) -> Iterator[tuple[str, T]]:
        """Yield ``(route, chunk)`` from the first target whose stream delivers output.

        Chunks are held back until one delivers output (``delivers``; by default every
        chunk does). A target whose stream raises before that, or ends without a single
        chunk (:class:`~langroute.errors.EmptyStreamError`), is a failed attempt and the
        next target is tried. ``accept(route, chunk)``, when given, may reject a route on
        that first delivering chunk (a cascade buffers a whole answer into one chunk);
        the stream is closed, recorded as rejected and the next route runs. Once output
        is delivered, the target is recorded as the answering attempt (``call.route`` is
        set); it is completed with the stream's usage, the model the chunks named, and
        its latency when the stream ends, breaks (the error is kept on the attempt,
        marked ``partial``) or is closed by the caller (which ends the provider's stream
        at once: its connection goes back to the pool). A stream whose chunks all
        deliver nothing answers with them.

        A stream that breaks after delivering output raises, unless ``resume`` is given
        and the break is an ``escalate_on`` error: then ``resume(chunks delivered so
        far)`` gives the opener of a continuation (None: these chunks cannot be
        continued, the break is raised), which runs on the next models (equivalent or
        stronger, unless the broken model's
        :class:`~langroute.dispatch.equivalents.EquivalentModel` opted out with
        ``continue_streams=False``), relayed in the same stream as new attempts. When no
        model can continue, :class:`~langroute.errors.AllRoutesFailedError`
        says that the stream broke after output was sent.
        """
        return _drive(self._stream_steps(open_stream, accept is not None, resume), None, accept)

    def astream(
        self,
        open_stream: Callable[[str], AsyncIterable[T] | Awaitable[AsyncIterable[T]]],
        *,
        accept: Accept[T] | AsyncAccept[T] | None = None,
        resume: Resume | None = None,
    ) -> AsyncIterator[tuple[str, T]]:
        """Async :meth:`stream`; ``open_stream`` and ``resume`` may return or await the stream."""
        return _adrive(self._stream_steps(open_stream, accept is not None, resume), None, accept)

    def _stream_steps(self, open_stream: Any, accepting: bool, resume: Resume | None) -> _Steps:
        """:meth:`stream`'s logic, for both variants: steps that :func:`_drive` carries out."""
        opener = open_stream
        delivered: list[Any] = []
        position = 0
        while position < len(self.targets) or self._last_resort():
            target = self.targets[position]
            skipped, hooked = self._gate(position)
            if skipped:
                yield _Settle(hooked)
                position += 1
                continue
            started = time.perf_counter()
            held: list[Any] = []
            try:
                iterator = yield _Open(target, opener)
                while (chunk := (yield _Next(iterator))) is not _END:
                    held.append(chunk)
                    if self._delivers(chunk):
                        break
                if not held:
                    raise self._empty(target)
            except Exception as error:
                if isinstance(error, self.propagate):
                    self._release(target)
                    raise
                escalate, hooked = self._failed(position, error, started)
                yield _Settle(hooked)
                if escalate:
                    position += 1
                    continue
                raise
            self._success(target, started)
            if accepting and opener is open_stream:
                accepted = yield _Accept(target, held[-1])
                if not accepted and not self._is_last(position):
                    yield _Close(iterator)
                    yield _Settle([self._reject(target, held, started)])
                    position = self._next_route(position)
                    continue
            model, usage = self._seen(target, held)
            self.call.add_attempt(
                self._answered(target, model or self._model(target), None, started)
            )
            broke: BaseException | None = None
            try:
                for chunk in held:
                    delivered.append(chunk)
                    yield _Deliver(target.route, chunk)
                while (chunk := (yield _Next(iterator))) is not _END:
                    model, usage = self._observe(target, chunk, model, usage)
                    delivered.append(chunk)
                    yield _Deliver(target.route, chunk)
            except _CallerLeft:
                # the caller left: the attempt ends here, and the provider's stream is
                # ended now (its connection goes back to the pool), not when the garbage
                # collector finds it
                served = model or self._model(target)
                final = self._answered(target, served, usage, started)
                yield _Settle([self._record(final, completes=True)])
                yield _Close(iterator)
                return
            except BaseException as exc:
                broke = exc
            final = self._answered(target, model or self._model(target), usage, started, broke)
            yield _Settle([self._record(final, completes=True)])
            if broke is None:
                return
            if not self._broke(position, broke, resume):
                raise broke
            continuation = resume(list(delivered)) if resume is not None else None
            if continuation is None:
                raise broke
            opener = continuation
            position += 1
        raise self.all_failed()
