"""LangChain integration for langroute.

- :class:`RoutingChatModel`: a chat model that routes each call to the cheapest route.
- :class:`CascadeRunnable`: cheapest model first, escalate while answers score too low.
- :class:`CostCallbackHandler` and :func:`track_costs`: cost per route in a ledger.
- :class:`RouterMiddleware`: the same routing for LangChain v1 agents (needs ``langchain``).
- :class:`RouteMetadata` and :data:`ROUTE_KEY`: the routing record on every routed answer.

Example:
    .. code-block:: python

        from langroute import ExemplarRouter
        from langchain_langroute import RoutingChatModel, track_costs

        llm = RoutingChatModel(
            router=ExemplarRouter.default(), models={"small": cheap, "large": strong}
        )
        with track_costs() as ledger:
            llm.invoke("What is the capital of France?")
        print(ledger.summary())

Read the routing record of an answer with
``RouteMetadata.from_metadata(msg.response_metadata)`` (``msg.response_metadata[ROUTE_KEY]``
as a dict).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from langroute.calls import RouteMetadata

from langchain_langroute.callbacks import CostCallbackHandler, track_costs
from langchain_langroute.cascade import (
    CASCADE_EVENT,
    CASCADE_METADATA_KEY,
    CascadeAttempt,
    CascadeResult,
    CascadeRunnable,
    extract_logprobs,
    get_cascade_result,
    llm_judge,
)
from langchain_langroute.chat_models import ROUTE_EVENT, ROUTE_KEY, RoutingChatModel
from langchain_langroute.query import last_human_message, message_text, recent_human_messages

if TYPE_CHECKING:
    from langchain_langroute.middleware import RouterMiddleware

__version__ = "0.1.0"

__all__ = [
    "CASCADE_EVENT",
    "CASCADE_METADATA_KEY",
    "ROUTE_EVENT",
    "ROUTE_KEY",
    "CascadeAttempt",
    "CascadeResult",
    "CascadeRunnable",
    "CostCallbackHandler",
    "RouteMetadata",
    "RouterMiddleware",
    "RoutingChatModel",
    "__version__",
    "extract_logprobs",
    "get_cascade_result",
    "last_human_message",
    "llm_judge",
    "message_text",
    "recent_human_messages",
    "track_costs",
]

_LAZY = {"RouterMiddleware": "langchain_langroute.middleware"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'langchain_langroute' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
