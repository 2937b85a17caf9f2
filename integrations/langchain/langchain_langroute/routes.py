"""Routes with several equivalent chat models, for :class:`RoutingChatModel`.

A route of ``RoutingChatModel(models=...)`` is one chat model, a list of equivalent chat
models (tried in order: a failure that ``escalate_on`` covers moves to the next one
before the call escalates to a stronger route), or a :class:`Route` for weights and
options::

    RoutingChatModel(
        router=router,
        models={
            "small": [ChatOpenAI(model="gpt-4o-mini"), ChatAnthropic(model="claude-haiku-4-5")],
            "large": Route(models=[ChatOpenAI(model="gpt-4o"), ChatAnthropic(...)],
                           weights=[3, 1], continue_streams=False),
        },
    )

Every equivalent is one attempt and one ledger row, priced as the model it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk
from langroute.dispatch.continuation import continuation_turns
from langroute.dispatch.equivalents import EquivalentModel, RouteEquivalents
from langroute.errors import RouterConfigError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from langchain_langroute.runnable_routes import as_route_model

__all__ = ["Route", "continuation_messages", "delivered_text", "route_equivalents", "routes_of"]


class Route(BaseModel):
    """Equivalent models serving one route: ordered, optionally weighted.

    Attributes:
        models: The route's chat models, preferred first.
        weights: Relative shares of first attempts (one per model); ``None``: the
            declared order, always.
        continue_streams: Whether a stream of this route that breaks after text is
            continued on the next model (``False``: the break reaches the caller).
        breaker_keys: The circuit-breaker key of each model (default: its model name;
            give distinct keys when one model name is served by two providers).

    Example:
        >>> from langchain_core.language_models import FakeListChatModel
        >>> route = Route(models=[FakeListChatModel(responses=["a"])], weights=[1])
        >>> len(route.models)
        1
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    models: list[Any] = Field(min_length=1)
    weights: list[float] | None = None
    continue_streams: bool = True
    breaker_keys: list[str] | None = None

    @model_validator(mode="after")
    def _one_per_model(self) -> Route:
        for name in ("weights", "breaker_keys"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.models):
                raise ValueError(
                    f"Route.{name} has {len(values)} entries for {len(self.models)} models"
                )
        return self


def routes_of(models: Mapping[str, Any], continue_streams: bool = True) -> dict[str, Route]:
    """Each route as a :class:`Route` (a single model or a list of models becomes one).

    A non-chat ``Runnable`` (an agent, a chain) becomes a
    :class:`~langchain_langroute.runnable_routes.RunnableRoute`.

    Raises:
        RouterConfigError: A route holds an empty list.
    """
    routes: dict[str, Route] = {}
    for route, value in models.items():
        if isinstance(value, Route):
            spec = value
        elif isinstance(value, Sequence) and not isinstance(value, str):
            if not value:
                raise RouterConfigError(f"models[{route!r}] is an empty list; give a model")
            spec = Route(models=list(value), continue_streams=continue_streams)
        else:
            spec = Route(models=[value], continue_streams=continue_streams)
        spec.models = [as_route_model(route, model) for model in spec.models]
        routes[route] = spec
    return routes


def route_equivalents(
    routes: Mapping[str, Route], names: Mapping[str, Sequence[str]], reorder: Any = None
) -> RouteEquivalents:
    """The core's plain description of the routes' models (``names``: each model's name).

    A model name given twice in one route gets its position as a breaker key suffix
    (``gpt-4o-mini#1``), so that two providers of one model keep separate breakers.
    ``reorder``: a per-call ordering policy such as
    :class:`~langroute.dispatch.latency.LatencyPolicy`.
    """
    described: dict[str, list[EquivalentModel]] = {}
    for route, spec in routes.items():
        route_names = list(names[route])
        models = []
        for index, name in enumerate(route_names):
            key = spec.breaker_keys[index] if spec.breaker_keys else None
            if key is None and route_names.count(name) > 1:
                key = f"{name}#{index}"
            models.append(
                EquivalentModel(
                    name=name,
                    weight=spec.weights[index] if spec.weights else 1.0,
                    breaker_key=key,
                    continue_streams=spec.continue_streams,
                )
            )
        described[route] = models
    return RouteEquivalents(described, reorder=reorder)


def delivered_text(chunks: Sequence[ChatGenerationChunk]) -> str | None:
    """The text a broken stream delivered.

    None when it delivered a tool call: a continuation cannot finish half a tool call.
    """
    for chunk in chunks:
        message = chunk.message
        extra = message.additional_kwargs or {}
        if getattr(message, "tool_call_chunks", None) or extra.get("tool_calls"):
            return None
    return "".join(chunk.text for chunk in chunks)


def continuation_messages(messages: Sequence[BaseMessage], text_so_far: str) -> list[BaseMessage]:
    """The conversation, then the text so far as the assistant's turn, then the ask to go on."""
    turns: list[BaseMessage] = [
        AIMessage(content=content) if role == "assistant" else HumanMessage(content=content)
        for role, content in continuation_turns(text_so_far)
    ]
    return [*messages, *turns]
