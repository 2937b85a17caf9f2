"""The route models behind a routing model: their settings, calls and answers.

:class:`~langchain_langroute.chat_models.RoutingChatModel` and
:class:`~langchain_langroute.middleware.RouterMiddleware` call a chosen route's chat
model through what is here: its standard settings pushed down (``timeout`` and
``max_retries`` rebuild its SDK client), its ``_generate``/``_stream`` called with the
routing model's run manager (usage is counted once), and its answers read for the
token usage and the model the provider served.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langroute.dispatch.dispatcher import AnswerReaders
from langroute.dispatch.routed_call import RoutedCall, TokenUsage
from langroute.errors import RouterConfigError

__all__ = [
    "READERS",
    "StreamedModelName",
    "adelegate_stream",
    "answer_parts",
    "as_chunk",
    "can_stream",
    "check_chat_models",
    "delegate_stream",
    "delivers",
    "message_chunk",
    "model_name_of",
    "route_event_data",
    "served_model",
    "stream_usage_kwargs",
    "usage_of",
    "usage_of_message",
    "with_route_settings",
]


# Standard parameters pushed down to route models that declare a field of that name or alias.
STANDARD_PARAMS = ("temperature", "max_tokens", "timeout", "max_retries")
# Parameters that must reach the provider's SDK client; a route model without them is named
# in a warning (the setting cannot take effect there).
CLIENT_PARAMS = ("timeout", "max_retries")
# Fields of partner chat models holding SDK clients that their validators build from the
# other fields (langchain-openai and the packages built on it, langchain-groq, ...). They
# are left out when a model is rebuilt, so that its new clients take the new settings.
CLIENT_FIELDS = frozenset({"client", "async_client", "root_client", "root_async_client"})


def model_name_of(model: BaseChatModel) -> str:
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


def can_stream(model: BaseChatModel, kwargs: dict[str, Any], *, async_api: bool) -> bool:
    """Whether the model streams natively for this call (else its answer is one chunk)."""
    cls = type(model)
    implemented = cls._stream is not BaseChatModel._stream or (
        async_api and cls._astream is not BaseChatModel._astream
    )
    if not implemented or model.disable_streaming is True:
        return False
    return not (model.disable_streaming == "tool_calling" and kwargs.get("tools"))


def message_chunk(
    message: BaseMessage, response_metadata: Mapping[str, Any] | None = None
) -> AIMessageChunk:
    """One last chunk holding a whole message (its tool calls as tool-call chunks)."""
    if isinstance(message, AIMessageChunk) and response_metadata is None:
        return message
    tool_calls = getattr(message, "tool_calls", None) or []
    metadata = message.response_metadata if response_metadata is None else response_metadata
    return AIMessageChunk(
        content=message.content,
        additional_kwargs=message.additional_kwargs,
        response_metadata=dict(metadata or {}),
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


def as_chunk(result: ChatResult) -> ChatGenerationChunk:
    """One chunk holding a whole (non-streamed) answer (with the model its provider named)."""
    generation = result.generations[0]
    message = generation.message
    metadata = dict(message.response_metadata or {})
    served = (result.llm_output or {}).get("model_name")
    if served and not metadata.get("model_name"):
        metadata["model_name"] = served
    chunk = message_chunk(message, metadata)
    return ChatGenerationChunk(message=chunk, generation_info=generation.generation_info)


def stream_usage_kwargs(model: BaseChatModel, kwargs: Mapping[str, Any]) -> dict[str, Any]:
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


def delivers(chunk: ChatGenerationChunk) -> bool:
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


def delegate_stream(
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
    if can_stream(model, kwargs, async_api=False):
        kwargs = {**kwargs, **stream_usage_kwargs(model, kwargs)}
        yield from model._stream(messages, stop=stop, **kwargs)
    else:
        yield as_chunk(model._generate(messages, stop=stop, **kwargs))


async def adelegate_stream(
    model: BaseChatModel,
    messages: list[BaseMessage],
    stop: list[str] | None,
    kwargs: dict[str, Any],
) -> AsyncIterator[ChatGenerationChunk]:
    """Async :func:`delegate_stream`."""
    if model.rate_limiter is not None:
        await model.rate_limiter.aacquire(blocking=True)
    if can_stream(model, kwargs, async_api=True):
        kwargs = {**kwargs, **stream_usage_kwargs(model, kwargs)}
        async for chunk in model._astream(messages, stop=stop, **kwargs):
            yield chunk
    else:
        yield as_chunk(await model._agenerate(messages, stop=stop, **kwargs))


def answer_parts(answer: Any) -> tuple[BaseMessage | None, Mapping[str, Any]]:
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


def usage_of(answer: Any) -> TokenUsage | None:
    """The usage on an answer of any shape (see :func:`answer_parts`)."""
    return usage_of_message(answer_parts(answer)[0])


def served_model(route: str, answer: Any) -> str | None:
    """The model name the provider reported on an answer or a chunk (None: not on it).

    Looked up in the message's ``response_metadata``, the generation info (streamed
    chunks of ``ChatOpenAI``) and a ``ChatResult``'s ``llm_output`` (its ``_generate``).
    """
    message, info = answer_parts(answer)
    metadata = (message.response_metadata if message is not None else None) or {}
    served = metadata.get("model_name") or info.get("model_name")
    if not served and isinstance(answer, ChatResult):
        served = (answer.llm_output or {}).get("model_name")
    return served if isinstance(served, str) and served else None


READERS = AnswerReaders(usage_of=usage_of, model_of=served_model, delivers=delivers)
"""How the dispatcher reads LangChain answers: ``usage_metadata``, the served model, and
whether a chunk delivers text or a tool call (a stream escalates until one does)."""


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


class StreamedModelName:
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
        """The chunk, keeping its model name only if no earlier chunk named the model."""
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
        """An empty last chunk naming the model that answered, if no chunk did."""
        if self.named or self.first or call.model is None:
            return None
        message = AIMessageChunk(content="", response_metadata={"model_name": call.model})
        return ChatGenerationChunk(message=message)


def check_chat_models(models: Mapping[str, Any]) -> None:
    """Check that every route's model is a LangChain chat model.

    (Which routes need a model is the dispatcher's check:
    :class:`~langroute.dispatch.dispatcher.RouteDispatcher`.)

    Raises:
        RouterConfigError: A model is not a ``BaseChatModel``.
    """
    for route, model in models.items():
        if not isinstance(model, BaseChatModel):
            raise RouterConfigError(
                f"models[{route!r}] must be a LangChain BaseChatModel, got {type(model).__name__}"
            )


def setting_field(model: BaseChatModel, param: str) -> str | None:
    """The field of ``model`` that holds a standard setting: same name, else that alias."""
    fields = type(model).model_fields
    if param in fields:
        return param
    for name, info in fields.items():
        if param in (info.alias, info.validation_alias):
            return name
    return None


def with_route_settings(route: str, model: BaseChatModel, updates: dict[str, Any]) -> BaseChatModel:
    """``model`` with the routing model's defaults for the settings it did not set itself.

    The model is constructed anew from the fields it was given, so that validators that
    build SDK clients (``ChatOpenAI``'s ``root_client``, ``ChatAnthropic``'s cached
    client) build them with the new timeout and retry count. Should that fail, the
    fields are copied and a warning says that the client may keep its old settings.
    """
    applicable: dict[str, Any] = {}
    for param, value in updates.items():
        name = setting_field(model, param)
        if name is None:
            if param in CLIENT_PARAMS:
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
        if name in CLIENT_FIELDS or name in applicable:
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
