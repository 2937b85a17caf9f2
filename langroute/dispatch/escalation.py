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
    Iterable,
    Iterator,
    Sequence,
)
from typing import Any, Generic, TypeVar

from langroute.dispatch.routed_call import Attempt, RoutedCall, TokenUsage, error_text
from langroute.errors import AllRoutesFailedError, EmptyStreamError

__all__ = ["Accept", "AsyncAccept", "Escalation", "escalation_path", "max_usage", "sum_usage"]

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


class Escalation(Generic[T]):
    """Runs one routed call along its escalation path and records every attempt.

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
    ) -> None:
        if not path:
            raise ValueError("an escalation needs at least one route")
        self.call = call
        self.path = list(path)
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
        self._failures: list[tuple[str, BaseException]] = []

    # ------------------------------------------------------------------ records
    def _served_by(self, route: str, answer: Any) -> str | None:
        if self.model_of is not None and answer is not None:
            served = self.model_of(route, answer)
            if served:
                return served
        return self.model_for(route)

    def _failed(self, position: int, error: BaseException, started: float) -> tuple[bool, Any]:
        """Record a failed attempt.

        Returns whether the call moves on to the next route, and what ``on_failure``
        returned (an awaitable the async variants wait for).
        """
        route = self.path[position]
        attempt = Attempt(
            route=route,
            model=self.model_for(route),
            error=error_text(error),
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        self._failures.append((route, error))
        hooked = [self._record(attempt)]
        escalate = isinstance(error, self.escalate_on)
        if self.on_failure is not None:
            following = self.path[position + 1] if position + 1 < len(self.path) else None
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
        route: str,
        model: str | None,
        usage: TokenUsage | None,
        started: float,
        error: BaseException | None = None,
        rejected: bool = False,
    ) -> Attempt:
        return Attempt(
            route=route,
            model=model,
            error=error_text(error) if error is not None else None,
            usage=usage,
            latency_ms=(time.perf_counter() - started) * 1000,
            rejected=rejected,
            partial=error is not None,
        )

    def _is_last(self, position: int) -> bool:
        return position == len(self.path) - 1

    def all_failed(self) -> AllRoutesFailedError:
        """The error raised when every route failed (the last provider error as its cause)."""
        if any(attempt.rejected for attempt in self.call.attempts):
            describe = self.describe or _describe
            tried = "; ".join(f"{a.route}: {describe(a)}" for a in self.call.attempts)
            message = f"no route gave an accepted answer ({tried})"
        else:
            tried = ", ".join(f"{route} ({error_text(err)})" for route, err in self._failures)
            message = f"every route failed: {tried}"
        error = AllRoutesFailedError(message, self._failures, self.call)
        if self._failures:
            error.__cause__ = self._failures[-1][1]
        return error

    # ------------------------------------------------------------------ one answer
    def run(self, invoke: Callable[[str], T], *, accept: Accept[T] | None = None) -> tuple[str, T]:
        """``invoke(route)`` along the path until one answers; returns ``(route, answer)``.

        Args:
            invoke: Calls the provider of one route.
            accept: ``(route, answer) -> bool``; a rejected answer is recorded (as a paid,
                rejected attempt) and the next route runs. The last route's answer is
                returned whatever ``accept`` says: nothing stronger is left.

        Raises:
            AllRoutesFailedError: every route raised an error listed in ``escalate_on``.
        """
        for position, route in enumerate(self.path):
            started = time.perf_counter()
            try:
                answer = invoke(route)
            except Exception as error:
                if isinstance(error, self.propagate):
                    raise
                if self._failed(position, error, started)[0]:
                    continue
                raise
            attempt = self._answered(
                route, self._served_by(route, answer), self.usage_of(answer), started
            )
            if accept is not None and not accept(route, answer) and not self._is_last(position):
                self._record(attempt.model_copy(update={"rejected": True}))
                continue
            self._record(attempt)
            return route, answer
        raise self.all_failed()

    async def arun(
        self,
        invoke: Callable[[str], Awaitable[T]],
        *,
        accept: Accept[T] | AsyncAccept[T] | None = None,
    ) -> tuple[str, T]:
        """Async :meth:`run`; ``accept`` and ``on_failure`` may be coroutines."""
        for position, route in enumerate(self.path):
            started = time.perf_counter()
            try:
                answer = await invoke(route)
            except Exception as error:
                if isinstance(error, self.propagate):
                    raise
                escalate, hooked = self._failed(position, error, started)
                await _settle_all(hooked)
                if escalate:
                    continue
                raise
            attempt = self._answered(
                route, self._served_by(route, answer), self.usage_of(answer), started
            )
            if (
                accept is not None
                and not await _settle(accept(route, answer))
                and not self._is_last(position)
            ):
                await _settle(self._record(attempt.model_copy(update={"rejected": True})))
                continue
            await _settle(self._record(attempt))
            return route, answer
        raise self.all_failed()

    # ------------------------------------------------------------------ streams
    def _delivers(self, chunk: Any) -> bool:
        return self.delivers is None or bool(self.delivers(chunk))

    def _observe(
        self, route: str, chunk: Any, model: str | None, usage: TokenUsage | None
    ) -> tuple[str | None, TokenUsage | None]:
        """The served model (the first a chunk names) and the usage so far, with ``chunk``."""
        if model is None and self.model_of is not None:
            model = self.model_of(route, chunk) or None
        return model, self.merge_usage(usage, self.usage_of(chunk))

    def _seen(self, route: str, held: list[Any]) -> tuple[str | None, TokenUsage | None]:
        model: str | None = None
        usage: TokenUsage | None = None
        for chunk in held:
            model, usage = self._observe(route, chunk, model, usage)
        return model, usage

    def _empty(self, route: str) -> EmptyStreamError:
        return EmptyStreamError(
            f"the stream of route {route!r} ({self.model_for(route)}) ended without a chunk"
        )

    def stream(
        self, open_stream: Callable[[str], Iterable[T]], *, accept: Accept[T] | None = None
    ) -> Iterator[tuple[str, T]]:
        """Yield ``(route, chunk)`` from the first route whose stream delivers output.

        Chunks are held back until one delivers output (``delivers``; by default every
        chunk does). A route whose stream raises before that, or ends without a single
        chunk (:class:`~langroute.errors.EmptyStreamError`), is a failed attempt and the
        next route is tried. ``accept(route, chunk)``, when given, may reject a route on
        that first delivering chunk (a cascade buffers a whole answer into one chunk);
        the stream is closed, recorded as rejected and the next route runs. Once output
        is delivered, the route is recorded as the answering attempt (``call.route`` is
        set); it is completed with the stream's usage, the model the chunks named, and
        its latency when the stream ends, breaks (the error is kept on the attempt,
        marked ``partial``, and raised) or is closed by the caller. A stream whose chunks
        all deliver nothing answers with them.
        """
        for position, route in enumerate(self.path):
            started = time.perf_counter()
            held: list[T] = []
            try:
                iterator = iter(open_stream(route))
                for chunk in iterator:
                    held.append(chunk)
                    if self._delivers(chunk):
                        break
                if not held:
                    raise self._empty(route)
            except Exception as error:
                if isinstance(error, self.propagate):
                    raise
                if self._failed(position, error, started)[0]:
                    continue
                raise
            if accept is not None:
                accepted = accept(route, held[-1])
                if not accepted and not self._is_last(position):
                    _close(iterator)
                    self._reject(route, held, started)
                    continue
            yield from self._relay(route, held, iterator, started)
            return
        raise self.all_failed()

    def _reject(self, route: str, held: list[Any], started: float) -> Any:
        model, usage = self._seen(route, held)
        served = model or self.model_for(route)
        return self._record(self._answered(route, served, usage, started, rejected=True))

    def _relay(
        self, route: str, held: list[T], iterator: Iterator[T], started: float
    ) -> Iterator[tuple[str, T]]:
        model, usage = self._seen(route, held)
        self.call.add_attempt(self._answered(route, model or self.model_for(route), None, started))
        error: BaseException | None = None
        try:
            for chunk in held:
                yield route, chunk
            for chunk in iterator:
                model, usage = self._observe(route, chunk, model, usage)
                yield route, chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            final = self._answered(route, model or self.model_for(route), usage, started, error)
            self._record(final, completes=True)

    async def astream(
        self,
        open_stream: Callable[[str], AsyncIterable[T] | Awaitable[AsyncIterable[T]]],
        *,
        accept: Accept[T] | AsyncAccept[T] | None = None,
    ) -> AsyncIterator[tuple[str, T]]:
        """Async :meth:`stream`; ``open_stream`` may return the stream or await it."""
        for position, route in enumerate(self.path):
            started = time.perf_counter()
            held: list[T] = []
            try:
                opened = open_stream(route)
                if isinstance(opened, Awaitable):
                    opened = await opened
                iterator = opened.__aiter__()  # type: ignore[union-attr]
                while (chunk := await _next(iterator)) is not _END:
                    held.append(chunk)
                    if self._delivers(chunk):
                        break
                if not held:
                    raise self._empty(route)
            except Exception as error:
                if isinstance(error, self.propagate):
                    raise
                escalate, hooked = self._failed(position, error, started)
                await _settle_all(hooked)
                if escalate:
                    continue
                raise
            if accept is not None:
                accepted = await _settle(accept(route, held[-1]))
                if not accepted and not self._is_last(position):
                    await _aclose(iterator)
                    await _settle(self._reject(route, held, started))
                    continue
            model, usage = self._seen(route, held)
            self.call.add_attempt(
                self._answered(route, model or self.model_for(route), None, started)
            )
            error_seen: BaseException | None = None
            try:
                for chunk in held:
                    yield route, chunk
                while (chunk := await _next(iterator)) is not _END:
                    model, usage = self._observe(route, chunk, model, usage)
                    yield route, chunk
            except GeneratorExit:
                # the caller left: end the provider's stream now (its connection goes
                # back to the pool) rather than when the garbage collector finds it
                await _aclose(iterator)
                raise
            except BaseException as exc:
                error_seen = exc
                raise
            finally:
                served = model or self.model_for(route)
                final = self._answered(route, served, usage, started, error_seen)
                await _settle(self._record(final, completes=True))
            return
        raise self.all_failed()
