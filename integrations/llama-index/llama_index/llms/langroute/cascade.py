"""``CascadeLLM``: ask the cheapest tier first, keep its answer if a scorer accepts it.

The acceptance rule and the result's shape are the core's (:mod:`langroute.cascade`),
shared with the LangChain ``CascadeRunnable``: an answer is accepted when
``score >= threshold`` and the scorer did not fail it (``passed is not False``); the
result is stored under the same key, ``"langroute_cascade"``, with the same fields.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Sequence,
)
from contextvars import ContextVar
from typing import Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms.llm import LLM
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.types import TokenAsyncGen, TokenGen
from llama_index.llms.langroute.events import CascadeTierEvent, dispatcher
from llama_index.llms.langroute.query import QueryExtractor, QueryExtractorProtocol
from llama_index.llms.langroute.usage import TokenUsage, extract_usage, merge_usage

from langroute.cascade import CASCADE_KEY, CascadeAttempt, error_text, failed_attempt, judge_attempt
from langroute.cascade import CascadeResult as _CoreCascadeResult
from langroute.errors import AllRoutesFailedError, RouterConfigError
from langroute.scorers import Scorer, ScoreResult, as_scorer

__all__ = ["CASCADE_KEY", "CascadeAttempt", "CascadeLLM", "CascadeResult"]


R = TypeVar("R", ChatResponse, CompletionResponse)

# The question of the predict/stream call in progress, for the chat/complete it makes.
_QUERY: ContextVar[tuple[int, str | None] | None] = ContextVar(
    "langroute_cascade_query", default=None
)


class CascadeResult(_CoreCascadeResult):
    r"""Which tier answered a cascade call, and why the earlier tiers were rejected.

    The core :class:`langroute.cascade.CascadeResult`, stored as a dict in the answer's
    ``additional_kwargs["langroute_cascade"]``; read it back with :meth:`from_response`.

    Example:
        >>> result = CascadeResult.from_response(cascade.complete("..."))  # doctest: +SKIP
        >>> result.tier_name, [a.reason for a in result.rejected]  # doctest: +SKIP
        ('large', ['rejected: score 0 < 0.5 or failed (refusal: ...)'])
    """

    @classmethod
    def from_response(cls, response: ChatResponse | CompletionResponse) -> CascadeResult | None:
        """Read the cascade result back from a response (``None`` if it has none)."""
        data = response.additional_kwargs.get(CASCADE_KEY)
        if data is None:
            return None
        if isinstance(data, CascadeResult):
            return data
        return cls.model_validate(data)


def _text(response: ChatResponse | CompletionResponse) -> str:
    if isinstance(response, ChatResponse):
        return response.message.content or ""
    return response.text


def _logprobs(response: ChatResponse | CompletionResponse) -> list[float] | None:
    """The answer's token log-probabilities (the first entry at each position)."""
    if not response.logprobs:
        return None
    return [position[0].logprob for position in response.logprobs if position]


def _merge_logprobs(chunks: Sequence[ChatResponse | CompletionResponse]) -> list[float] | None:
    values = [v for chunk in chunks for v in (_logprobs(chunk) or [])]
    return values or None


class _Call:
    """Bookkeeping for one cascade call: its attempts, events and errors."""

    def __init__(self, cascade: CascadeLLM, query: str | None) -> None:
        self.cascade = cascade
        self.query = query
        self.call_id = uuid.uuid4().hex
        self.attempts: list[CascadeAttempt] = []
        self.errors: list[tuple[str, BaseException]] = []

    def emit(
        self,
        attempt: CascadeAttempt,
        response: ChatResponse | CompletionResponse | None,
        started: float,
        result: ScoreResult | None,
        *,
        usage: TokenUsage | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Keep the attempt and announce it (the ledger handler records it)."""
        self.attempts.append(attempt)
        metadata: dict[str, Any] = {}
        if attempt.tier > 0:
            metadata["previous_tier"] = self.cascade.tier_names[attempt.tier - 1]
        if result is not None:
            metadata["score_result"] = result.model_dump()
        dispatcher.event(
            CascadeTierEvent(
                call_id=self.call_id,
                tier=attempt.tier,
                tier_name=attempt.tier_name,
                model=attempt.model,
                baseline_model=self.cascade.baseline_model,
                response=response,
                usage=usage if usage is not None else extract_usage(response),
                latency_ms=(time.perf_counter() - started) * 1000,
                accepted=attempt.accepted,
                score=attempt.score,
                reason=attempt.reason,
                error=error_text(error) if error is not None else attempt.error,
                query=self.query,
                metadata=metadata,
            )
        )

    def failed(self, tier: int, exc: BaseException, started: float) -> None:
        """A tier raised: it counts as rejected."""
        name = self.cascade.tier_names[tier]
        self.errors.append((name, exc))
        attempt = failed_attempt(tier, name, self.cascade.model_for(name), exc)
        self.emit(attempt, None, started, None)

    def annotate(self, response: R, attempt: CascadeAttempt) -> R:
        """The tier's response with the cascade result added (its ``raw`` untouched)."""
        result = CascadeResult(
            call_id=self.call_id,
            tier=attempt.tier,
            tier_name=attempt.tier_name,
            model=attempt.model,
            reason=attempt.reason,
            attempts=[a for a in self.attempts if a is not attempt] + [attempt],
        ).model_dump(mode="json")
        return response.model_copy(
            update={"additional_kwargs": {**response.additional_kwargs, CASCADE_KEY: result}}
        )

    def all_failed(self) -> AllRoutesFailedError:
        """No answer: the last tier raised (earlier tiers raised or were rejected)."""
        parts = [f"{a.tier_name}: {a.reason}" for a in self.attempts]
        error = AllRoutesFailedError(
            f"no cascade tier produced an answer ({'; '.join(parts)})", self.errors
        )
        error.__cause__ = self.errors[-1][1]
        return error


class CascadeLLM(LLM):
    """A LlamaIndex LLM that tries tiers cheapest first and stops at the first good answer.

    Each tier's answer is scored with a :mod:`langroute.scorers` scorer against the
    user's question (found as :class:`RoutingLLM` finds it: the template's
    ``query_str`` in a query engine, the last user message in a chat). Tier ``i``'s
    answer is accepted when its score reaches the threshold and the scorer did not fail
    it outright (``passed is not False``); otherwise the next tier runs. A tier that
    raises is rejected. The last tier's answer is returned without scoring unless
    ``score_last_tier=True`` (then its score is recorded, and it is still returned).
    When the last tier raises, :class:`~langroute.errors.AllRoutesFailedError` carries
    the errors.

    Every attempt is a call of that tier's own LLM (its own LLM events, counted once) and
    a :class:`CascadeTierEvent` (recorded by the ledger handler with ``kind="cascade"``).
    Responses keep the tier's ``raw`` and gain ``additional_kwargs["langroute_cascade"]``
    (read it with :meth:`CascadeResult.from_response`).

    Streams: scored tiers are read to the end before scoring (their chunks are replayed
    if accepted); an unscored last tier streams live.

    Args:
        tiers: LLMs, cheapest first; at least two (the shape of the LangChain
            ``CascadeRunnable``).
        scorer: A scorer, or any callable ``(query, answer) -> float | bool | ScoreResult``
            (sync or async; see :func:`langroute.scorers.as_scorer`).
        threshold: Minimum score to accept an answer: one value, or one per scored tier.
        tier_names: Names used in results and the cost ledger, one per tier (default:
            the tiers' model names).
        score_last_tier: Also score the last tier (recorded; its answer is returned).
        query_extractor: Where to find the question (default: :class:`QueryExtractor`).
        escalate_on: Exception types that make a tier count as rejected; others propagate.
        callback_manager: Shared with every tier's LLM (also when reassigned later).

    Raises:
        RouterConfigError: Fewer than two tiers, duplicate names, or a threshold or
            ``tier_names`` list of the wrong length.

    Example:
        >>> from langroute.scorers import AllOf, NonEmptyValidator, RefusalDetector
        >>> from llama_index.llms.langroute.testing import MockProviderLLM
        >>> cascade = CascadeLLM(
        ...     tiers=[
        ...         MockProviderLLM(model="gpt-4o-mini", script=["Sorry, I can't."]),
        ...         MockProviderLLM(model="gpt-4o", script=["Here is how..."]),
        ...     ],
        ...     tier_names=["small", "large"],
        ...     scorer=AllOf(NonEmptyValidator(), RefusalDetector()),
        ... )
        >>> response = cascade.complete("How do I rotate an API key?")
        >>> result = CascadeResult.from_response(response)
        >>> result.tier_name, result.rejected[0].reason.startswith("rejected: score 0 < 0.5")
        ('large', True)
    """

    tiers: list[LLM] = Field(exclude=True, description="The tiers' LLMs, cheapest first.")
    tier_names: list[str] = Field(description="Tier names, cheapest first.")
    scorer: Any = Field(exclude=True, description="The langroute scorer.")
    thresholds: list[float] = Field(description="Minimum score per tier.")
    score_last_tier: bool = False
    query_extractor: Any = Field(default_factory=QueryExtractor, exclude=True)
    escalate_on: tuple[type[BaseException], ...] = Field(default=(Exception,), exclude=True)

    def __init__(
        self,
        tiers: Sequence[LLM],
        scorer: Scorer | Callable[..., Any],
        threshold: float | Sequence[float] = 0.5,
        *,
        tier_names: Sequence[str] | None = None,
        score_last_tier: bool = False,
        query_extractor: QueryExtractorProtocol | None = None,
        escalate_on: Sequence[type[BaseException]] = (Exception,),
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        llms = list(tiers)
        if len(llms) < 2:
            raise RouterConfigError("a cascade needs at least two tiers, cheapest first")
        names = list(tier_names) if tier_names is not None else None
        if names is not None and len(names) != len(llms):
            raise RouterConfigError(f"tier_names needs {len(llms)} names, got {len(names)}")
        names = names or [llm.metadata.model_name for llm in llms]
        for name in names:
            if names.count(name) > 1:
                raise RouterConfigError(f"two tiers are named {name!r}; pass tier_names")
        scored = len(llms) if score_last_tier else len(llms) - 1
        if isinstance(threshold, (int, float)):
            thresholds = [float(threshold)] * len(llms)
        else:
            thresholds = [float(t) for t in threshold]
            if len(thresholds) not in (scored, len(llms)):
                raise RouterConfigError(
                    f"threshold needs one value or {scored} (one per scored tier), "
                    f"got {len(thresholds)}"
                )
            thresholds += [thresholds[-1]] * (len(llms) - len(thresholds))
        if any(not 0.0 <= t <= 1.0 for t in thresholds):
            raise RouterConfigError(f"thresholds must lie in [0, 1], got {thresholds}")
        if callback_manager is not None:
            kwargs["callback_manager"] = callback_manager
        super().__init__(
            tiers=llms,
            tier_names=names,
            scorer=as_scorer(scorer),
            thresholds=thresholds,
            score_last_tier=score_last_tier,
            query_extractor=query_extractor or QueryExtractor(),
            escalate_on=tuple(escalate_on),
            **kwargs,
        )
        if callback_manager is not None:
            self._share_callback_manager()

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "CascadeLLM"

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "callback_manager":
            self._share_callback_manager()

    def _share_callback_manager(self) -> None:
        tiers = self.__dict__.get("tiers")
        for llm in tiers or []:
            llm.callback_manager = self.callback_manager

    def model_for(self, tier: str) -> str:
        """The model name of a tier's LLM."""
        return self.tiers[self.tier_names.index(tier)].metadata.model_name

    @property
    def baseline_model(self) -> str:
        """The last tier's model."""
        return self.model_for(self.tier_names[-1])

    @property
    def metadata(self) -> LLMMetadata:
        """The smallest limits among the tiers; a chat model only if every tier is one."""
        metas = [llm.metadata for llm in self.tiers]
        return LLMMetadata(
            context_window=min(meta.context_window for meta in metas),
            num_output=min(meta.num_output for meta in metas),
            is_chat_model=all(meta.is_chat_model for meta in metas),
            is_function_calling_model=False,
            model_name="cascade("
            + ",".join(f"{name}={meta.model_name}" for name, meta in zip(self.tier_names, metas))
            + ")",
        )

    # ------------------------------------------------------------------ the question

    def _pinned_query(self) -> tuple[bool, str | None]:
        pinned = _QUERY.get()
        if pinned is not None and pinned[0] == id(self):
            return True, pinned[1]
        return False, None

    def _query_from_messages(self, messages: Sequence[ChatMessage]) -> str | None:
        found, query = self._pinned_query()
        return query if found else self.query_extractor.from_messages(messages)

    def _query_from_prompt(self, prompt: str) -> str | None:
        found, query = self._pinned_query()
        return query if found else self.query_extractor.from_completion(prompt)

    @contextlib.contextmanager
    def _pin(self, prompt: BasePromptTemplate, prompt_args: dict[str, Any]) -> Iterator[None]:
        query = self.query_extractor.from_prompt(prompt, prompt_args)
        token = _QUERY.set((id(self), query))
        try:
            yield
        finally:
            _QUERY.reset(token)

    # ------------------------------------------------------------------ scoring

    def _scored(self, tier: int) -> bool:
        return tier < len(self.tiers) - 1 or self.score_last_tier

    def _score_args(
        self, call: _Call, tier: int, answer: str, logprobs: list[float] | None
    ) -> tuple[tuple[str, str], dict[str, Any]]:
        metadata = {"tier": tier, "tier_name": self.tier_names[tier]}
        return (call.query or "", answer), {"logprobs": logprobs, "metadata": metadata}

    def _attempt(self, tier: int, result: ScoreResult | None) -> CascadeAttempt:
        """Judge one tier's answer (``result`` is ``None`` for an unscored last tier)."""
        name = self.tier_names[tier]
        return judge_attempt(
            tier,
            name,
            self.model_for(name),
            result,
            threshold=self.thresholds[tier],
            last=tier == len(self.tiers) - 1,
        )

    def _judge(self, call: _Call, tier: int, answer: str, logprobs: list[float] | None) -> Any:
        if not self._scored(tier):
            return self._attempt(tier, None), None
        args, kwargs = self._score_args(call, tier, answer, logprobs)
        result = self.scorer(*args, **kwargs)
        return self._attempt(tier, result), result

    async def _ajudge(
        self, call: _Call, tier: int, answer: str, logprobs: list[float] | None
    ) -> Any:
        if not self._scored(tier):
            return self._attempt(tier, None), None
        args, kwargs = self._score_args(call, tier, answer, logprobs)
        result = await self.scorer.ascore(*args, **kwargs)
        return self._attempt(tier, result), result

    # ------------------------------------------------------------------ running tiers

    def _run(self, query: str | None, invoke: Callable[[LLM], R]) -> R:
        call = _Call(self, query)
        for tier, llm in enumerate(self.tiers):
            started = time.perf_counter()
            try:
                response = invoke(llm)
            except self.escalate_on as exc:
                call.failed(tier, exc, started)
                continue
            attempt, result = self._judge(call, tier, _text(response), _logprobs(response))
            call.emit(attempt, response, started, result)
            if attempt.accepted:
                return call.annotate(response, attempt)
        raise call.all_failed()

    async def _arun(self, query: str | None, invoke: Callable[[LLM], Awaitable[R]]) -> R:
        call = _Call(self, query)
        for tier, llm in enumerate(self.tiers):
            started = time.perf_counter()
            try:
                response = await invoke(llm)
            except self.escalate_on as exc:
                call.failed(tier, exc, started)
                continue
            attempt, result = await self._ajudge(call, tier, _text(response), _logprobs(response))
            call.emit(attempt, response, started, result)
            if attempt.accepted:
                return call.annotate(response, attempt)
        raise call.all_failed()

    def _stream(
        self, query: str | None, invoke: Callable[[LLM], Iterator[R]]
    ) -> Generator[R, None, None]:
        call = _Call(self, query)
        for tier, llm in enumerate(self.tiers):
            started = time.perf_counter()
            if self._scored(tier):
                try:
                    chunks = list(invoke(llm))
                except self.escalate_on as exc:
                    call.failed(tier, exc, started)
                    continue
                final = chunks[-1] if chunks else None
                answer = _text(final) if final is not None else ""
                attempt, result = self._judge(call, tier, answer, _merge_logprobs(chunks))
                usage = merge_usage(extract_usage(chunk) for chunk in chunks)
                call.emit(attempt, final, started, result, usage=usage)
                if attempt.accepted:
                    for chunk in chunks:
                        yield call.annotate(chunk, attempt)
                    return
                continue
            # the unscored last tier streams live
            attempt = self._attempt(tier, None)
            try:
                iterator = iter(invoke(llm))
                first = next(iterator, None)
            except self.escalate_on as exc:
                call.failed(tier, exc, started)
                break
            latest = first
            usage = extract_usage(first) if first is not None else None
            error: BaseException | None = None
            try:
                if first is not None:
                    yield call.annotate(first, attempt)
                    for chunk in iterator:
                        latest = chunk
                        usage = merge_usage([usage, extract_usage(chunk)])
                        yield call.annotate(chunk, attempt)
            except GeneratorExit:
                raise
            except BaseException as exc:
                error = exc
                raise
            finally:
                call.emit(attempt, latest, started, None, usage=usage, error=error)
            return
        raise call.all_failed()

    async def _astream(
        self, query: str | None, invoke: Callable[[LLM], Awaitable[AsyncIterator[R]]]
    ) -> AsyncGenerator[R, None]:
        call = _Call(self, query)
        for tier, llm in enumerate(self.tiers):
            started = time.perf_counter()
            if self._scored(tier):
                try:
                    chunks = [chunk async for chunk in await invoke(llm)]
                except self.escalate_on as exc:
                    call.failed(tier, exc, started)
                    continue
                final = chunks[-1] if chunks else None
                answer = _text(final) if final is not None else ""
                attempt, result = await self._ajudge(call, tier, answer, _merge_logprobs(chunks))
                usage = merge_usage(extract_usage(chunk) for chunk in chunks)
                call.emit(attempt, final, started, result, usage=usage)
                if attempt.accepted:
                    for chunk in chunks:
                        yield call.annotate(chunk, attempt)
                    return
                continue
            attempt = self._attempt(tier, None)
            try:
                iterator = (await invoke(llm)).__aiter__()
                try:
                    first: R | None = await iterator.__anext__()
                except StopAsyncIteration:
                    first = None
            except self.escalate_on as exc:
                call.failed(tier, exc, started)
                break
            latest = first
            usage = extract_usage(first) if first is not None else None
            error: BaseException | None = None
            try:
                if first is not None:
                    yield call.annotate(first, attempt)
                    async for chunk in iterator:
                        latest = chunk
                        usage = merge_usage([usage, extract_usage(chunk)])
                        yield call.annotate(chunk, attempt)
            except GeneratorExit:
                raise
            except BaseException as exc:
                error = exc
                raise
            finally:
                call.emit(attempt, latest, started, None, usage=usage, error=error)
            return
        raise call.all_failed()

    # ------------------------------------------------------------------ LLM surface

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Chat through the cascade."""
        query = self._query_from_messages(messages)
        return self._run(query, lambda llm: llm.chat(messages, **kwargs))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat`."""
        query = self._query_from_messages(messages)

        async def invoke(llm: LLM) -> ChatResponse:
            return await llm.achat(messages, **kwargs)

        return await self._arun(query, invoke)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream a chat through the cascade (earlier tiers buffered, the last live)."""
        query = self._query_from_messages(messages)
        return self._stream(query, lambda llm: llm.stream_chat(messages, **kwargs))

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat`."""
        query = self._query_from_messages(messages)

        async def invoke(llm: LLM) -> ChatResponseAsyncGen:
            return await llm.astream_chat(messages, **kwargs)

        return self._astream(query, invoke)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete through the cascade."""
        query = self._query_from_prompt(prompt)
        return self._run(query, lambda llm: llm.complete(prompt, formatted=formatted, **kwargs))

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Async :meth:`complete`."""
        query = self._query_from_prompt(prompt)

        async def invoke(llm: LLM) -> CompletionResponse:
            return await llm.acomplete(prompt, formatted=formatted, **kwargs)

        return await self._arun(query, invoke)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Stream a completion through the cascade."""
        query = self._query_from_prompt(prompt)
        return self._stream(
            query, lambda llm: llm.stream_complete(prompt, formatted=formatted, **kwargs)
        )

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Async :meth:`stream_complete`."""
        query = self._query_from_prompt(prompt)

        async def invoke(llm: LLM) -> CompletionResponseAsyncGen:
            return await llm.astream_complete(prompt, formatted=formatted, **kwargs)

        return self._astream(query, invoke)

    def predict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        """Predict, scoring answers against the template's question (``query_str``)."""
        with self._pin(prompt, prompt_args):
            return super().predict(prompt, **prompt_args)

    async def apredict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        """Async :meth:`predict`."""
        with self._pin(prompt, prompt_args):
            return await super().apredict(prompt, **prompt_args)

    def stream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenGen:
        """Stream tokens, scoring answers against the template's question."""
        with self._pin(prompt, prompt_args):
            return super().stream(prompt, **prompt_args)

    async def astream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenAsyncGen:
        """Async :meth:`stream`."""
        with self._pin(prompt, prompt_args):
            return await super().astream(prompt, **prompt_args)
