"""The scorer contract: :class:`ScoreResult`, the :class:`Scorer` protocol, :class:`BaseScorer`.

:func:`as_scorer` adapts plain callables; the helpers build results the same way in
every scorer of this package.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class ScoreResult(BaseModel):
    """The verdict of a scorer on one answer.

    Attributes:
        score: Quality estimate in ``[0, 1]``; the cascade accepts when it reaches its
            threshold.
        passed: The scorer's own verdict: ``True`` / ``False`` for validators, ``None``
            when the scorer only grades (or could not judge, see ``reason``).
        reason: Why the answer was accepted or rejected, for logs and the ledger.

    Example:
        >>> ScoreResult(score=0.0, passed=False, reason="empty answer").passed
        False
    """

    model_config = ConfigDict(frozen=True)

    score: float = Field(ge=0.0, le=1.0)
    passed: bool | None = None
    reason: str = ""


@runtime_checkable
class Scorer(Protocol):
    """What a cascade calls to score an answer: a sync call and an async ``ascore``.

    Subclass :class:`BaseScorer` to get ``ascore`` for free, or adapt a plain function
    with :func:`as_scorer`.
    """

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Score ``answer`` to ``query``."""
        ...

    async def ascore(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Async form of ``__call__``."""
        ...


class BaseScorer:
    """Base class of the scorers here: implement ``__call__``; ``ascore`` calls it.

    Override ``ascore`` when the scorer does I/O (see :class:`JudgeScorer`).

    Example:
        >>> class Short(BaseScorer):
        ...     name = "short"
        ...     def __call__(self, query, answer, *, logprobs=None, metadata=None):
        ...         ok = len(answer) < 100
        ...         return ScoreResult(score=float(ok), passed=ok, reason="length")
        >>> Short()("q", "a").passed
        True
    """

    name: str = "scorer"

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Score ``answer`` to ``query``."""
        raise NotImplementedError

    async def ascore(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Async form of ``__call__`` (runs it directly: it must not block for long)."""
        return self(query, answer, logprobs=logprobs, metadata=metadata)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def pass_result(name: str, reason: str) -> ScoreResult:
    """A passing result (score 1.0) whose reason names the scorer."""
    return ScoreResult(score=1.0, passed=True, reason=f"{name}: {reason}")


def fail_result(name: str, reason: str) -> ScoreResult:
    """A failing result (score 0.0) whose reason names the scorer."""
    return ScoreResult(score=0.0, passed=False, reason=f"{name}: {reason}")


def graded_verdict(score: float, threshold: float | None) -> bool | None:
    """The verdict of a graded score: None without a threshold of its own."""
    return None if threshold is None else score >= threshold


def run_sync(awaitable: Awaitable[Any], what: str) -> Any:
    """Await from sync code with ``asyncio.run``; refuses inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(awaitable))
    if isinstance(awaitable, Coroutine):
        awaitable.close()  # never awaited: close it quietly
    raise RuntimeError(f"{what} is async: inside an event loop, await .ascore(...) instead")


# --------------------------------------------------------------------------- adapters


def to_result(value: Any, name: str) -> ScoreResult:
    """A callable's return value (float, bool or ScoreResult) as a :class:`ScoreResult`."""
    if isinstance(value, ScoreResult):
        return value
    if isinstance(value, bool):
        return ScoreResult(
            score=float(value), passed=value, reason=f"{name}: {'passed' if value else 'failed'}"
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        score = float(value)
        if not 0.0 <= score <= 1.0 or math.isnan(score):
            raise ValueError(f"scorer {name} returned {value!r}; scores must be in [0, 1]")
        return ScoreResult(score=score, passed=None, reason=f"{name}: score {score:.3g}")
    raise TypeError(
        f"scorer {name} returned {type(value).__name__}; expected float, bool or ScoreResult"
    )


class FunctionScorer(BaseScorer):
    """Adapts a callable ``(query, answer) -> float | bool | ScoreResult`` (sync or async).

    The callable also receives ``logprobs=`` and ``metadata=`` when its signature accepts
    them (by name or ``**kwargs``). A float must lie in ``[0, 1]``; ``True`` / ``False``
    become 1.0 / 0.0 with ``passed`` set.

    Example:
        >>> scorer = FunctionScorer(lambda q, a: "paris" in a.lower())
        >>> scorer("Capital of France?", "Paris").score
        1.0
    """

    def __init__(self, func: Callable[..., Any], name: str | None = None) -> None:
        self.func = func
        self.name = name or getattr(func, "__name__", None) or type(func).__name__
        self._extras = self._accepted_extras(func)

    def __repr__(self) -> str:
        return f"FunctionScorer({self.name!r})"

    @staticmethod
    def _accepted_extras(func: Callable[..., Any]) -> frozenset[str]:
        try:
            params = inspect.signature(func).parameters.values()
        except (TypeError, ValueError):
            return frozenset()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return frozenset({"logprobs", "metadata"})
        return frozenset(p.name for p in params if p.name in ("logprobs", "metadata"))

    def _kwargs(
        self, logprobs: Sequence[float] | None, metadata: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        extras = {"logprobs": logprobs, "metadata": metadata}
        return {key: value for key, value in extras.items() if key in self._extras}

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Call the function and convert its result."""
        value = self.func(query, answer, **self._kwargs(logprobs, metadata))
        if inspect.isawaitable(value):
            value = run_sync(value, f"scorer {self.name}")
        return to_result(value, self.name)

    async def ascore(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Await the function when it is async; call it directly otherwise."""
        value = self.func(query, answer, **self._kwargs(logprobs, metadata))
        if inspect.isawaitable(value):
            value = await value
        return to_result(value, self.name)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def as_scorer(obj: Scorer | Callable[..., Any]) -> Scorer:
    """Return ``obj`` if it is already a scorer, else wrap the callable in a scorer.

    Args:
        obj: A :class:`Scorer` (anything with ``__call__`` and ``ascore``) or a callable
            ``(query, answer) -> float | bool | ScoreResult``, sync or async.

    Raises:
        TypeError: ``obj`` is not callable.

    Example:
        >>> as_scorer(lambda q, a: 0.25)("q", "a").score
        0.25
    """
    if isinstance(obj, BaseScorer):
        return obj
    if callable(obj) and callable(getattr(obj, "ascore", None)):
        return obj  # type: ignore[return-value]
    if not callable(obj):
        raise TypeError(f"cannot use {type(obj).__name__} as a scorer: it is not callable")
    return FunctionScorer(obj)
