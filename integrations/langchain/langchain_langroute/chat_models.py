"""RoutingChatModel: one LangChain chat model that sends each call to the cheapest route.

Design (see the repository guide, LangChain section):

- The routing model is the only model run. It calls the chosen delegate's ``_generate`` /
  ``_agenerate`` / ``_stream`` / ``_astream`` directly, passing its own run manager, so a
  call's usage is counted once, under the delegate's ``response_metadata["model_name"]``.
- The decision rides on exactly one message or chunk, in
  ``response_metadata["langroute"]``, and is dispatched as the custom event
  ``"langroute_route"`` on the model run (visible in ``astream_events(version="v2")``).
- Tools are bound once in OpenAI format; at call time the chosen delegate's own
  ``bind_tools`` turns them into its provider's format.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
    Callbacks,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import (
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import ensure_config, get_config_list, get_executor_for_config
from langchain_core.runnables.utils import gather_with_concurrency
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langroute.calls import ROUTE_KEY, RoutedCall, TokenUsage
from langroute.decision import RouteDecision
from langroute.errors import RouterConfigError
from langroute.escalation import Escalation, escalation_path
from langroute.protocols import Router
from langroute.queries import has_visible_text
from pydantic import ConfigDict, Field, PrivateAttr

from langchain_langroute.query import last_human_message

__all__ = [
    "CALL_FAILED_EVENT",
    "ROUTE_EVENT",
    "ROUTE_KEY",
    "ROUTING_LLM_TYPE",
    "RoutingChatModel",
    "check_route_models",
    "route_escalation",
    "usage_of_message",
]

ROUTE_EVENT = "langroute_route"
"""Name of the custom event dispatched with each routing decision."""

CALL_FAILED_EVENT = "langroute_call_failed"
"""Name of the custom event dispatched when a routed call ends in an error.

Its data is ``{"call": RoutedCall.model_dump(mode="json")}``: every attempt, each with
its own route, model and error (a stream that broke after escalating included), so a
cost handler can record each paid attempt.
"""

ROUTING_LLM_TYPE = "langroute-routing-chat-model"
"""``_llm_type`` of :class:`RoutingChatModel` (``invocation_params["_type"]`` in callbacks)."""

_CALL_KEY = "_langroute_call"
_TOOL_KWARGS_KEY = "_langroute_tool_kwargs"
_PRIVATE_KEYS = (_CALL_KEY, _TOOL_KWARGS_KEY)

# Standard parameters pushed down to route models that declare a field of that name or alias.
_STANDARD_PARAMS = ("temperature", "max_tokens", "timeout", "max_retries")
# Parameters that must reach the provider's SDK client; a route model without them is named
# in a warning (the setting cannot take effect there).
_CLIENT_PARAMS = ("timeout", "max_retries")
# Fields of partner chat models holding SDK clients that their validators build from the
# other fields (langchain-openai and the packages built on it, langchain-groq, ...). They
# are left out when a model is rebuilt, so that its new clients take the new settings.
_CLIENT_FIELDS = frozenset({"client", "async_client", "root_client", "root_async_client"})


@dataclass
class _CallContext:
    """What travels from ``stream``/``batch`` to ``_stream``/``_generate`` for one call."""

    decision: RouteDecision | None = None
    run_id: uuid.UUID | None = None
    callbacks: Callbacks = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def _model_name_of(model: BaseChatModel) -> str:
    """The name a chat model reports to tracing (its ``ls_model_name``), best effort."""
    try:
        name = model._get_ls_params().get("ls_model_name")
    except Exception:  # a third-party model whose ls params need call kwargs
        name = None
    if not name:
        for attribute in ("model_name", "model", "model_id", "deployment_name"):
            value = getattr(model, attribute, None)
            if isinstance(value, str) and value:
                return value
        return type(model).__name__
    return str(name)


def _can_stream(model: BaseChatModel, kwargs: dict[str, Any], *, async_api: bool) -> bool:
    cls = type(model)
    implemented = cls._stream is not BaseChatModel._stream or (
        async_api and cls._astream is not BaseChatModel._astream
    )
    if not implemented or model.disable_streaming is True:
        return False
    return not (model.disable_streaming == "tool_calling" and kwargs.get("tools"))


def _as_chunk(result: ChatResult) -> ChatGenerationChunk:
    """One chunk holding a whole (non-streamed) answer (with the model its provider named)."""
    generation = result.generations[0]
    message = generation.message
    tool_calls = getattr(message, "tool_calls", None) or []
    metadata = dict(message.response_metadata or {})
    served = (result.llm_output or {}).get("model_name")
    if served and not metadata.get("model_name"):
        metadata["model_name"] = served
    chunk = AIMessageChunk(
        content=message.content,
        additional_kwargs=message.additional_kwargs,
        response_metadata=metadata,
        usage_metadata=getattr(message, "usage_metadata", None),
        tool_call_chunks=[
            tool_call_chunk(
                name=call["name"], args=json.dumps(call["args"]), id=call.get("id"), index=i
            )
            for i, call in enumerate(tool_calls)
        ],
        id=message.id,
        chunk_position="last",
    )
    return ChatGenerationChunk(message=chunk, generation_info=generation.generation_info)


def _stream_usage_kwargs(model: BaseChatModel, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Ask a route model for usage on its stream where it can report it but would not.

    ``ChatOpenAI`` with a ``base_url`` leaves ``stream_usage`` unset (no usage chunk);
    a stream without usage cannot be priced. A model or call that chose
    (``stream_usage``, ``stream_options``) keeps its choice.
    """
    if "stream_usage" not in type(model).model_fields:
        return {}
    if getattr(model, "stream_usage", None) is not None:
        return {}
    model_kwargs = getattr(model, "model_kwargs", None) or {}
    if "stream_usage" in kwargs or "stream_options" in kwargs or "stream_options" in model_kwargs:
        return {}
    return {"stream_usage": True}


def _delivers(chunk: ChatGenerationChunk) -> bool:
    """Whether a chunk delivers output to the caller: text, a content block, a tool call."""
    message = chunk.message
    content = message.content
    if isinstance(content, str):
        has_content = bool(content)
    else:
        has_content = any(
            block.get("type") != "text" or bool(block.get("text"))
            if isinstance(block, dict)
            else bool(block)
            for block in content
        )
    extra = message.additional_kwargs or {}
    return (
        has_content
        or bool(getattr(message, "tool_call_chunks", None))
        or bool(extra.get("tool_calls") or extra.get("function_call"))
    )


def _delegate_stream(
    model: BaseChatModel,
    messages: list[BaseMessage],
    stop: list[str] | None,
    kwargs: dict[str, Any],
) -> Iterator[ChatGenerationChunk]:
    """Stream from a route model, or answer in one chunk if it cannot stream.

    The route model gets no run manager: whoever drives the stream reports the tokens.
    """
    if model.rate_limiter is not None:
        model.rate_limiter.acquire(blocking=True)
    if _can_stream(model, kwargs, async_api=False):
        kwargs = {**kwargs, **_stream_usage_kwargs(model, kwargs)}
        yield from model._stream(messages, stop=stop, **kwargs)
    else:
        yield _as_chunk(model._generate(messages, stop=stop, **kwargs))


async def _adelegate_stream(
    model: BaseChatModel,
    messages: list[BaseMessage],
    stop: list[str] | None,
    kwargs: dict[str, Any],
) -> AsyncIterator[ChatGenerationChunk]:
    """Async :func:`_delegate_stream`."""
    if model.rate_limiter is not None:
        await model.rate_limiter.aacquire(blocking=True)
    if _can_stream(model, kwargs, async_api=True):
        kwargs = {**kwargs, **_stream_usage_kwargs(model, kwargs)}
        async for chunk in model._astream(messages, stop=stop, **kwargs):
            yield chunk
    else:
        yield _as_chunk(await model._agenerate(messages, stop=stop, **kwargs))


def _answer_parts(answer: Any) -> tuple[BaseMessage | None, Mapping[str, Any]]:
    """The message of an answer and its generation info.

    An answer is a ``ChatResult`` (``_generate``), a ``ChatGenerationChunk``
    (``_stream``), a message, or an agent ``ModelResponse`` (its first AI message).
    """
    if isinstance(answer, ChatResult):
        if not answer.generations:
            return None, {}
        answer = answer.generations[0]
    if isinstance(answer, ChatGeneration):
        return answer.message, answer.generation_info or {}
    if isinstance(answer, BaseMessage):
        return answer, {}
    for message in getattr(answer, "result", None) or []:
        if isinstance(message, AIMessage):
            return message, {}
    return None, {}


def usage_of_message(message: BaseMessage | None) -> TokenUsage | None:
    """The provider's token usage on a message (``usage_metadata``); None if it has none."""
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return None
    details = usage.get("input_token_details") or {}
    return TokenUsage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cached_tokens=int(details.get("cache_read") or 0),
    )


def _usage_of(answer: Any) -> TokenUsage | None:
    return usage_of_message(_answer_parts(answer)[0])


def _served_model(route: str, answer: Any) -> str | None:
    """The model name the provider reported on an answer or a chunk (None: not on it).

    Looked up in the message's ``response_metadata``, the generation info (streamed
    chunks of ``ChatOpenAI``) and a ``ChatResult``'s ``llm_output`` (its ``_generate``).
    """
    message, info = _answer_parts(answer)
    metadata = (message.response_metadata if message is not None else None) or {}
    served = metadata.get("model_name") or info.get("model_name")
    if not served and isinstance(answer, ChatResult):
        served = (answer.llm_output or {}).get("model_name")
    return served if isinstance(served, str) and served else None


def route_escalation(
    call: RoutedCall,
    order: Sequence[str],
    route_models: Mapping[str, str],
    escalate_on: tuple[type[BaseException], ...],
    *,
    propagate: tuple[type[BaseException], ...] = (),
) -> Escalation[Any]:
    """The :class:`~langroute.escalation.Escalation` of one routed LangChain call.

    It tries the decided route, then the routes after it in ``order``; each attempt is
    recorded with the model the provider reported (else the route's configured model)
    and the message's ``usage_metadata``. ``propagate`` errors (an agent's interrupt)
    pass through unrecorded. A stream escalates until a chunk delivers text or a tool
    call.
    """
    return Escalation(
        call,
        escalation_path(call.decision.route, order),
        model_for=route_models.get,
        escalate_on=escalate_on,
        usage_of=_usage_of,
        model_of=_served_model,
        propagate=propagate,
        delivers=_delivers,
    )


def route_event_data(call: RoutedCall, route_models: Mapping[str, str]) -> dict[str, Any]:
    """Data of the ``"langroute_route"`` custom event for a call's decision."""
    decision = call.decision
    return {
        "call_id": call.call_id,
        "route": decision.route,
        "model": route_models[decision.route],
        "confidence": decision.confidence,
        "reason": decision.reason,
        "baseline_route": call.baseline_route,
        "baseline_model": call.baseline_model,
        "route_models": dict(route_models),
        "decision": decision.model_dump(mode="json"),
    }


class _StreamedModelName:
    """Passes exactly one ``model_name`` down a stream: the first one a chunk carries.

    Providers name the served model on one chunk (``ChatOpenAI``: the last content
    chunk; ``ChatAnthropic``: the first), or on several; strings concatenate when chunks
    merge, so later ones are dropped. A stream that named none gets a closing empty
    chunk naming the model that answered.
    """

    def __init__(self) -> None:
        self.first = True
        self.named = False

    def pass_on(self, chunk: ChatGenerationChunk) -> ChatGenerationChunk:
        self.first = False
        metadata = chunk.message.response_metadata or {}
        info = chunk.generation_info or {}
        if not (metadata.get("model_name") or info.get("model_name")):
            return chunk
        if not self.named:
            self.named = True
            return chunk
        chunk.message.response_metadata = {k: v for k, v in metadata.items() if k != "model_name"}
        if "model_name" in info:
            chunk.generation_info = {k: v for k, v in info.items() if k != "model_name"}
        return chunk

    def closing(self, call: RoutedCall) -> ChatGenerationChunk | None:
        if self.named or self.first or call.model is None:
            return None
        message = AIMessageChunk(content="", response_metadata={"model_name": call.model})
        return ChatGenerationChunk(message=message)


def check_route_models(
    routes: Sequence[str], models: Mapping[str, Any], escalation_order: Sequence[str] | None
) -> None:
    """Check that ``models`` maps exactly the router's routes to chat models.

    Raises:
        RouterConfigError: A route has no model, a model has no route, a model is not a
            ``BaseChatModel``, or ``escalation_order`` names unknown or repeated routes.
    """
    missing = [route for route in routes if route not in models]
    unknown = [route for route in models if route not in routes]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"routes without a model: {missing}")
        if unknown:
            parts.append(f"models for unknown routes: {unknown}")
        raise RouterConfigError(
            "models must map every route of the router to a chat model; "
            + "; ".join(parts)
            + f" (router routes: {list(routes)})"
        )
    for route, model in models.items():
        if not isinstance(model, BaseChatModel):
            raise RouterConfigError(
                f"models[{route!r}] must be a LangChain BaseChatModel, got {type(model).__name__}"
            )
    if escalation_order is not None:
        strays = [r for r in escalation_order if r not in routes]
        if strays or len(set(escalation_order)) != len(escalation_order):
            raise RouterConfigError(
                f"escalation_order must list distinct routes of {list(routes)}, "
                f"got {list(escalation_order)}"
            )


def _setting_field(model: BaseChatModel, param: str) -> str | None:
    """The field of ``model`` that holds a standard setting: same name, else that alias."""
    fields = type(model).model_fields
    if param in fields:
        return param
    for name, info in fields.items():
        if param in (info.alias, info.validation_alias):
            return name
    return None


def _with_defaults(route: str, model: BaseChatModel, updates: dict[str, Any]) -> BaseChatModel:
    """``model`` with the routing model's defaults for the settings it did not set itself.

    The model is constructed anew from the fields it was given, so that validators that
    build SDK clients (``ChatOpenAI``'s ``root_client``, ``ChatAnthropic``'s cached
    client) build them with the new timeout and retry count. Should that fail, the
    fields are copied and a warning says that the client may keep its old settings.
    """
    applicable: dict[str, Any] = {}
    for param, value in updates.items():
        name = _setting_field(model, param)
        if name is None:
            if param in _CLIENT_PARAMS:
                warnings.warn(
                    f"models[{route!r}] ({type(model).__name__}) has no {param!r} setting: "
                    f"RoutingChatModel({param}=...) does not reach it",
                    UserWarning,
                    stacklevel=4,
                )
            continue
        if name not in model.model_fields_set:
            applicable[name] = value
    if not applicable:
        return model
    fields = type(model).model_fields
    values: dict[str, Any] = {}
    for name in model.model_fields_set:
        if name in _CLIENT_FIELDS or name in applicable:
            continue
        alias = fields[name].alias if name in fields else None
        values[alias if isinstance(alias, str) else name] = getattr(model, name)
    for name, value in applicable.items():
        alias = fields[name].alias
        values[alias if isinstance(alias, str) else name] = value
    try:
        return type(model)(**values)
    except Exception as error:  # a third-party model that cannot be rebuilt from its fields
        warnings.warn(
            f"models[{route!r}] ({type(model).__name__}) could not be rebuilt with "
            f"{sorted(applicable)} ({error}); the fields were copied, but a client it "
            "already built keeps its own settings",
            UserWarning,
            stacklevel=4,
        )
        return model.model_copy(update=applicable)


class RoutingChatModel(BaseChatModel):
    """A chat model that routes each call to the cheapest route able to answer it.

    Every route of the router must have a chat model. The router sees the user's question
    (by default the text of the last human message) and picks a route; the route's model
    answers. When that model raises (timeout, rate limit, provider error) the call
    escalates to the next stronger route; when all fail, ``AllRoutesFailedError`` is
    raised with the attempts attached. While streaming, escalation is possible until the
    first chunk with text or a tool call has been yielded (an empty stream escalates too).
    The answer names the model the provider served (``model_name``, often a dated name);
    on a stream, the chunk that names it may come last.

    Setup:
        .. code-block:: bash

            pip install langchain-langroute langchain-openai

    Instantiate:
        .. code-block:: python

            from langchain_openai import ChatOpenAI
            from langroute import ExemplarRouter
            from langchain_langroute import RoutingChatModel

            llm = RoutingChatModel(
                router=ExemplarRouter.default(),  # routes ["small", "large"]
                models={
                    "small": ChatOpenAI(model="gpt-4o-mini"),
                    "large": ChatOpenAI(model="gpt-4o"),
                },
            )

    Invoke:
        .. code-block:: python

            msg = llm.invoke("What is the capital of France?")
            msg.response_metadata["model_name"]  # 'gpt-4o-mini-2024-07-18'
            msg.response_metadata["langroute"]  # RoutedCall.metadata()
            # {'call_id': '3f2a...', 'route': 'small', 'model': 'gpt-4o-mini-2024-07-18',
            #  'confidence': 0.93, 'reason': 'vote', 'escalated': False, 'attempts': [], ...}
            RouteMetadata.from_metadata(msg.response_metadata).route  # 'small'

    Stream:
        .. code-block:: python

            for chunk in llm.stream("Prove that there are infinitely many primes."):
                print(chunk.content, end="")
            # the first chunk carries response_metadata["langroute"]

    Force a route, tools, structured output:
        .. code-block:: python

            llm.invoke("hi", model="large")  # a route name or a route's model name
            llm.bind_tools([get_weather]).invoke("Weather in Paris?")
            llm.with_structured_output(Answer).invoke("...")

    Batch (one batched routing call for all inputs):
        .. code-block:: python

            llm.batch(["hi", "Prove Fermat's little theorem."])
    """

    router: Router
    """A :class:`langroute.protocols.Router` (``ExemplarRouter`` or anything with the same
    routing methods)."""
    models: dict[str, Any]
    """Route name -> the chat model (a ``BaseChatModel``) that answers that route."""
    query_extractor: Callable[[Sequence[BaseMessage]], str | None] = Field(
        default=last_human_message
    )
    """Messages -> the text to route on (``None``: use the router's fallback decision)."""
    escalation_order: list[str] | None = None
    """Routes from cheapest to strongest for escalation on errors (default: the router's
    order). After route ``r`` fails, the routes that follow ``r`` here are tried in turn."""
    escalate_on: tuple[type[BaseException], ...] = (Exception,)
    """Errors that trigger escalation; anything else propagates unchanged."""
    emit_events: bool = True
    """Dispatch the ``"langroute_route"`` custom event with each decision."""
    temperature: float | None = None
    """Default temperature, pushed to route models that have a ``temperature`` field and
    did not set it themselves."""
    max_tokens: int | None = None
    """Default output-token cap, pushed down like ``temperature``."""
    timeout: float | None = None
    """Default request timeout in seconds, for route models that did not set their own.

    It reaches the provider's SDK client: the model's timeout field is found by name or
    alias (``ChatOpenAI.request_timeout``, ``ChatAnthropic.default_request_timeout``) and
    the model is rebuilt so that its client is created with it. A model without such a
    field is named in a warning. A route that times out escalates."""
    max_retries: int | None = None
    """Default retry count of the provider's SDK client, applied like ``timeout``.

    ``0`` makes a rate-limited or failing route escalate after its first request."""
    stop: list[str] | None = None
    """Default stop sequences, passed to the chosen model when a call gives none."""
    streaming: bool = False
    """Stream from the chosen model even on ``invoke`` (callbacks see tokens)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _model_names: dict[str, str] = PrivateAttr(default_factory=dict)

    # ------------------------------------------------------------------ validation
    def __init__(self, **kwargs: Any) -> None:
        """Create the routing model; see the class docstring for the fields.

        Raises:
            RouterConfigError: ``models`` does not map exactly the router's routes to
                chat models, or ``escalation_order`` names unknown routes.
        """
        super().__init__(**kwargs)
        check_route_models(self._routes(), self.models, self.escalation_order)
        updates = {
            name: getattr(self, name)
            for name in _STANDARD_PARAMS
            if getattr(self, name) is not None
        }
        if updates:
            self.models = {
                route: _with_defaults(route, model, updates) for route, model in self.models.items()
            }
        self._model_names = {route: _model_name_of(model) for route, model in self.models.items()}

    def _routes(self) -> list[str]:
        try:
            return list(self.router.routes)
        except AttributeError as exc:
            raise RouterConfigError(
                f"router must expose .routes (cheapest first); got {type(self.router).__name__}"
            ) from exc

    # ------------------------------------------------------------------ LangChain metadata
    @property
    def _llm_type(self) -> str:
        return ROUTING_LLM_TYPE

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "router": type(self.router).__name__,
            "routes": self.route_models,
        }

    @property
    def route_models(self) -> dict[str, str]:
        """Route name -> the model name of that route's chat model."""
        return dict(self._model_names)

    @property
    def strongest_route(self) -> str:
        """The last route of the router (the baseline for savings)."""
        return self._routes()[-1]

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        public = {k: v for k, v in kwargs.items() if k not in _PRIVATE_KEYS}
        return super()._get_invocation_params(stop=stop, **public)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        call: _CallContext | None = kwargs.get(_CALL_KEY)
        if kwargs.get("model"):
            name = str(kwargs["model"])
        elif call is not None and call.decision is not None:
            name = self._model_names[call.decision.route]
        else:
            name = "langroute[" + ",".join(self._routes()) + "]"
        params = LangSmithParams(ls_provider="langroute", ls_model_name=name, ls_model_type="chat")
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # ------------------------------------------------------------------ tools
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; at call time the chosen route's model binds them in its own format.

        Args:
            tools: LangChain tools, functions, pydantic classes or JSON/OpenAI schemas;
                converted to OpenAI format here and handed to the chosen model's
                ``bind_tools``.
            tool_choice: Passed unchanged to the chosen model's ``bind_tools``
                (``"any"``, a tool name, ``"auto"``, ...).
            **kwargs: Further ``bind_tools`` options (``strict``, ``parallel_tool_calls``,
                ...) passed to the chosen model's ``bind_tools``;
                ``ls_structured_output_format`` is kept for tracing.

        Returns:
            A ``RunnableBinding`` of this routing model.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        bound: dict[str, Any] = {"tools": formatted}
        if tool_choice is not None:
            bound["tool_choice"] = tool_choice
        for key in ("ls_structured_output_format", "structured_output_format"):
            if key in kwargs:
                bound[key] = kwargs.pop(key)
        if kwargs:
            bound[_TOOL_KWARGS_KEY] = kwargs
        return self.bind(**bound)

    def _delegate_call(
        self, route: str, kwargs: dict[str, Any]
    ) -> tuple[BaseChatModel, dict[str, Any]]:
        """The model to call for ``route`` and the kwargs for its ``_generate``/``_stream``."""
        delegate = self.models[route]
        call_kwargs = dict(kwargs)
        tools = call_kwargs.pop("tools", None)
        tool_choice = call_kwargs.pop("tool_choice", None)
        tool_kwargs = call_kwargs.pop(_TOOL_KWARGS_KEY, None) or {}
        if tools is None:
            if tool_choice is not None:
                call_kwargs["tool_choice"] = tool_choice
            return delegate, call_kwargs
        options = dict(tool_kwargs)
        if tool_choice is not None:
            options["tool_choice"] = tool_choice
        binding = delegate.bind_tools(tools, **options)
        target: Any = binding
        bound_kwargs: dict[str, Any] = {}
        while isinstance(target, RunnableBinding):
            bound_kwargs = {**target.kwargs, **bound_kwargs}
            target = target.bound
        if not isinstance(target, BaseChatModel):
            raise TypeError(
                f"models[{route!r}].bind_tools returned {type(binding).__name__} that does not "
                "wrap a chat model; the routing model cannot pass the tools on"
            )
        return target, {**bound_kwargs, **call_kwargs}

    # ------------------------------------------------------------------ decisions
    def _forced_decision(self, forced: str) -> RouteDecision:
        if forced in self.models:
            return self.router.forced(forced)
        for route, name in self._model_names.items():
            if name == forced:
                return self.router.forced(route)
        raise RouterConfigError(
            f"model={forced!r} names no route and no route model; routes: {self.route_models}"
        )

    def _pending_decision(
        self, messages: Sequence[BaseMessage], call: _CallContext | None, kwargs: dict[str, Any]
    ) -> tuple[RouteDecision | None, str | None]:
        """A decision that needs no router call, else the query to route on."""
        forced = kwargs.pop("model", None)
        if call is not None and call.decision is not None:
            return call.decision, None
        if forced:
            return self._forced_decision(str(forced)), None
        query = self.query_extractor(messages)
        if query is None or not has_visible_text(str(query)):
            return self.router.fallback_decision("no_query"), None
        return None, str(query)

    def _decide(
        self, messages: Sequence[BaseMessage], call: _CallContext | None, kwargs: dict[str, Any]
    ) -> RouteDecision:
        decision, query = self._pending_decision(messages, call, kwargs)
        return decision if decision is not None else self.router.route(query)

    async def _adecide(
        self, messages: Sequence[BaseMessage], call: _CallContext | None, kwargs: dict[str, Any]
    ) -> RouteDecision:
        decision, query = self._pending_decision(messages, call, kwargs)
        return decision if decision is not None else await self.router.aroute(query)

    def _routed_call(self, decision: RouteDecision) -> RoutedCall:
        strongest = self.strongest_route
        return RoutedCall(
            decision=decision,
            baseline_route=strongest,
            baseline_model=self._model_names[strongest],
        )

    def _escalation(self, call: RoutedCall) -> Escalation[Any]:
        """Escalation after ``call``'s decided route, along ``escalation_order``."""
        order = self.escalation_order if self.escalation_order is not None else self._routes()
        return route_escalation(call, order, self._model_names, self.escalate_on)

    # ------------------------------------------------------------------ custom events
    def _sync_event_manager(
        self, run_manager: CallbackManagerForLLMRun | None, call: _CallContext | None
    ) -> tuple[CallbackManager, uuid.UUID] | None:
        if run_manager is not None:
            manager = CallbackManager(
                handlers=run_manager.handlers,
                inheritable_handlers=run_manager.inheritable_handlers,
                parent_run_id=run_manager.parent_run_id,
                tags=run_manager.tags,
                inheritable_tags=run_manager.inheritable_tags,
                metadata=run_manager.metadata,
                inheritable_metadata=run_manager.inheritable_metadata,
            )
            return manager, run_manager.run_id
        if call is not None and call.run_id is not None:
            manager = CallbackManager.configure(
                call.callbacks,
                self.callbacks,
                self.verbose,
                call.tags,
                self.tags,
                call.metadata,
                self.metadata,
            )
            return manager, call.run_id
        return None

    def _dispatch(
        self,
        name: str,
        data: dict[str, Any],
        run_manager: CallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> None:
        target = self._sync_event_manager(run_manager, call)
        if target is not None:
            manager, run_id = target
            manager.on_custom_event(name, data, run_id=run_id)

    def _emit(
        self,
        routed: RoutedCall,
        run_manager: CallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> None:
        if self.emit_events:
            data = route_event_data(routed, self._model_names)
            self._dispatch(ROUTE_EVENT, data, run_manager, call)

    def _emit_failure(
        self,
        routed: RoutedCall,
        run_manager: CallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> None:
        """Report every attempt of a call that ends in an error (for cost records)."""
        if routed.attempts:
            data = {"call": routed.model_dump(mode="json")}
            self._dispatch(CALL_FAILED_EVENT, data, run_manager, call)

    async def _aemit(
        self,
        routed: RoutedCall,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> None:
        if self.emit_events:
            data = route_event_data(routed, self._model_names)
            await self._adispatch(ROUTE_EVENT, data, run_manager, call)

    async def _aemit_failure(
        self,
        routed: RoutedCall,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> None:
        """Async :meth:`_emit_failure`."""
        if routed.attempts:
            data = {"call": routed.model_dump(mode="json")}
            await self._adispatch(CALL_FAILED_EVENT, data, run_manager, call)

    async def _adispatch(
        self,
        name: str,
        data: dict[str, Any],
        run_manager: AsyncCallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> None:
        if run_manager is not None:
            manager = AsyncCallbackManager(
                handlers=run_manager.handlers,
                inheritable_handlers=run_manager.inheritable_handlers,
                parent_run_id=run_manager.parent_run_id,
                tags=run_manager.tags,
                inheritable_tags=run_manager.inheritable_tags,
                metadata=run_manager.metadata,
                inheritable_metadata=run_manager.inheritable_metadata,
            )
            run_id = run_manager.run_id
        elif call is not None and call.run_id is not None:
            manager = AsyncCallbackManager.configure(
                call.callbacks,
                self.callbacks,
                self.verbose,
                call.tags,
                self.tags,
                call.metadata,
                self.metadata,
            )
            run_id = call.run_id
        else:
            return
        await manager.on_custom_event(name, data, run_id=run_id)

    # ------------------------------------------------------------------ annotation
    @staticmethod
    def _annotate(generation: ChatGeneration, call: RoutedCall, model_name: str | None) -> None:
        """Put the call's record on an answer, and ``model_name`` if it names no model.

        ``model_name`` is the model that served (as the provider named it, dated); a
        streamed first chunk gets none, as the name may come on a later chunk.
        """
        message = generation.message
        metadata = dict(message.response_metadata or {})
        info = generation.generation_info or {}
        if model_name and not (metadata.get("model_name") or info.get("model_name")):
            metadata["model_name"] = model_name
        metadata[ROUTE_KEY] = call.metadata()
        message.response_metadata = metadata

    @staticmethod
    def _pop_private(kwargs: dict[str, Any]) -> _CallContext | None:
        kwargs.pop("ls_structured_output_format", None)
        kwargs.pop("structured_output_format", None)
        kwargs.pop("stream", None)
        return kwargs.pop(_CALL_KEY, None)

    # ------------------------------------------------------------------ streaming choice
    def _should_stream(
        self,
        *,
        async_api: bool,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> bool:
        # On the invoke path (a run manager is given) ``_generate`` decides itself, so that
        # it keeps the run manager for the route event; ``stream()`` asks without one.
        if run_manager is not None:
            return False
        return super()._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)

    # ------------------------------------------------------------------ generation
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if super()._should_stream(async_api=False, run_manager=run_manager, **kwargs):
            chunks = []
            for chunk in self._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                chunks.append(chunk)
            return generate_from_stream(iter(chunks))
        call = self._pop_private(kwargs)
        stop = stop or self.stop or None
        routed = self._routed_call(self._decide(messages, call, kwargs))
        self._emit(routed, run_manager, call)

        def generate(route: str) -> ChatResult:
            delegate, call_kwargs = self._delegate_call(route, kwargs)
            if delegate.rate_limiter is not None:
                delegate.rate_limiter.acquire(blocking=True)
            if delegate._should_stream(async_api=False, **call_kwargs):  # streaming=True
                call_kwargs = {**call_kwargs, **_stream_usage_kwargs(delegate, call_kwargs)}
                chunks = delegate._stream(
                    messages, stop=stop, run_manager=run_manager, **call_kwargs
                )
                return generate_from_stream(chunks)
            return delegate._generate(messages, stop=stop, run_manager=run_manager, **call_kwargs)

        try:
            _, result = self._escalation(routed).run(generate)
        except Exception:
            self._emit_failure(routed, run_manager, call)
            raise
        if result.generations:
            self._annotate(result.generations[0], routed, routed.model)
        return result

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if super()._should_stream(async_api=True, run_manager=run_manager, **kwargs):

            async def relay() -> AsyncIterator[ChatGenerationChunk]:
                async for chunk in self._astream(
                    messages, stop=stop, run_manager=run_manager, **kwargs
                ):
                    if run_manager is not None:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk

            return await agenerate_from_stream(relay())
        call = self._pop_private(kwargs)
        stop = stop or self.stop or None
        routed = self._routed_call(await self._adecide(messages, call, kwargs))
        await self._aemit(routed, run_manager, call)

        async def agenerate(route: str) -> ChatResult:
            delegate, call_kwargs = self._delegate_call(route, kwargs)
            if delegate.rate_limiter is not None:
                await delegate.rate_limiter.aacquire(blocking=True)
            if delegate._should_stream(async_api=True, **call_kwargs):  # streaming=True
                call_kwargs = {**call_kwargs, **_stream_usage_kwargs(delegate, call_kwargs)}
                chunks = delegate._astream(
                    messages, stop=stop, run_manager=run_manager, **call_kwargs
                )
                return await agenerate_from_stream(chunks)
            return await delegate._agenerate(
                messages, stop=stop, run_manager=run_manager, **call_kwargs
            )

        try:
            _, result = await self._escalation(routed).arun(agenerate)
        except Exception:
            await self._aemit_failure(routed, run_manager, call)
            raise
        if result.generations:
            self._annotate(result.generations[0], routed, routed.model)
        return result

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._pop_private(kwargs)
        stop = stop or self.stop or None
        routed = self._routed_call(self._decide(messages, call, kwargs))
        self._emit(routed, run_manager, call)

        def open_stream(route: str) -> Iterator[ChatGenerationChunk]:
            delegate, call_kwargs = self._delegate_call(route, kwargs)
            return _delegate_stream(delegate, messages, stop, call_kwargs)

        names = _StreamedModelName()
        try:
            for _, chunk in self._escalation(routed).stream(open_stream):
                if names.first:
                    self._annotate(chunk, routed, None)
                yield names.pass_on(chunk)
        except Exception:
            self._emit_failure(routed, run_manager, call)
            raise
        closing = names.closing(routed)
        if closing is not None:
            yield closing

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = self._pop_private(kwargs)
        stop = stop or self.stop or None
        routed = self._routed_call(await self._adecide(messages, call, kwargs))
        await self._aemit(routed, run_manager, call)

        def open_stream(route: str) -> AsyncIterator[ChatGenerationChunk]:
            delegate, call_kwargs = self._delegate_call(route, kwargs)
            return _adelegate_stream(delegate, messages, stop, call_kwargs)

        names = _StreamedModelName()
        try:
            async for _, chunk in self._escalation(routed).astream(open_stream):
                if names.first:
                    self._annotate(chunk, routed, None)
                yield names.pass_on(chunk)
        except Exception:
            await self._aemit_failure(routed, run_manager, call)
            raise
        closing = names.closing(routed)
        if closing is not None:
            yield closing

    # ------------------------------------------------------------------ stream / batch
    @staticmethod
    def _stream_context(config: RunnableConfig) -> _CallContext:
        if config.get("run_id") is None:
            config["run_id"] = uuid.uuid4()
        return _CallContext(
            run_id=config["run_id"],
            callbacks=config.get("callbacks"),
            tags=list(config.get("tags") or []),
            metadata=dict(config.get("metadata") or {}),
        )

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """Stream the chosen model's answer; the first chunk carries the decision.

        The model run's id is fixed up front so that the route event can be attached to
        it (``BaseChatModel.stream`` gives ``_stream`` no run manager).
        """
        config = ensure_config(config)
        call = kwargs.pop(_CALL_KEY, None) or self._stream_context(config)
        if call.run_id is None:
            call.run_id = self._stream_context(config).run_id
        yield from super().stream(input, config, stop=stop, **{_CALL_KEY: call, **kwargs})

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """Async :meth:`stream`."""
        config = ensure_config(config)
        call = kwargs.pop(_CALL_KEY, None) or self._stream_context(config)
        if call.run_id is None:
            call.run_id = self._stream_context(config).run_id
        async for chunk in super().astream(input, config, stop=stop, **{_CALL_KEY: call, **kwargs}):
            yield chunk

    def _batch_queries(
        self, inputs: Sequence[LanguageModelInput], kwargs: dict[str, Any]
    ) -> tuple[list[RouteDecision | None], list[int], list[str]]:
        decisions: list[RouteDecision | None] = [None] * len(inputs)
        if kwargs.get("model"):
            return decisions, [], []
        indices: list[int] = []
        queries: list[str] = []
        for i, item in enumerate(inputs):
            messages = self._convert_input(item).to_messages()
            query = self.query_extractor(messages)
            if query is None or not has_visible_text(str(query)):
                decisions[i] = self.router.fallback_decision("no_query")
            else:
                indices.append(i)
                queries.append(str(query))
        return decisions, indices, queries

    def _route_batch(self, queries: list[str]) -> list[RouteDecision | None]:
        """Route ``queries`` in one call; ``None`` for each when that call raises.

        Every input is then routed (and fails) on its own: one bad query never fails
        its neighbours.
        """
        try:
            return list(self.router.route_batch(queries))
        except Exception:
            return [None] * len(queries)

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage | Exception]:  # type: ignore[override]
        """Answer many inputs; all of them are routed with one ``route_batch`` call."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        decisions, indices, queries = self._batch_queries(inputs, kwargs)
        if queries:
            for i, decision in zip(indices, self._route_batch(queries), strict=True):
                decisions[i] = decision

        def invoke(i: int) -> Any:
            call_kwargs = {**kwargs}
            if decisions[i] is not None:
                call_kwargs[_CALL_KEY] = _CallContext(decision=decisions[i])
            try:
                return self.invoke(inputs[i], configs[i], **call_kwargs)
            except Exception as error:
                if return_exceptions:
                    return error
                raise

        if len(inputs) == 1:
            return [invoke(0)]
        with get_executor_for_config(configs[0]) as executor:
            return list(executor.map(invoke, range(len(inputs))))

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage | Exception]:  # type: ignore[override]
        """Async :meth:`batch` (one ``aroute_batch`` call for all inputs)."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        decisions, indices, queries = self._batch_queries(inputs, kwargs)
        if queries:
            try:
                routed: list[RouteDecision | None] = list(await self.router.aroute_batch(queries))
            except Exception:  # one bad query: each input is routed (and fails) on its own
                routed = [None] * len(queries)
            for i, decision in zip(indices, routed, strict=True):
                decisions[i] = decision

        async def ainvoke(i: int) -> Any:
            call_kwargs = {**kwargs}
            if decisions[i] is not None:
                call_kwargs[_CALL_KEY] = _CallContext(decision=decisions[i])
            try:
                return await self.ainvoke(inputs[i], configs[i], **call_kwargs)
            except Exception as error:
                if return_exceptions:
                    return error
                raise

        return await gather_with_concurrency(
            configs[0].get("max_concurrency"), *(ainvoke(i) for i in range(len(inputs)))
        )
