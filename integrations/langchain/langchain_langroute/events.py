"""The custom events langroute dispatches on LangChain runs, and how they are sent.

A routing model reports its decision (:data:`ROUTE_EVENT`) and a call that ended in an
error (:data:`CALL_FAILED_EVENT`) as custom events on its own model run; a cascade
reports each attempt on its chain run. They appear in ``astream_events(version="v2")``
as ``on_custom_event`` and reach every callback handler of the run, such as
:class:`~langchain_langroute.callbacks.CostCallbackHandler`.
"""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForChainRun,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForChainRun,
    CallbackManagerForLLMRun,
)

__all__ = [
    "BREAKER_EVENT",
    "CALL_CONTINUED_EVENT",
    "CALL_FAILED_EVENT",
    "ROUTE_EVENT",
    "EventTarget",
    "adispatch",
    "dispatch",
    "run_target",
]

ROUTE_EVENT = "langroute_route"
"""Name of the custom event dispatched with each routing decision."""

CALL_FAILED_EVENT = "langroute_call_failed"
"""Name of the custom event dispatched when a routed call ends in an error.

Its data is ``{"call": RoutedCall.model_dump(mode="json")}``: every attempt, each with
its own route, model and error (a stream that broke after escalating included), so a
cost handler can record each paid attempt.
"""

CALL_CONTINUED_EVENT = "langroute_call_continued"
"""Name of the custom event dispatched when a stream that broke after text was continued
on another model and ended. Its data is ``{"call": RoutedCall.model_dump(mode="json")}``:
the broken attempt (``partial``) and the continuation, each with its own model and usage,
so a cost handler records one row per attempt."""

BREAKER_EVENT = "langroute_breaker"
"""Name of the custom event dispatched when a call moved a model's circuit breaker.

Its data is a :class:`langroute.dispatch.breakers.BreakerChange` as JSON: ``key`` (the
model), ``old`` and ``new`` state (``"closed"``, ``"open"``, ``"half_open"``) and the
breaker's ``status``.
"""

RunManager = (
    CallbackManagerForLLMRun
    | AsyncCallbackManagerForLLMRun
    | CallbackManagerForChainRun
    | AsyncCallbackManagerForChainRun
)
EventTarget = tuple[CallbackManager | AsyncCallbackManager, uuid.UUID]
"""The handlers to tell, and the run the event belongs to."""


def run_target(run_manager: RunManager, *, asynchronous: bool = False) -> EventTarget:
    """The handlers of a run (and its id), to dispatch custom events on that run.

    A run manager has no ``on_custom_event`` of its own; a callback manager built from
    its handlers with ``run_id`` set to the run's does (see the repository guide).
    """
    manager_type = AsyncCallbackManager if asynchronous else CallbackManager
    manager = manager_type(
        handlers=run_manager.handlers,
        inheritable_handlers=run_manager.inheritable_handlers,
        parent_run_id=run_manager.parent_run_id,
        tags=run_manager.tags,
        inheritable_tags=run_manager.inheritable_tags,
        metadata=run_manager.metadata,
        inheritable_metadata=run_manager.inheritable_metadata,
    )
    return manager, run_manager.run_id


def dispatch(name: str, data: dict[str, Any], target: EventTarget | None) -> None:
    """Dispatch a custom event to a (sync) target; nothing when there is none."""
    if target is not None:
        manager, run_id = target
        manager.on_custom_event(name, data, run_id=run_id)  # type: ignore[unused-coroutine]


async def adispatch(name: str, data: dict[str, Any], target: EventTarget | None) -> None:
    """Async :func:`dispatch` (for a target built with ``asynchronous=True``)."""
    if target is not None:
        manager, run_id = target
        await manager.on_custom_event(name, data, run_id=run_id)  # type: ignore[misc]
