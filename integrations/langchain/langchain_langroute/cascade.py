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

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForChainRun,
    CallbackManager,
    CallbackManagerForChainRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import patch_config, var_child_runnable_config
from langroute.calls import ROUTE_KEY
from langroute.cascade import (
    CASCADE_KEY,
    CascadeAttempt,
    CascadeResult,
    failed_attempt,
    judge_attempt,
)
from langroute.errors import AllRoutesFailedError, RouterConfigError
from langroute.scorers import JudgeScorer, Scorer, ScoreResult, as_scorer

from langchain_langroute.chat_models import RoutingChatModel, _model_name_of
from langchain_langroute.query import last_human_message, message_text

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
        return _model_name_of(inner)
    return inner.get_name()


def _baseline_model_name(tier: Runnable[Any, Any]) -> str:
    inner = _unwrap(tier)
    if isinstance(inner, RoutingChatModel):
        return _model_name_of(inner.models[inner.strongest_route])
    return _tier_model_name(tier)


def _to_chunk(message: BaseMessage) -> AIMessageChunk:
    """One chunk holding a whole (buffered) answer."""
    if isinstance(message, AIMessageChunk):
        return message
    tool_calls = getattr(message, "tool_calls", None) or []
    return AIMessageChunk(
        content=message.content,
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
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

        Raises:
            RouterConfigError: Fewer than two tiers, or thresholds/names of the wrong length
                (a ``ValueError``).
        """
        if len(tiers) < 2:
            raise RouterConfigError("a cascade needs at least two tiers, cheapest first")
        self.tiers: list[Runnable[LanguageModelInput, BaseMessage]] = list(tiers)
        self.scorer: Scorer = as_scorer(scorer)
        scored = len(self.tiers) if score_last_tier else len(self.tiers) - 1
        if isinstance(threshold, (int, float)):
            thresholds = [float(threshold)] * len(self.tiers)
        else:
            thresholds = [float(t) for t in threshold]
            if len(thresholds) not in (scored, len(self.tiers)):
                raise RouterConfigError(
                    f"threshold needs one value or {scored} (one per scored tier), "
                    f"got {len(thresholds)}"
                )
            thresholds += [thresholds[-1]] * (len(self.tiers) - len(thresholds))
        self.thresholds = thresholds
        names = list(tier_names) if tier_names is not None else None
        if names is not None and len(names) != len(self.tiers):
            raise RouterConfigError(f"tier_names needs {len(self.tiers)} names, got {len(names)}")
        self.tier_names = names or [_tier_model_name(tier) for tier in self.tiers]
        self.query_extractor = query_extractor
        self.escalate_on = escalate_on
        self.score_last_tier = score_last_tier
        self.name = name or "CascadeRunnable"
        self.baseline_model = _baseline_model_name(self.tiers[-1])

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

    def _attempt_config(
        self,
        config: RunnableConfig,
        run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun,
        tier: int,
        attempt_id: str,
        role: Literal["tier", "judge"],
    ) -> RunnableConfig:
        child = patch_config(config, callbacks=run_manager.get_child(f"{role}:{tier}"))
        child["metadata"] = {
            **(child.get("metadata") or {}),
            META_RUN: str(run_manager.run_id),
            META_ATTEMPT: attempt_id,
            META_TIER: tier,
            META_TIER_NAME: self.tier_names[tier],
            META_ROLE: role,
            META_BASELINE: self.baseline_model,
        }
        return child

    def _score_inputs(
        self, messages: list[BaseMessage], answer: BaseMessage, tier: int
    ) -> tuple[str, str, list[float] | None, dict[str, Any]]:
        query = self.query_extractor(messages) or ""
        metadata: dict[str, Any] = {
            "tier": tier,
            "tier_name": self.tier_names[tier],
            "model": _tier_model_name(self.tiers[tier]),
            "response_metadata": dict(answer.response_metadata or {}),
        }
        routing = (answer.response_metadata or {}).get(ROUTE_KEY)
        if isinstance(routing, Mapping) and "confidence" in routing:
            metadata["confidence"] = routing["confidence"]
        return query, message_text(answer), extract_logprobs(answer), metadata

    def _judge(
        self, result: ScoreResult | None, tier: int, last: bool, error: BaseException | None
    ) -> CascadeAttempt:
        name = self.tier_names[tier]
        model = _tier_model_name(self.tiers[tier])
        if error is not None:
            return failed_attempt(tier, name, model, error)
        return judge_attempt(tier, name, model, result, threshold=self.thresholds[tier], last=last)

    def _event(self, attempt: CascadeAttempt, attempt_id: str) -> dict[str, Any]:
        return {
            **attempt.model_dump(),
            "attempt_id": attempt_id,
            "baseline_model": self.baseline_model,
        }

    @staticmethod
    def _emit(run_manager: CallbackManagerForChainRun, data: dict[str, Any]) -> None:
        CallbackManager(
            handlers=run_manager.handlers,
            inheritable_handlers=run_manager.inheritable_handlers,
            parent_run_id=run_manager.parent_run_id,
            tags=run_manager.tags,
            inheritable_tags=run_manager.inheritable_tags,
            metadata=run_manager.metadata,
            inheritable_metadata=run_manager.inheritable_metadata,
        ).on_custom_event(CASCADE_EVENT, data, run_id=run_manager.run_id)

    @staticmethod
    async def _aemit(run_manager: AsyncCallbackManagerForChainRun, data: dict[str, Any]) -> None:
        await AsyncCallbackManager(
            handlers=run_manager.handlers,
            inheritable_handlers=run_manager.inheritable_handlers,
            parent_run_id=run_manager.parent_run_id,
            tags=run_manager.tags,
            inheritable_tags=run_manager.inheritable_tags,
            metadata=run_manager.metadata,
            inheritable_metadata=run_manager.inheritable_metadata,
        ).on_custom_event(CASCADE_EVENT, data, run_id=run_manager.run_id)

    def _result(self, tier: int, attempts: list[CascadeAttempt]) -> dict[str, Any]:
        return CascadeResult(
            tier=tier,
            tier_name=self.tier_names[tier],
            model=_tier_model_name(self.tiers[tier]),
            reason=attempts[-1].reason,
            attempts=attempts,
        ).model_dump()

    def _with_result(
        self, answer: BaseMessage, tier: int, attempts: list[CascadeAttempt]
    ) -> BaseMessage:
        if not isinstance(answer, BaseMessage):
            raise TypeError(
                f"cascade tier {self.tier_names[tier]!r} returned {type(answer).__name__}; "
                "tiers must return a message (use chat models or runnables ending in one)"
            )
        metadata = {**(answer.response_metadata or {})}
        metadata[CASCADE_METADATA_KEY] = self._result(tier, attempts)
        return answer.model_copy(update={"response_metadata": metadata})

    def _give_up(self, attempts: list[CascadeAttempt], errors: list[BaseException]) -> None:
        failed = [a for a in attempts if a.error is not None]
        pairs = [(a.tier_name, e) for a, e in zip(failed, errors, strict=True)]
        tried = "; ".join(f"{a.tier_name}: {a.reason}" for a in attempts)
        raise AllRoutesFailedError(
            f"no cascade tier produced an answer ({tried})", pairs
        ) from errors[-1]

    def _score(
        self,
        config: RunnableConfig,
        run_manager: CallbackManagerForChainRun,
        messages: list[BaseMessage],
        answer: BaseMessage,
        tier: int,
        attempt_id: str,
    ) -> ScoreResult:
        query, text, logprobs, metadata = self._score_inputs(messages, answer, tier)
        # LangChain calls made by the scorer (an LLM judge) become child runs of the cascade.
        token = var_child_runnable_config.set(
            self._attempt_config(config, run_manager, tier, attempt_id, "judge")
        )
        try:
            return self.scorer(query, text, logprobs=logprobs, metadata=metadata)
        finally:
            var_child_runnable_config.reset(token)

    async def _ascore(
        self,
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForChainRun,
        messages: list[BaseMessage],
        answer: BaseMessage,
        tier: int,
        attempt_id: str,
    ) -> ScoreResult:
        query, text, logprobs, metadata = self._score_inputs(messages, answer, tier)
        token = var_child_runnable_config.set(
            self._attempt_config(config, run_manager, tier, attempt_id, "judge")
        )
        try:
            return await self.scorer.ascore(query, text, logprobs=logprobs, metadata=metadata)
        finally:
            var_child_runnable_config.reset(token)

    # ------------------------------------------------------------------ sync core
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
        attempts: list[CascadeAttempt] = []
        errors: list[BaseException] = []
        for tier, runnable in enumerate(self.tiers):
            last = tier == len(self.tiers) - 1
            attempt_id = uuid.uuid4().hex
            tier_config = self._attempt_config(config, run_manager, tier, attempt_id, "tier")
            if last and stream_last and not self.score_last_tier:
                yield from self._stream_last(
                    runnable, messages, tier_config, run_manager, attempts, attempt_id, kwargs
                )
                return
            try:
                answer = runnable.invoke(messages, tier_config, **kwargs)
            except self.escalate_on as error:
                attempt = self._judge(None, tier, last, error)
                attempts.append(attempt)
                errors.append(error)
                self._emit(run_manager, self._event(attempt, attempt_id))
                continue
            result = (
                self._score(config, run_manager, messages, answer, tier, attempt_id)
                if not last or self.score_last_tier
                else None
            )
            attempt = self._judge(result, tier, last, None)
            attempts.append(attempt)
            self._emit(run_manager, self._event(attempt, attempt_id))
            if attempt.accepted:
                yield self._with_result(answer, tier, attempts)
                return
        self._give_up(attempts, errors)

    def _stream_last(
        self,
        runnable: Runnable[LanguageModelInput, BaseMessage],
        messages: list[BaseMessage],
        tier_config: RunnableConfig,
        run_manager: CallbackManagerForChainRun,
        attempts: list[CascadeAttempt],
        attempt_id: str,
        kwargs: dict[str, Any],
    ) -> Iterator[AIMessageChunk]:
        tier = len(self.tiers) - 1
        attempt = self._judge(None, tier, True, None)
        record = self._result(tier, [*attempts, attempt])
        first = True
        try:
            for chunk in runnable.stream(messages, tier_config, **kwargs):
                if first:
                    metadata = {**(chunk.response_metadata or {}), CASCADE_METADATA_KEY: record}
                    chunk = chunk.model_copy(update={"response_metadata": metadata})
                    first = False
                yield chunk
        except self.escalate_on as error:
            failed = self._judge(None, tier, True, error)
            self._emit(run_manager, self._event(failed, attempt_id))
            raise
        self._emit(run_manager, self._event(attempt, attempt_id))

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
            yield _to_chunk(output)

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
        attempts: list[CascadeAttempt] = []
        errors: list[BaseException] = []
        for tier, runnable in enumerate(self.tiers):
            last = tier == len(self.tiers) - 1
            attempt_id = uuid.uuid4().hex
            tier_config = self._attempt_config(config, run_manager, tier, attempt_id, "tier")
            if last and stream_last and not self.score_last_tier:
                attempt = self._judge(None, tier, True, None)
                record = self._result(tier, [*attempts, attempt])
                first = True
                try:
                    async for chunk in runnable.astream(messages, tier_config, **kwargs):
                        if first:
                            metadata = {
                                **(chunk.response_metadata or {}),
                                CASCADE_METADATA_KEY: record,
                            }
                            chunk = chunk.model_copy(update={"response_metadata": metadata})
                            first = False
                        yield chunk
                except self.escalate_on as error:
                    failed = self._judge(None, tier, True, error)
                    await self._aemit(run_manager, self._event(failed, attempt_id))
                    raise
                await self._aemit(run_manager, self._event(attempt, attempt_id))
                return
            try:
                answer = await runnable.ainvoke(messages, tier_config, **kwargs)
            except self.escalate_on as error:
                attempt = self._judge(None, tier, last, error)
                attempts.append(attempt)
                errors.append(error)
                await self._aemit(run_manager, self._event(attempt, attempt_id))
                continue
            result = (
                await self._ascore(config, run_manager, messages, answer, tier, attempt_id)
                if not last or self.score_last_tier
                else None
            )
            attempt = self._judge(result, tier, last, None)
            attempts.append(attempt)
            await self._aemit(run_manager, self._event(attempt, attempt_id))
            if attempt.accepted:
                yield self._with_result(answer, tier, attempts)
                return
        self._give_up(attempts, errors)

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
            yield _to_chunk(output)

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
