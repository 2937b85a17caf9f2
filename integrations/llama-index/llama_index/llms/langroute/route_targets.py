"""Routes whose target is not an LLM: a query engine (RAG over an index), anything with ``query``.

:class:`QueryEngineRoute` gives a LlamaIndex query engine the face of an LLM, so that
:class:`~llama_index.llms.langroute.base.RoutingLLM` routes to it like to any other route:
the same decision record on the answer, the same events, one ledger row. A route given
as a query engine is wrapped automatically::

    index = VectorStoreIndex.from_documents(documents)
    llm = RoutingLLM(
        router=router,
        models={"small": OpenAI(model="gpt-4o-mini"),
                "large": index.as_query_engine(llm=OpenAI(model="gpt-4o"))},
    )

The engine is asked the routed text: the last user message of a chat, the prompt of a
completion, or the question a ``predict`` routed on (the template's ``query_str``, not
the filled prompt). Its own LLM calls are counted from LlamaIndex's instrumentation
events (the end event of each call, in this call's context only): the row names the one
model the engine called and carries its summed usage, so the ledger prices it as that
model. An engine that called no model gives a zero-usage row named after the route
target; one that called several models gives a row named after the target with the
summed usage, which the ledger leaves unpriced unless ``[prices]`` names it. Calls that
reported no usage leave the row's tokens unknown.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Generator, Sequence
from contextvars import ContextVar
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import ConfigDict, Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from llama_index.core.llms.llm import LLM
from llama_index.llms.langroute.route_llms import served_model
from llama_index.llms.langroute.routed_run import PINNED
from llama_index.llms.langroute.usage import extract_usage

from langroute.dispatch.routed_call import TokenUsage

__all__ = ["QueryEngineRoute", "as_route_llm"]

# The end events of the LLM calls made while an engine answers, per call context.
_INNER_CALLS: ContextVar[list[ChatResponse | CompletionResponse] | None] = ContextVar(
    "langroute_inner_calls", default=None
)


class _InnerCallCollector(BaseEventHandler):
    """Keeps the response of each LLM call ended inside a :class:`QueryEngineRoute` call."""

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "LangrouteInnerCallCollector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        calls = _INNER_CALLS.get()
        if calls is None or not isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
            return
        if event.response is not None:
            calls.append(event.response)


@functools.cache
def _listen() -> None:
    """Add the collector to the root dispatcher, once per process."""
    get_dispatcher().add_event_handler(_InnerCallCollector())


def _text_of(result: Any) -> str:
    """The text of an engine's answer (a ``Response``, a consumed stream, or anything)."""
    text = getattr(result, "response", None)
    return text if isinstance(text, str) else str(result)


class QueryEngineRoute(LLM):
    """An LLM that answers by querying a LlamaIndex query engine with the routed text.

    It cannot stream token by token (a stream yields the full answer once) and takes no
    tools. The engine's ``Response`` (with its ``source_nodes``) is in the answer's
    ``raw["response"]``.

    Args:
        engine: What answers the route: a ``BaseQueryEngine`` (``index.as_query_engine()``)
            or any object with ``query(str)`` and ``aquery(str)``.
        model_name: The route's model name (breakers, the baseline when it is the strongest
            route) and the name its rows take when the engine called no model.
            :func:`as_route_llm` names it after the engine's LLM when it finds one.
        context_window: What the route reports (the routing LLM reports the smallest
            among its routes).
        num_output: Likewise.

    Example:
        >>> from llama_index.core import Document, VectorStoreIndex
        >>> from llama_index.core.embeddings import MockEmbedding
        >>> from llama_index.core.llms import MockLLM
        >>> index = VectorStoreIndex.from_documents(
        ...     [Document(text="We are open 9 to 5.")], embed_model=MockEmbedding(embed_dim=8))
        >>> route = QueryEngineRoute(engine=index.as_query_engine(llm=MockLLM()))
        >>> route.complete("When are you open?").raw["response"].source_nodes[0].text
        'We are open 9 to 5.'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: Any = Field(exclude=True, description="The query engine that answers.")
    model_name: str = Field(
        default="query-engine",
        description="The route's model name (equivalents, baseline), and its rows' when the "
        "engine called no model.",
    )
    context_window: int = Field(default=128_000, gt=0)
    num_output: int = Field(default=-1, ge=-1, description="-1: unknown (as OpenAI reports).")

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "QueryEngineRoute"

    @property
    def metadata(self) -> LLMMetadata:
        """A chat model without function calling, named ``model_name``."""
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.num_output,
            is_chat_model=True,
            is_function_calling_model=False,
            model_name=self.model_name,
        )

    # ------------------------------------------------------------------ asking the engine

    @staticmethod
    def _question(fallback: str) -> str:
        """The routed text of a ``predict`` in progress, else ``fallback``."""
        pinned = PINNED.get()
        query = pinned[1].decision.query if pinned is not None else ""
        return query or fallback

    @staticmethod
    def _last_user_text(messages: Sequence[ChatMessage]) -> str:
        for message in reversed(messages):
            if message.role == MessageRole.USER:
                return message.content or ""
        return messages[-1].content or "" if messages else ""

    def _raw(self, result: Any, calls: list[ChatResponse | CompletionResponse]) -> dict[str, Any]:
        """The answer's ``raw``: the model the engine called and its summed usage."""
        models = sorted({served_model("", call) for call in calls} - {None})
        if len(models) > 1:  # summed usage of several models: unpriced unless [prices] names it
            named = f"{type(self.engine).__name__}({'+'.join(models)})"
        else:
            named = models[0] if models else self.model_name
        raw: dict[str, Any] = {"model": named, "response": result}
        usages = [extract_usage(call) for call in calls]
        if not calls or all(usage is not None for usage in usages):
            total = sum((u for u in usages if u is not None), TokenUsage())
            raw["usage"] = {
                "prompt_tokens": total.input_tokens,
                "completion_tokens": total.output_tokens,
                "prompt_tokens_details": {"cached_tokens": total.cached_tokens},
            }
        return raw

    def _ask(self, question: str) -> tuple[str, dict[str, Any]]:
        _listen()
        calls: list[ChatResponse | CompletionResponse] = []
        token = _INNER_CALLS.set(calls)
        try:
            result = self.engine.query(question)
            if hasattr(result, "get_response"):  # a streaming engine: consume it here
                result = result.get_response()
        finally:
            _INNER_CALLS.reset(token)
        return _text_of(result), self._raw(result, calls)

    async def _aask(self, question: str) -> tuple[str, dict[str, Any]]:
        _listen()
        calls: list[ChatResponse | CompletionResponse] = []
        token = _INNER_CALLS.set(calls)
        try:
            result = await self.engine.aquery(question)
            if hasattr(result, "get_response"):
                result = result.get_response()
                if inspect.isawaitable(result):
                    result = await result
        finally:
            _INNER_CALLS.reset(token)
        return _text_of(result), self._raw(result, calls)

    @staticmethod
    def _chat_response(text: str, raw: dict[str, Any]) -> ChatResponse:
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=text, raw=raw
        )

    # ------------------------------------------------------------------ the LLM surface

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Query the engine with the last user message (or the routed question)."""
        text, raw = self._ask(self._question(self._last_user_text(messages)))
        return self._chat_response(text, raw)

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat`."""
        text, raw = await self._aask(self._question(self._last_user_text(messages)))
        return self._chat_response(text, raw)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Query the engine with the prompt (or the routed question)."""
        text, raw = self._ask(self._question(prompt))
        return CompletionResponse(text=text, delta=text, raw=raw)

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Async :meth:`complete`."""
        text, raw = await self._aask(self._question(prompt))
        return CompletionResponse(text=text, delta=text, raw=raw)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """:meth:`chat`, yielded once."""

        def gen() -> Generator[ChatResponse, None, None]:
            yield self.chat(messages, **kwargs)

        return gen()

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """:meth:`achat`, yielded once."""

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            yield await self.achat(messages, **kwargs)

        return gen()

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """:meth:`complete`, yielded once."""

        def gen() -> Generator[CompletionResponse, None, None]:
            yield self.complete(prompt, formatted=formatted, **kwargs)

        return gen()

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """:meth:`acomplete`, yielded once."""

        async def gen() -> AsyncGenerator[CompletionResponse, None]:
            yield await self.acomplete(prompt, formatted=formatted, **kwargs)

        return gen()


def as_route_llm(route: str, value: Any) -> Any:
    """A route's target as an LLM: a query engine becomes a :class:`QueryEngineRoute`."""
    if isinstance(value, LLM) or not callable(getattr(value, "query", None)):
        return value
    inner = getattr(value, "_llm", None) or getattr(
        getattr(value, "_response_synthesizer", None), "_llm", None
    )
    if isinstance(inner, LLM):  # named after its LLM: the baseline prices it as that model
        return QueryEngineRoute(
            engine=value,
            model_name=inner.metadata.model_name,
            context_window=inner.metadata.context_window,
            num_output=inner.metadata.num_output,
        )
    return QueryEngineRoute(engine=value, model_name=f"{type(value).__name__}:{route}")
