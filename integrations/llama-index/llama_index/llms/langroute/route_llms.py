"""The route LLMs behind a ``RoutingLLM``: their limits, calls and answers.

A route's LLM gets the routing LLM's ``timeout`` and ``max_retries`` (its SDK client
rebuilt with them), is asked for usage on streams, and its responses are read for
output and for the model the provider served.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from typing import Any

from llama_index.core.base.llms.types import ChatResponse, CompletionResponse
from llama_index.core.llms.llm import LLM

__all__ = ["delivers", "served_model", "stream_usage_kwargs", "with_route_limits"]


def with_route_limits(route: str, llm: LLM, limits: Mapping[str, Any]) -> LLM:
    """A copy of a route's LLM with the routing LLM's ``timeout`` / ``max_retries``.

    The fields are set on the copy (llama-index's own retry loop reads ``max_retries``,
    and clients built later read both), and an SDK client the LLM already holds is
    replaced by its ``with_options(...)`` copy (the OpenAI and Anthropic SDKs), so the
    settings take effect at once. An LLM without such a field is named in a warning.
    """
    fields = type(llm).model_fields
    update: dict[str, Any] = {}
    for name, value in limits.items():
        if name in fields:
            update[name] = value
        else:
            warnings.warn(
                f"models[{route!r}] ({type(llm).__name__}) has no {name!r} setting: "
                f"RoutingLLM({name}=...) does not reach it",
                UserWarning,
                stacklevel=4,
            )
    if not update:
        return llm
    copy = llm.model_copy(update=update)
    private = copy.__pydantic_private__ or {}
    for key, value in list(private.items()):
        with_options = getattr(value, "with_options", None)
        if callable(with_options):
            private[key] = with_options(**update)
    return copy


def stream_usage_kwargs(llm: LLM, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Ask an OpenAI-family LLM for usage on its stream (it sends none by default).

    llama-index's ``OpenAI`` (and its subclasses such as ``OpenAILike``) stream without
    ``stream_options``, so the provider sends no usage and the call cannot be priced.
    A call or LLM that sets ``stream_options`` itself keeps its choice.
    """
    module = sys.modules.get("llama_index.llms.openai.base")
    openai_llm = getattr(module, "OpenAI", None)
    if openai_llm is None or not isinstance(llm, openai_llm):
        return {}
    if "stream_options" in kwargs or "stream_options" in (llm.additional_kwargs or {}):
        return {}
    return {"stream_options": {"include_usage": True}}


def delivers(chunk: ChatResponse | CompletionResponse) -> bool:
    """Whether a streamed chunk delivers output to the caller: text or a tool call."""
    if chunk.delta or chunk.additional_kwargs.get("thinking_delta"):
        return True
    if isinstance(chunk, ChatResponse):
        message = chunk.message
        return bool(message.additional_kwargs.get("tool_calls")) or any(
            getattr(block, "block_type", None) == "tool_call" for block in message.blocks
        )
    return False


def served_model(route: str, response: Any) -> str | None:
    """The model the provider named in a response's (or chunk's) ``raw``; None if none.

    The escalation falls back on the route's configured model.
    """

    def pick(value: Any, key: str) -> Any:
        return value.get(key) if isinstance(value, Mapping) else getattr(value, key, None)

    raw = getattr(response, "raw", None)
    # Anthropic's stream names it in its message_start event: {"message": {"model": ...}}
    model = pick(raw, "model") or pick(pick(raw, "message"), "model")
    return model if isinstance(model, str) and model else None
