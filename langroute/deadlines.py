"""Waiting at most so long for a model: one deadline for async and sync calls.

A judge, the LLM router stage and the labelling loop all call models that may never
answer. Each waits through :func:`within` (an awaitable) or :func:`call_within` (a
sync function), which raise the builtin :class:`TimeoutError` with one wording.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

__all__ = ["call_within", "timed_out", "within"]

T = TypeVar("T")


def timed_out(timeout: float) -> TimeoutError:
    """The error of a call that gave no answer within ``timeout`` seconds."""
    return TimeoutError(f"no answer within {timeout:g} s")


async def within(awaitable: Awaitable[T], timeout: float | None) -> T:
    """Await ``awaitable`` for at most ``timeout`` seconds (``None``: no limit).

    Raises:
        TimeoutError: No result in time (the awaitable is cancelled).

    Example:
        >>> async def slow():
        ...     await asyncio.sleep(10)
        >>> asyncio.run(within(slow(), 0.01))
        Traceback (most recent call last):
        TimeoutError: no answer within 0.01 s
    """
    if timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError as exc:  # also the builtin TimeoutError on 3.11+
        raise timed_out(timeout) from exc


def call_within(function: Callable[..., T], *args: Any, timeout: float | None) -> T:
    """Call a sync ``function`` and wait at most ``timeout`` seconds for it.

    With a limit the call runs on a daemon thread of its own, with the caller's context
    variables (tracing callbacks go along); one that never returns is left behind, not
    waited for, and cannot block later calls.

    Raises:
        TimeoutError: No result in time.

    Example:
        >>> call_within(len, "abc", timeout=1.0)
        3
    """
    if timeout is None:
        return function(*args)
    future: Future[T] = Future()
    context = contextvars.copy_context()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(context.run(function, *args))
        except BaseException as exc:  # handed to the caller
            future.set_exception(exc)

    threading.Thread(target=run, name="langroute-deadline", daemon=True).start()
    try:
        return future.result(timeout=timeout)
    except FutureTimeout as exc:
        raise timed_out(timeout) from exc
