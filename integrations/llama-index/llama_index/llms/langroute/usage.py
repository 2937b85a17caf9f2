"""Token usage as providers report it in LlamaIndex responses.

There is no standard usage type in LlamaIndex: each provider integration leaves its own
shape in ``response.raw`` (and some copy the counts into ``additional_kwargs``).
:func:`extract_usage` reads the common ones:

* OpenAI: ``raw["usage"]`` with ``prompt_tokens`` / ``completion_tokens`` and
  ``prompt_tokens_details.cached_tokens`` (Responses API: ``input_tokens`` /
  ``output_tokens`` and ``input_tokens_details``);
* Anthropic: ``raw["usage"]`` with ``input_tokens`` (uncached only),
  ``cache_read_input_tokens``, ``cache_creation_input_tokens`` and ``output_tokens``;
* Gemini: ``raw["usage_metadata"]`` with ``prompt_token_count`` /
  ``candidates_token_count`` / ``cached_content_token_count``;
* ``additional_kwargs`` with ``prompt_tokens`` / ``completion_tokens``
  (``llama-index-llms-openai``).

Streams spread usage over chunks (OpenAI: the last one; Anthropic: input on the
``message_start`` event, ``{"message": {"usage": ...}}``, output on the last
``message_delta``): :func:`merge_usage` combines them.

:class:`TokenUsage` is the core :class:`langroute.dispatch.routed_call.TokenUsage`, shared with the
LangChain integration and the cost ledger.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from llama_index.core.base.llms.types import ChatResponse, CompletionResponse

from langroute.dispatch.escalation import max_usage
from langroute.dispatch.routed_call import TokenUsage

__all__ = ["TokenUsage", "extract_usage", "merge_usage"]


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    """A dict view of a usage object (dict, pydantic model or plain object)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        result = dump()
        return result if isinstance(result, Mapping) else None
    if hasattr(value, "__dict__"):
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    return None


def _int(mapping: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return None


def _usage_from(mapping: Mapping[str, Any]) -> TokenUsage | None:
    prompt = _int(mapping, "prompt_tokens", "input_tokens", "prompt_token_count")
    completion = _int(mapping, "completion_tokens", "output_tokens", "candidates_token_count")
    if prompt is None and completion is None:
        return None
    prompt = prompt or 0
    cached = 0
    details = _as_mapping(
        mapping.get("prompt_tokens_details") or mapping.get("input_tokens_details")
    )
    if details is not None:
        cached = _int(details, "cached_tokens") or 0
    anthropic_read = _int(mapping, "cache_read_input_tokens")
    anthropic_write = _int(mapping, "cache_creation_input_tokens")
    if anthropic_read is not None or anthropic_write is not None:
        # Anthropic reports uncached input apart from cache reads and writes.
        cached = anthropic_read or 0
        prompt += cached + (anthropic_write or 0)
    gemini_cached = _int(mapping, "cached_content_token_count")
    if gemini_cached is not None:
        cached = gemini_cached
    return TokenUsage(
        input_tokens=prompt, output_tokens=completion or 0, cached_tokens=min(cached, prompt)
    )


def extract_usage(response: ChatResponse | CompletionResponse | None) -> TokenUsage | None:
    """Token usage reported by a LlamaIndex response, or ``None`` if it reports none.

    Example:
        >>> from llama_index.core.llms import CompletionResponse
        >>> extract_usage(CompletionResponse(
        ...     text="hi", raw={"usage": {"prompt_tokens": 9, "completion_tokens": 1}}
        ... ))
        TokenUsage(input_tokens=9, output_tokens=1, cached_tokens=0)
    """
    if response is None:
        return None
    raw = _as_mapping(response.raw)
    if raw is not None:
        # Anthropic's stream opens with a message_start event: {"message": {"usage": ...}}
        message = _as_mapping(raw.get("message"))
        places = (raw.get("usage"), raw.get("usage_metadata"), (message or {}).get("usage"))
        for place in places:
            usage = _as_mapping(place)
            if usage:
                found = _usage_from(usage)
                if found is not None:
                    return found
    return _usage_from(response.additional_kwargs)


def merge_usage(usages: Iterable[TokenUsage | None]) -> TokenUsage | None:
    """Combine the usage reported by the chunks of one stream (field-wise maximum).

    Providers report per-stream totals, either once or cumulatively, sometimes split
    across chunks; the maximum of each field is the stream's usage in every case
    (:func:`langroute.dispatch.escalation.max_usage`, which :class:`RoutingLLM` streams use).

    Example:
        >>> merge_usage([TokenUsage(input_tokens=10), None, TokenUsage(output_tokens=4)])
        TokenUsage(input_tokens=10, output_tokens=4, cached_tokens=0)
    """
    return functools.reduce(max_usage, usages, None)
