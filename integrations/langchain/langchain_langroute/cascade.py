"""CascadeRunnable: ask the cheapest model first, escalate when its answer scores too low.

A cascade is a chain, not a model: every tier is called as its own child model run (so
every paid attempt is traced and counted), the scorer decides whether to accept the
answer, and the result says which tier answered and why earlier tiers were rejected.

Scorers are the framework-neutral ones of :mod:`langroute.scorers` (validators, mean token
probability, LLM judge, router confidence) or any callable ``(query, answer) -> float |
bool | ScoreResult``. This module adds the LangChain glue: :func:`llm_judge` (a judge built
from a chat model) and :func:`extract_logprobs` (token log-probabilities from
``response_metadata["logprobs"]``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import patch_config, var_child_runnable_config
from langroute.dispatch.cascade import (
    CASCADE_KEY,
    CascadeAttempt,
    CascadeCall,
    CascadePolicy,
    CascadeResult,
)
from langroute.dispatch.escalation import Escalation
from langroute.dispatch.routed_call import ROUTE_KEY, Attempt
from langroute.router.decision import RouteDecision
from langroute.router.exemplar_router import ExemplarRouter
from langroute.router.learning import CascadeLearner, Exploration
from langroute.scorers import JudgeScorer, Scorer, as_scorer

from langchain_langroute.chat_models import (
    RoutingChatModel,
)
from langchain_langroute.events import adispatch, dispatch, run_target
from langchain_langroute.query import last_human_message, message_text
from langchain_langroute.route_models import (
    message_chunk,
    model_name_of,
    served_model,
    usage_of,
)

__all__ = [
    "CASCADE_EVENT",
    "CASCADE_METADATA_KEY",
    "CascadeAttempt",
    "CascadeResult",
    "CascadeRunnable",
    "extract_logprobs",
    "get_cascade_result",
    "llm_judge",
]

CASCADE_EVENT = "langroute_cascade_attempt"
"""Name of the custom event dispatched after each cascade attempt."""

CASCADE_METADATA_KEY = CASCADE_KEY
"""Key of the cascade record in the answer's ``response_metadata``."""

# Run metadata given to every run below one attempt (read by CostCallbackHandler).
META_RUN = "langroute_cascade_run"
META_ATTEMPT = "langroute_cascade_attempt"
META_TIER = "langroute_cascade_tier"
META_TIER_NAME = "langroute_cascade_tier_name"
META_ROLE = "langroute_cascade_role"
META_BASELINE = "langroute_cascade_baseline_model"


def get_cascade_result(message: BaseMessage) -> CascadeResult | None:
    """Read the :class:`CascadeResult` of a cascade answer (``None`` if there is none).

    Args:
        message: A message (or merged chunk) returned by :class:`CascadeRunnable`.

    Returns:
        The cascade record, or ``None`` for a message that did not come from a cascade.
    """
    record = (message.response_metadata or {}).get(CASCADE_METADATA_KEY)
    return CascadeResult.model_validate(record) if record else None


def extract_logprobs(message: BaseMessage) -> list[float] | None:
    """Token log-probabilities from ``response_metadata["logprobs"]``, if the model sent them.

    Understands the OpenAI shape (``{"content": [{"token": ..., "logprob": ...}, ...]}``),
    a plain list of such entries, and a plain list of floats.

    Args:
        message: A chat model's answer.

    Returns:
        The log-probabilities in order, or ``None`` when there are none.
    """
    raw: Any = (message.response_metadata or {}).get("logprobs")
    if isinstance(raw, Mapping):
        raw = raw.get("content")
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        return None
    values: list[float] = []
    for entry in raw:
        if isinstance(entry, Mapping) and isinstance(entry.get("logprob"), (int, float)):
            values.append(float(entry["logprob"]))
        elif isinstance(entry, (int, float)) and not isinstance(entry, bool):
            values.append(float(entry))
    return values or None


def llm_judge(
    model: Runnable[LanguageModelInput, BaseMessage],
    *,
    prompt_template: str | None = None,
    scale: tuple[float, float] | None = (0, 10),
    threshold: float | None = None,
    unparseable_score: float = 0.0,
) -> JudgeScorer:
    """An LLM-judge scorer: a (cheap) chat model grades each answer.

    Inside a :class:`CascadeRunnable` the judge's calls are child runs of the cascade
    (tagged ``langroute_cascade_role="judge"``), so a :class:`CostCallbackHandler`
    counts what judging costs.

    Args:
        model: The judge chat model (or any runnable returning a message).
        prompt_template: Grading prompt with ``{query}`` and ``{answer}``; default
            :data:`langroute.scorers.DEFAULT_JUDGE_PROMPT` (asks for "Score: N/10").
        scale: The scale the prompt asks for.
        threshold: When given, the scorer sets ``passed = score >= threshold``.
        unparseable_score: Score of a reply without a readable grade (0.0: escalate).

    Returns:
        A :class:`langroute.scorers.JudgeScorer` calling ``model``.

    Example:
        .. code-block:: python

            judge = llm_judge(ChatOpenAI(model="gpt-4o-mini"))
            cascade = CascadeRunnable(tiers=[cheap, strong], scorer=judge, threshold=0.7)
    """

    def judge(prompt: str) -> str:
        return message_text(model.invoke(prompt, _judge_config()))

    async def ajudge(prompt: str) -> str:
        return message_text(await model.ainvoke(prompt, _judge_config()))

    options: dict[str, Any] = {
        "scale": scale,
        "threshold": threshold,
        "unparseable_score": unparseable_score,
    }
    if prompt_template is not None:
        options["prompt_template"] = prompt_template
    return JudgeScorer(judge, ajudge=ajudge, **options)


def _judge_config() -> RunnableConfig:
    return {"run_name": "cascade_judge", "tags": ["langroute:judge"]}


def _unwrap(runnable: Any) -> Any:
    while isinstance(runnable, RunnableBinding):
        runnable = runnable.bound
    return runnable


def _tier_model_name(tier: Runnable[Any, Any]) -> str:
    inner = _unwrap(tier)
    if isinstance(inner, BaseChatModel):
        return model_name_of(inner)
    return inner.get_name()


def _baseline_model_name(tier: Runnable[Any, Any]) -> str:
    inner = _unwrap(tier)
    if isinstance(inner, RoutingChatModel):
        return model_name_of(inner.models[inner.strongest_route])
    return _tier_model_name(tier)


class CascadeRunnable(Runnable[LanguageModelInput, BaseMessage]):
    """Try the cheapest tier first; escalate while the answer scores below the threshold.

    Tier ``i``'s answer is accepted when its score reaches the threshold and the scorer did
    not fail it outright (``passed is not False``); otherwise the next tier runs. A tier
    that raises (timeout, rate limit, provider error) is rejected and the next one runs.
    The last tier's answer is returned without scoring (nothing stronger is left) unless
    ``score_last_tier=True``, in which case its score is recorded but it is still
    returned. When every tier raises, ``AllRoutesFailedError`` carries the attempts.

    Each attempt is a child model run of the cascade's chain run, so callbacks (usage,
    :class:`~langchain_langroute.callbacks.CostCallbackHandler`) see every paid call.

    The answer is the accepted tier's message with a :class:`CascadeResult` in
    ``response_metadata["langroute_cascade"]`` (see :func:`get_cascade_result`).

    Streaming: an answer can only be scored once complete, so every scored tier is
    buffered; the accepted answer is then emitted as one chunk. The last tier is not
    scored (by default), so when the cascade reaches it, its answer streams live, token by
    token; the cascade record then rides on its first chunk. Every tier stays a traced
    model run: in ``astream_events`` its own ``on_chat_model_stream`` events appear when
    the model streams internally, tagged with ``metadata["langroute_cascade_tier"]``;
    the cascade's own output (``stream``/``astream``, its ``on_chain_stream`` events)
    carries only the accepted answer.

    Setup:
        .. code-block:: bash

            pip install langchain-langroute langchain-openai

    Instantiate:
        .. code-block:: python

            from langchain_openai import ChatOpenAI
            from langroute.scorers import AllOf, NonEmptyValidator, RefusalDetector
            from langchain_langroute import CascadeRunnable

            cascade = CascadeRunnable(
                tiers=[ChatOpenAI(model="gpt-4o-mini"), ChatOpenAI(model="gpt-4o")],
                scorer=AllOf(NonEmptyValidator(), RefusalDetector()),
                threshold=0.5,
            )

    Invoke:
        .. code-block:: python

            msg = cascade.invoke("Summarise the plot of Hamlet in one sentence.")
            get_cascade_result(msg).tier_name  # 'gpt-4o-mini'
            get_cascade_result(msg).rejected  # [] (or the attempts that were rejected)

    Stream:
        .. code-block:: python

            for chunk in cascade.stream("Prove that sqrt(2) is irrational."):
                print(chunk.content, end="")
    """

    def __init__(
        self,
        tiers: Sequence[Runnable[LanguageModelInput, BaseMessage]],
        scorer: Scorer | Callable[..., Any],
        threshold: float | Sequence[float] = 0.5,
        *,
        tier_names: Sequence[str] | None = None,
        query_extractor: Callable[[Sequence[BaseMessage]], str | None] = last_human_message,
        escalate_on: tuple[type[BaseException], ...] = (Exception,),
        score_last_tier: bool = False,
        name: str | None = None,
        router: ExemplarRouter | None = None,
        learn: bool = False,
        route_past: bool = False,
        route_past_at: float = 0.8,
        explore: float | Exploration = 0.0,
    ) -> None:
        """Build a cascade.

        Args:
            tiers: Chat models (or runnables returning a message), cheapest first; at
                least two.
            scorer: A :mod:`langroute.scorers` scorer or any callable
                ``(query, answer) -> float | bool | ScoreResult`` (it may also take
                ``logprobs=`` and ``metadata=``; see :func:`langroute.scorers.as_scorer`).
            threshold: Minimum score to accept an answer: one value, or one per scored
                tier (``len(tiers) - 1``, or ``len(tiers)`` with ``score_last_tier``).
            tier_names: Names used in results and the cost ledger (default: model names).
            query_extractor: Messages -> the question passed to the scorer.
            escalate_on: Errors of a tier that move on to the next tier.
            score_last_tier: Also score the last tier (recorded; its answer is returned).
            name: Run name of the cascade (default ``"CascadeRunnable"``).
            router: An :class:`~langroute.ExemplarRouter` whose routes are tier names.
                With ``route_past=True``, before the cheap attempt the cascade asks it;
                when its neighbours say the cheaper tiers fail (``escalation >= route_past_at``) the
                cascade starts at the tier it picks (*route, then cascade*): the result's
                ``skipped`` names the tiers not paid for, the ledger rows' reason is
                ``"routed_past"``, and ``cascade.learning.stats`` counts calls and
                latency saved.
            learn: With ``router``: each outcome becomes a learned exemplar (see
                :mod:`langroute.router.learning`; accepted cheap answer -> good, rejected -> not).
            route_past: With ``router``: skip tiers the router expects to fail. Off by
                default: in the RouteLLM replay (``benchmarks/learning_replay.py``) skipping on the
                starter router's estimates cost more than the cascade alone; turn it on once
                ``route_past_at`` is calibrated on your traffic.
            route_past_at: The escalation estimate needed to skip.
            explore: With ``route_past``: the share of calls the router would skip
                that try the cheaper tiers anyway, decaying (a number or an
                :class:`~langroute.router.learning.Exploration`; 0: never). A wrong skip
                is then learned again from the cheap tier's outcomes.

        Raises:
            RouterConfigError: Fewer than two tiers, or thresholds/names of the wrong length
                (a ``ValueError``), or router routes that are no tier names.
        """
        self.tiers: list[Runnable[LanguageModelInput, BaseMessage]] = list(tiers)
        models = [_tier_model_name(tier) for tier in self.tiers]
        self.policy = CascadePolicy.build(
            tier_names,
            models,
            threshold,
            score_last_tier=score_last_tier,
            baseline_model=_baseline_model_name(self.tiers[-1]) if self.tiers else None,
        )
        self.scorer: Scorer = as_scorer(scorer)
        self.query_extractor = query_extractor
        self.escalate_on = escalate_on
        self.score_last_tier = score_last_tier
        self.name = name or "CascadeRunnable"
        self.learning: CascadeLearner | None = (
            CascadeLearner(
                router,
                self.policy.tier_names,
                learn=learn,
                route_past=route_past,
                route_past_at=route_past_at,
                explore=explore,
            )
            if router is not None
            else None
        )
        """The attached router's planner and learner (``None`` without ``router``)."""

    @property
    def tier_names(self) -> list[str]:
        """Tier names, cheapest first (used in results and the cost ledger)."""
        return self.policy.tier_names

    @property
    def thresholds(self) -> list[float]:
        """The minimum score per tier."""
        return self.policy.thresholds

    @property
    def baseline_model(self) -> str:
        """The model savings are measured against (the strongest tier's)."""
        return self.policy.baseline_model

    def __repr__(self) -> str:
        return f"CascadeRunnable(tiers={self.tier_names}, thresholds={self.thresholds})"

    @property
    def InputType(self) -> Any:
        """The input type: anything a chat model accepts."""
        return LanguageModelInput

    @property
    def OutputType(self) -> Any:
        """The output type: the accepted answer message."""
        return BaseMessage

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _messages(input: LanguageModelInput) -> list[BaseMessage]:
        if isinstance(input, str):
            return [HumanMessage(input)]
        if isinstance(input, PromptValue):
            return input.to_messages()
        if isinstance(input, BaseMessage):
            return [input]
        from langchain_core.messages import convert_to_messages

        return list(convert_to_messages(input))

    def _score_inputs(
        self, messages: list[BaseMessage], answer: BaseMessage, tier: int
    ) -> tuple[str, str, list[float] | None, dict[str, Any]]:
        query = self.query_extractor(messages) or ""
        metadata: dict[str, Any] = {
            "tier": tier,
            "tier_name": self.tier_names[tier],
            "model": self.policy.models[tier],
            "response_metadata": dict(answer.response_metadata or {}),
        }
        routing = (answer.response_metadata or {}).get(ROUTE_KEY)
        if isinstance(routing, Mapping) and "confidence" in routing:
            metadata["confidence"] = routing["confidence"]
        return query, message_text(answer), extract_logprobs(answer), metadata

    def _event(self, attempt: CascadeAttempt, attempt_id: str, record_id: str) -> dict[str, Any]:
        return {
            **attempt.model_dump(),
            "attempt_id": attempt_id,
            "record_id": record_id,
            "baseline_model": self.baseline_model,
        }

    def _run(
        self,
        messages: list[BaseMessage],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        stream_last: bool,
        kwargs: dict[str, Any],
    ) -> Iterator[BaseMessage | AIMessageChunk]:
        """Run the tiers; yield the accepted answer (or the last tier's live chunks)."""
        query = self.query_extractor(messages) if self.learning is not None else None
        start = self.learning.plan(query) if self.learning is not None else None
        run = _CascadeRun(self, messages, run_manager, config, kwargs, start)
        if not stream_last:
            name, answer = run.escalation().run(run.invoke, accept=run.accept)
            self._learn(query, run)
            yield run.with_result(name, answer)
            return
        first = True
        for name, chunk in run.escalation().stream(run.open_stream, accept=run.accept):
            yield run.with_result(name, chunk) if first else chunk
            first = False
        self._learn(query, run)

    def _learn(self, query: str | None, run: _CascadeRun) -> None:
        if self.learning is not None:
            self.learning.learn(query, run.record, type(self.scorer).__name__)

    def _invoke(
        self,
        input: LanguageModelInput,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> BaseMessage:
        messages = self._messages(input)
        for answer in self._run(messages, run_manager, config, stream_last=False, kwargs=kwargs):
            return answer
        raise RuntimeError("cascade produced no answer")  # pragma: no cover - _run yields or raises

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Run the cascade and return the accepted answer (with its :class:`CascadeResult`)."""
        return self._call_with_config(self._invoke, input, config, **kwargs)

    def _transform(
        self,
        inputs: Iterator[LanguageModelInput],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        items = list(inputs)
        if len(items) != 1:
            raise ValueError(f"CascadeRunnable streams one input at a time, got {len(items)}")
        messages = self._messages(items[0])
        for output in self._run(messages, run_manager, config, stream_last=True, kwargs=kwargs):
            yield message_chunk(output)

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        """Stream the accepted answer (scored tiers are buffered; the last tier streams live)."""
        yield from self._transform_stream_with_config(
            iter([input]), self._transform, config, **kwargs
        )

    def transform(
        self,
        input: Iterator[LanguageModelInput],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """Stream from an input iterator (LCEL streaming); see :meth:`stream`."""
        yield from self._transform_stream_with_config(input, self._transform, config, **kwargs)

    # ------------------------------------------------------------------ async core
    async def _arun(
        self,
        messages: list[BaseMessage],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        stream_last: bool,
        kwargs: dict[str, Any],
    ) -> AsyncIterator[BaseMessage | AIMessageChunk]:
        query = self.query_extractor(messages) if self.learning is not None else None
        start = await self.learning.aplan(query) if self.learning is not None else None
        run = _CascadeRun(self, messages, run_manager, config, kwargs, start)
        if not stream_last:
            name, answer = await run.escalation(asynchronous=True).arun(
                run.ainvoke, accept=run.aaccept
            )
            await asyncio.to_thread(self._learn, query, run)
            yield run.with_result(name, answer)
            return
        first = True
        async for name, chunk in run.escalation(asynchronous=True).astream(
            run.aopen_stream, accept=run.aaccept
        ):
            yield run.with_result(name, chunk) if first else chunk
            first = False
        await asyncio.to_thread(self._learn, query, run)

    async def _ainvoke(
        self,
        input: LanguageModelInput,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> BaseMessage:
        messages = self._messages(input)
        async for answer in self._arun(
            messages, run_manager, config, stream_last=False, kwargs=kwargs
        ):
            return answer
        raise RuntimeError("cascade produced no answer")  # pragma: no cover

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Async :meth:`invoke`."""
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    async def _atransform(
        self,
        inputs: AsyncIterator[LanguageModelInput],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        items = [item async for item in inputs]
        if len(items) != 1:
            raise ValueError(f"CascadeRunnable streams one input at a time, got {len(items)}")
        messages = self._messages(items[0])
        async for output in self._arun(
            messages, run_manager, config, stream_last=True, kwargs=kwargs
        ):
            yield message_chunk(output)

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        """Async :meth:`stream`."""

        async def single() -> AsyncIterator[LanguageModelInput]:
            yield input

        async for chunk in self._atransform_stream_with_config(
            single(), self._atransform, config, **kwargs
        ):
            yield chunk

    async def atransform(
        self,
        input: AsyncIterator[LanguageModelInput],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """Async :meth:`transform`."""
        async for chunk in self._atransform_stream_with_config(
            input, self._atransform, config, **kwargs
        ):
            yield chunk


class _CascadeRun:
    """One cascade call: each tier a child run, each final attempt a custom event."""

    def __init__(
        self,
        cascade: CascadeRunnable,
        messages: list[BaseMessage],
        run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        kwargs: dict[str, Any],
        start: RouteDecision | None = None,
    ) -> None:
        self.cascade = cascade
        self.policy = cascade.policy
        self.messages = messages
        self.run_manager = run_manager
        self.config = config
        self.kwargs = kwargs
        # the chain run's id names the call: its ledger rows and its trace share it
        self.record = CascadeCall(
            cascade.policy,
            escalate_on=cascade.escalate_on,
            start=start,
            call_id=str(run_manager.run_id),
        )
        self.attempt_ids: dict[str, str] = {}

    def escalation(self, *, asynchronous: bool = False) -> Escalation[Any]:
        return self.record.escalation(
            usage_of=usage_of,
            model_of=served_model,
            on_attempt=self.aannounce if asynchronous else self.announce,
        )

    # ------------------------------------------------------------------ one tier
    def _config(self, name: str, role: Literal["tier", "judge"]) -> RunnableConfig:
        if role == "tier":
            self.attempt_ids[name] = uuid.uuid4().hex
        tier = self.policy.tier(name)
        run_manager = self.run_manager
        child = patch_config(self.config, callbacks=run_manager.get_child(f"{role}:{tier}"))
        child["metadata"] = {
            **(child.get("metadata") or {}),
            META_RUN: str(run_manager.run_id),
            META_ATTEMPT: self.attempt_ids[name],
            META_TIER: tier,
            META_TIER_NAME: name,
            META_ROLE: role,
            META_BASELINE: self.cascade.baseline_model,
        }
        return child

    def _runnable(self, name: str) -> Runnable[LanguageModelInput, BaseMessage]:
        return self.cascade.tiers[self.policy.tier(name)]

    def invoke(self, name: str) -> BaseMessage:
        return self._runnable(name).invoke(self.messages, self._config(name, "tier"), **self.kwargs)

    async def ainvoke(self, name: str) -> BaseMessage:
        return await self._runnable(name).ainvoke(
            self.messages, self._config(name, "tier"), **self.kwargs
        )

    def open_stream(self, name: str) -> Iterable[BaseMessage]:
        """A scored tier's answer buffered into one item; an unscored last tier live."""
        if self.policy.scored(self.policy.tier(name)):
            return [self.invoke(name)]
        return self._runnable(name).stream(self.messages, self._config(name, "tier"), **self.kwargs)

    def aopen_stream(self, name: str) -> AsyncIterator[BaseMessage]:
        if self.policy.scored(self.policy.tier(name)):
            return self._abuffered(name)
        return self._runnable(name).astream(
            self.messages, self._config(name, "tier"), **self.kwargs
        )

    async def _abuffered(self, name: str) -> AsyncIterator[BaseMessage]:
        yield await self.ainvoke(name)

    # ------------------------------------------------------------------ verdicts
    def _checked(self, name: str, answer: Any) -> BaseMessage:
        if not isinstance(answer, BaseMessage):
            raise TypeError(
                f"cascade tier {name!r} returned {type(answer).__name__}; "
                "tiers must return a message (use chat models or runnables ending in one)"
            )
        return answer

    def _judge_config(self, name: str) -> Any:
        # LangChain calls made by the scorer (an LLM judge) become child runs of the cascade.
        return var_child_runnable_config.set(self._config(name, "judge"))

    def accept(self, name: str, answer: Any) -> bool:
        message = self._checked(name, answer)
        tier = self.policy.tier(name)
        if not self.policy.scored(tier):
            return self.record.verdict(name, None)
        query, text, logprobs, metadata = self.cascade._score_inputs(self.messages, message, tier)
        token = self._judge_config(name)
        try:
            result = self.cascade.scorer(query, text, logprobs=logprobs, metadata=metadata)
        finally:
            var_child_runnable_config.reset(token)
        return self.record.verdict(name, result)

    async def aaccept(self, name: str, answer: Any) -> bool:
        message = self._checked(name, answer)
        tier = self.policy.tier(name)
        if not self.policy.scored(tier):
            return self.record.verdict(name, None)
        query, text, logprobs, metadata = self.cascade._score_inputs(self.messages, message, tier)
        token = self._judge_config(name)
        try:
            result = await self.cascade.scorer.ascore(
                query, text, logprobs=logprobs, metadata=metadata
            )
        finally:
            var_child_runnable_config.reset(token)
        return self.record.verdict(name, result)

    # ------------------------------------------------------------------ records
    def _event_data(self, attempt: Attempt) -> dict[str, Any]:
        data = self.cascade._event(
            self.record.attempt_for(attempt),
            self.attempt_ids.get(attempt.route, ""),
            self.record.record_id(attempt.route),
        )
        return {
            **data,
            "skipped": list(self.record.skipped),
            "row": self.record.row_fields(attempt),
        }

    def announce(self, attempt: Attempt) -> None:
        dispatch(CASCADE_EVENT, self._event_data(attempt), run_target(self.run_manager))

    async def aannounce(self, attempt: Attempt) -> None:
        target = run_target(self.run_manager, asynchronous=True)
        await adispatch(CASCADE_EVENT, self._event_data(attempt), target)

    def with_result(self, name: str, answer: BaseMessage) -> BaseMessage:
        """The answer (or first chunk) with the cascade record in its metadata."""
        message = self._checked(name, answer)
        metadata = {
            **(message.response_metadata or {}),
            CASCADE_METADATA_KEY: self.record.result(name).model_dump(),
        }
        return message.model_copy(update={"response_metadata": metadata})
