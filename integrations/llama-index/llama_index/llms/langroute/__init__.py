"""LlamaIndex integration of langroute: route each request to the cheapest adequate LLM.

Example:
    >>> from langroute import ExemplarRouter  # doctest: +SKIP
    >>> from llama_index.llms.langroute import RoutingLLM  # doctest: +SKIP
    >>> llm = RoutingLLM(  # doctest: +SKIP
    ...     router=ExemplarRouter.default(), models={"small": small_llm, "large": large_llm}
    ... )
    >>> index.as_query_engine(llm=llm).query("What is the notice period?")  # doctest: +SKIP
"""

from llama_index.llms.langroute.base import ROUTE_KEY, RouteMetadata, RoutingLLM
from llama_index.llms.langroute.cascade import (
    CASCADE_KEY,
    CascadeAttempt,
    CascadeLLM,
    CascadeResult,
)
from llama_index.llms.langroute.costs import CostCallbackHandler, track_costs
from llama_index.llms.langroute.events import (
    CascadeTierEvent,
    RouteAttemptFailedEvent,
    RouteCompletedEvent,
    RouteSelectedEvent,
)
from llama_index.llms.langroute.query import QueryExtractor, QueryExtractorProtocol
from llama_index.llms.langroute.route_targets import QueryEngineRoute
from llama_index.llms.langroute.usage import TokenUsage, extract_usage, merge_usage

__all__ = [
    "CASCADE_KEY",
    "ROUTE_KEY",
    "CascadeAttempt",
    "CascadeLLM",
    "CascadeResult",
    "CascadeTierEvent",
    "CostCallbackHandler",
    "QueryEngineRoute",
    "QueryExtractor",
    "QueryExtractorProtocol",
    "RouteAttemptFailedEvent",
    "RouteCompletedEvent",
    "RouteMetadata",
    "RouteSelectedEvent",
    "RoutingLLM",
    "TokenUsage",
    "extract_usage",
    "merge_usage",
    "track_costs",
]
