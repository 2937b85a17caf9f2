"""``CascadeLLM``: ask the cheapest tier first, keep its answer if a scorer accepts it.

The acceptance rule and the result's shape are the core's (:mod:`langroute.dispatch.cascade`),
shared with the LangChain ``CascadeRunnable``: an answer is accepted when
``score >= threshold`` and the scorer did not fail it (``passed is not False``); the
result is stored under the same key, ``"langroute_cascade"``, with the same fields.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
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
from llama_index.llms.langroute.events import FRAMEWORK, CascadeTierEvent, dispatcher
from llama_index.llms.langroute.query import QueryExtractor, QueryExtractorProtocol
from llama_index.llms.langroute.usage import TokenUsage, extract_usage, merge_usage

from langroute.dispatch.cascade import CASCADE_KEY, CascadeAttempt, CascadeCall, CascadePolicy
from langroute.dispatch.cascade import CascadeResult as _CoreCascadeResult
from langroute.dispatch.escalation import Escalation, max_usage
from langroute.dispatch.routed_call import Attempt
from langroute.router.decision import RouteDecision
from langroute.router.exemplar_router import ExemplarRouter
from langroute.router.learning import CascadeLearner, Exploration
from langroute.scorers import Scorer, as_scorer

__all__ = ["CASCADE_KEY", "CascadeAttempt", "CascadeLLM", "CascadeResult"]


R = TypeVar("R", ChatResponse, CompletionResponse)

# The question of the predict/stream call in progress, for the chat/complete it makes.
_QUERY: ContextVar[tuple[int, str | None] | None] = ContextVar(
    "langroute_cascade_query", default=None
)


class CascadeResult(_CoreCascadeResult):
    r"""Which tier answered a cascade call, and why the earlier tiers were rejected.

    The core :class:`langroute.dispatch.cascade.CascadeResult`, stored as a dict in the answer's
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


async def _one(item: Any) -> AsyncIterator[Any]:
    yield item


class _Buffered:
    """A scored tier's whole stream, read to the end so it can be scored."""

    def __init__(self, chunks: list[Any]) -> None:
        self.chunks = chunks

    @property
    def final(self) -> Any:
        return self.chunks[-1] if self.chunks else None


def _usage_of(item: Any) -> TokenUsage | None:
    if isinstance(item, _Buffered):
        return merge_usage(extract_usage(chunk) for chunk in item.chunks)
    return extract_usage(item)


class _CascadeRun:
    """One cascade call: each tier's verdict, and a :class:`CascadeTierEvent` per attempt."""

    def __init__(
        self, cascade: CascadeLLM, query: str | None, start: RouteDecision | None = None
    ) -> None:
        self.cascade = cascade
        self.policy = cascade.policy
        self.query = query
        self.record = CascadeCall(cascade.policy, escalate_on=cascade.escalate_on, start=start)
        self.responses: dict[str, Any] = {}
        self._results: dict[str, dict[str, Any]] = {}

    def escalation(self) -> Escalation[Any]:
        return self.record.escalation(
            usage_of=_usage_of, merge_usage=max_usage, on_attempt=self.announce
        )

    def _score_args(
        self, name: str, answer: str, logprobs: list[float] | None
    ) -> tuple[tuple[str, str], dict[str, Any]]:
        metadata = {"tier": self.policy.tier(name), "tier_name": name}
        return (self.query or "", answer), {"logprobs": logprobs, "metadata": metadata}

    def _answer(self, name: str, answer: Any) -> tuple[str, list[float] | None] | None:
        """Keep the answer; the text and log-probabilities to score (None: not scored)."""
        if isinstance(answer, _Buffered):
            self.responses[name] = answer.final
            text = _text(answer.final) if answer.final is not None else ""
            logprobs = _merge_logprobs(answer.chunks)
        else:
            self.responses[name] = answer
            text, logprobs = _text(answer), _logprobs(answer)
        return (text, logprobs) if self.policy.scored(self.policy.tier(name)) else None

    def accept(self, name: str, answer: Any) -> bool:
        scored = self._answer(name, answer)
        if scored is None:
            return self.record.verdict(name, None)
        args, kwargs = self._score_args(name, *scored)
        return self.record.verdict(name, self.cascade.scorer(*args, **kwargs))

    async def aaccept(self, name: str, answer: Any) -> bool:
        scored = self._answer(name, answer)
        if scored is None:
            return self.record.verdict(name, None)
        args, kwargs = self._score_args(name, *scored)
        return self.record.verdict(name, await self.cascade.scorer.ascore(*args, **kwargs))

    def announce(self, attempt: Attempt) -> None:
        """Announce a final attempt (the ledger handler records it)."""
        verdict = self.record.attempt_for(attempt)
        metadata: dict[str, Any] = {}
        skipped = self.record.skipped
        if skipped:  # the attached router started the cascade past these tiers
            metadata["skipped_tiers"] = list(skipped)
        if verdict.tier > len(skipped):
            metadata["previous_tier"] = self.policy.tier_names[verdict.tier - 1]
        result = None if attempt.failed else self.record.scores.get(attempt.route)
        if result is not None:
            metadata["score_result"] = result.model_dump()
        response = None if attempt.failed else self.responses.get(attempt.route)
        record = self.record.ledger_record(
            attempt, framework=FRAMEWORK, usage=extract_usage(response)
        )
        dispatcher.event(
            CascadeTierEvent(
                call_id=self.record.call_id,
                record_id=self.record.record_id(verdict.tier_name),
                tier=verdict.tier,
                tier_name=verdict.tier_name,
                model=verdict.model,
                baseline_model=self.policy.baseline_model,
                response=response,
                usage=attempt.usage,
                latency_ms=attempt.latency_ms or 0.0,
                accepted=verdict.accepted and attempt.error is None,
                score=verdict.score,
                reason=verdict.reason,
                error=attempt.error,
                query=self.query,
                metadata=metadata,
                record=record,
            )
        )

    def annotate(self, name: str, response: R) -> R:
        """The tier's response with the cascade result added (its ``raw`` untouched)."""
        if name not in self._results:
            self._results[name] = self.record.result(name).model_dump(mode="json")
        return response.model_copy(
            update={
                "additional_kwargs": {
                    **response.additional_kwargs,
                    CASCADE_KEY: self._results[name],
                }
            }
        )


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
        router: An :class:`~langroute.ExemplarRouter` whose routes are tier names.
            With ``route_past=True``, before the cheap attempt the cascade asks it; when
            its neighbours say the cheaper tiers fail (``escalation >= route_past_at``) the cascade
            starts at the tier it picks (*route, then cascade*): the result's ``skipped`` names the
            tiers not paid for (also ``metadata["skipped_tiers"]`` of the ledger rows),
            and ``cascade.learning.stats`` counts the calls and latency saved.
        learn: With ``router``: each outcome becomes a learned exemplar (see
            :mod:`langroute.router.learning`).
        route_past: With ``router``: skip tiers the router expects to fail. Off by
            default: in the RouteLLM replay (``benchmarks/learning_replay.py``) skipping
            on the starter router's estimates cost more than the cascade alone; turn it
            on once ``route_past_at`` is calibrated on your traffic.
        route_past_at: The escalation estimate needed to skip.
        explore: With ``route_past``: the share of calls the router would skip
            that try the cheaper tiers anyway, decaying (a number or an
            :class:`~langroute.router.learning.Exploration`; 0: never). A wrong skip
            is then learned again from the cheap tier's outcomes.

    Raises:
        RouterConfigError: Fewer than two tiers, duplicate names, a threshold or
            ``tier_names`` list of the wrong length, or router routes that are no tiers.

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
    learning: Any = Field(
        default=None,
        exclude=True,
        description="The attached router's CascadeLearner (None without a router).",
    )

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
        router: ExemplarRouter | None = None,
        learn: bool = False,
        route_past: bool = False,
        route_past_at: float = 0.8,
        explore: float | Exploration = 0.0,
        **kwargs: Any,
    ) -> None:
        llms = list(tiers)
        policy = CascadePolicy.build(
            tier_names,
            [llm.metadata.model_name for llm in llms],
            threshold,
            score_last_tier=score_last_tier,
        )
        if callback_manager is not None:
            kwargs["callback_manager"] = callback_manager
        super().__init__(
            tiers=llms,
            tier_names=policy.tier_names,
            scorer=as_scorer(scorer),
            thresholds=policy.thresholds,
            score_last_tier=score_last_tier,
            query_extractor=query_extractor or QueryExtractor(),
            escalate_on=tuple(escalate_on),
            learning=(
                CascadeLearner(
                    router,
                    policy.tier_names,
                    learn=learn,
                    route_past=route_past,
                    route_past_at=route_past_at,
                    explore=explore,
                )
                if router is not None
                else None
            ),
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

    @property
    def policy(self) -> CascadePolicy:
        """The tiers' names, models and thresholds (the core's cascade rule)."""
        return CascadePolicy(
            tier_names=self.tier_names,
            models=[llm.metadata.model_name for llm in self.tiers],
            thresholds=self.thresholds,
            score_last_tier=self.score_last_tier,
        )

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

    # ------------------------------------------------------------------ running tiers

    def _llm(self, name: str) -> LLM:
        return self.tiers[self.tier_names.index(name)]

    def _plan(self, query: str | None) -> _CascadeRun:
        learning: CascadeLearner | None = self.learning
        return _CascadeRun(self, query, learning.plan(query) if learning is not None else None)

    async def _aplan(self, query: str | None) -> _CascadeRun:
        learning: CascadeLearner | None = self.learning
        start = await learning.aplan(query) if learning is not None else None
        return _CascadeRun(self, query, start)

    def _learn(self, run: _CascadeRun) -> None:
        learning: CascadeLearner | None = self.learning
        if learning is not None:
            learning.learn(run.query, run.record, type(self.scorer).__name__)

    def _run(self, query: str | None, invoke: Callable[[LLM], R]) -> R:
        run = self._plan(query)
        name, response = run.escalation().run(
            lambda tier: invoke(self._llm(tier)), accept=run.accept
        )
        self._learn(run)
        return run.annotate(name, response)

    async def _arun(self, query: str | None, invoke: Callable[[LLM], Awaitable[R]]) -> R:
        run = await self._aplan(query)
        name, response = await run.escalation().arun(
            lambda tier: invoke(self._llm(tier)), accept=run.aaccept
        )
        await asyncio.to_thread(self._learn, run)
        return run.annotate(name, response)

    def _stream(
        self, query: str | None, invoke: Callable[[LLM], Iterator[R]]
    ) -> Generator[R, None, None]:
        run = self._plan(query)

        def open_stream(name: str) -> Iterable[Any]:
            # scored tiers are read to the end (and scored); an unscored last tier is live
            if run.policy.scored(run.policy.tier(name)):
                return [_Buffered(list(invoke(self._llm(name))))]
            return invoke(self._llm(name))

        for name, item in run.escalation().stream(open_stream, accept=run.accept):
            for chunk in item.chunks if isinstance(item, _Buffered) else [item]:
                run.responses[name] = chunk
                yield run.annotate(name, chunk)
        self._learn(run)

    async def _astream(
        self, query: str | None, invoke: Callable[[LLM], Awaitable[AsyncIterator[R]]]
    ) -> AsyncGenerator[R, None]:
        run = await self._aplan(query)

        async def open_stream(name: str) -> AsyncIterator[Any]:
            stream = await invoke(self._llm(name))
            if run.policy.scored(run.policy.tier(name)):
                return _one(_Buffered([chunk async for chunk in stream]))
            return stream

        async for name, item in run.escalation().astream(open_stream, accept=run.aaccept):
            for chunk in item.chunks if isinstance(item, _Buffered) else [item]:
                run.responses[name] = chunk
                yield run.annotate(name, chunk)
        await asyncio.to_thread(self._learn, run)

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
