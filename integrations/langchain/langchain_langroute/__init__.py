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

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version
from typing import TYPE_CHECKING

from langroute.dispatch.routed_call import RouteMetadata
from langroute.exports import lazy_exports

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

try:  # the installed distribution's version: one source, its pyproject.toml
    __version__ = _distribution_version("langchain-langroute")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0.0.0+unknown"

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


__getattr__, __dir__ = lazy_exports("langchain_langroute", _LAZY, __all__, globals())
