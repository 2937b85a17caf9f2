"""The paid calls of a labelling run: cached, budgeted, retried, limited, and in the ledger.

:class:`ModelCaller` is the one way a labelling run calls a model:

* **Cache.** A call is keyed by the model (its spec and options) and the prompt. Its
  answer is appended, fsync'd, to a call journal next to the output before the run
  goes on, and read back on start: an identical call (the same model, the same prompt,
  in this run or an earlier one) is never paid twice, and two identical calls in
  flight at once share one request.
* **Budget.** Before a paid call, a conservative estimate (every prompt byte a token,
  plus the call's full output cap, :attr:`ModelSpec.output_token_cap
  <langroute.models.config.ModelSpec.output_token_cap>`) is reserved; a call whose
  reservation would take the spend past the budget is not made
  (:class:`BudgetExhausted`). The spend counts every run on the same output (the
  journal keeps each call's cost), so re-running a stopped or crashed run never spends
  the budget twice. A model that ignores its cap can still cost more than was reserved
  once the call is made: that call is kept, it is an *overrun* (:attr:`ModelCaller.overruns`
  says by how much and why), and with a budget no further call is made.
* **Answers.** A stored answer is cut to ``max_answer_chars`` (``CachedCall.cut_chars``
  says how much was cut), so one huge answer cannot fill the disk or the memory.
* **Timeouts and retries.** A request gets ``timeout`` seconds; a timeout, a rate limit
  or a server error (HTTP 429, 5xx) is retried with exponential backoff and jitter,
  honouring a ``retry-after`` the error carries.
* **Concurrency.** At most ``concurrency`` requests are in flight.
* **Ledger.** Every request (paid or failed) is a :class:`~langroute.costs.LedgerRecord`
  with ``metadata["purpose"] = "labelling"``, so cost reports show labelling spend
  apart from serving spend. A paid call is counted and journalled before anything
  else that could fail, then recorded; a call a crash (or a ledger error) kept out of
  the ledger is recorded when the next run starts (records carry their ``call_key``).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from langroute.costs import CostLedger, LedgerRecord, ModelPrice, Pricer
from langroute.costs.pricing import prompt_token_bound
from langroute.costs.records import LABELLING_PURPOSE, PURPOSE_KEY, UNMEASURED_KEY
from langroute.deadlines import within
from langroute.dispatch.routed_call import TokenUsage, error_text
from langroute.errors import BudgetExhausted, LabellingError
from langroute.files.journal import Journal
from langroute.models.config import CompletionModel

__all__ = [
    "CALL_KEY",
    "LABELLING_PURPOSE",
    "PURPOSE_KEY",
    "BudgetExhausted",
    "CachedCall",
    "ModelCaller",
    "call_key",
    "is_retryable",
]

CALL_KEY = "call_key"
"""Ledger metadata key holding a labelling call's cache key."""

_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
DEFAULT_CALL_TIMEOUT_S = 300.0
"""Seconds a labelling request may take before it is abandoned (and retried)."""
DEFAULT_MAX_ANSWER_CHARS = 200_000
"""The longest answer a labelling run stores (longer ones are cut)."""


class CachedCall(BaseModel):
    """One finished call as the call journal keeps it."""

    model_config = ConfigDict(frozen=True)

    key: str
    model: str
    served_model: str | None = None
    text: str
    usage: TokenUsage | None = None
    cost: float | None = None
    charged: float = 0.0
    """What the budget counts for it: its cost, or its estimate when the cost is unknown."""
    route: str | None = None
    query_id: str | None = None
    role: str = "answer"
    latency_ms: float | None = None
    cut_chars: int = 0
    """Characters cut off the end of the answer (longer than ``max_answer_chars``)."""


def call_key(model_key: str, prompt: str) -> str:
    """The cache key of a call: SHA-256 of the model key and the prompt.

    Example:
        >>> call_key("openai:gpt-4o-mini", "hi") == call_key("openai:gpt-4o-mini", "hi")
        True
    """
    return hashlib.sha256(f"{model_key}\x00{prompt}".encode("utf-8", "surrogatepass")).hexdigest()


def _status_of(error: BaseException) -> int | None:
    for holder in (error, getattr(error, "response", None)):
        for attribute in ("status_code", "status", "http_status"):
            value = getattr(holder, attribute, None)
            if isinstance(value, int):
                return value
    return None


def is_retryable(error: BaseException) -> bool:
    """Whether a provider error is worth retrying: a rate limit, a timeout, a 5xx.

    Example:
        >>> from langroute.models.scripted import ScriptedRateLimitError
        >>> is_retryable(ScriptedRateLimitError("429")), is_retryable(ValueError("bad"))
        (True, False)
    """
    if isinstance(error, (TimeoutError, asyncio.TimeoutError, ConnectionError)):
        return True
    status = _status_of(error)
    if status is not None:
        return status in _RETRY_STATUS
    name = type(error).__name__
    return any(word in name for word in ("RateLimit", "Timeout", "Overloaded", "Connection"))


def _retry_after(error: BaseException) -> float | None:
    """Seconds the provider asked to wait (``retry_after``, ``retry-after[-ms]``)."""
    value = getattr(error, "retry_after", None)
    scale = 1.0
    headers = getattr(getattr(error, "response", None), "headers", None)
    if value is None and isinstance(headers, Mapping):
        value = headers.get("retry-after-ms")
        scale = 0.001
        if value is None:
            value, scale = headers.get("retry-after"), 1.0
    try:
        seconds = float(value) * scale if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP date: fall back to our own backoff
    return seconds if seconds is not None and seconds >= 0 else None


class ModelCaller:
    """Makes the model calls of one labelling run (see the module docstring).

    Args:
        journal: The call journal (``None``: an in-memory cache only).
        ledger: Where every request is recorded (``None``: nowhere).
        pricer: Prices calls and estimates.
        budget: USD the run's output may cost in total (``None``: no limit).
        concurrency: Requests in flight at most.
        max_retries: Retries of a retryable error before the call fails.
        retry_delay: The first backoff in seconds (doubled per retry, with jitter).
        max_retry_delay: The longest single backoff.
        timeout: Seconds one request may take (``None``: no limit); a request past it
            is abandoned and retried like a provider timeout.
        max_answer_chars: Answers are stored (and graded) cut to this many characters.
    """

    def __init__(
        self,
        *,
        journal: Journal | None = None,
        ledger: CostLedger | None = None,
        pricer: Pricer | None = None,
        budget: float | None = None,
        concurrency: int = 16,
        max_retries: int = 6,
        retry_delay: float = 1.0,
        max_retry_delay: float = 60.0,
        timeout: float | None = DEFAULT_CALL_TIMEOUT_S,
        max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if max_answer_chars < 1:
            raise ValueError(f"max_answer_chars must be >= 1, got {max_answer_chars}")
        if budget is not None and not budget >= 0:
            raise ValueError(f"budget must be >= 0 dollars, got {budget}")
        self.journal = journal
        self.ledger = ledger
        self.pricer = pricer or Pricer()
        self.budget = budget
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.timeout = timeout
        self.max_answer_chars = max_answer_chars
        self._limit = asyncio.Semaphore(concurrency)
        self._cache: dict[str, CachedCall] = {}
        self._prices: dict[str, ModelPrice | None] = {}
        self._in_flight: dict[str, asyncio.Future[CachedCall]] = {}
        self.spent_before = 0.0
        self.spent = 0.0
        self.reserved = 0.0
        self.paid_calls = 0
        self.cache_hits = 0
        self.retries = 0
        self.overruns: list[str] = []
        """Why calls cost more than was reserved for them (one line each)."""
        if journal is not None:
            for number, row in enumerate(journal.read(), start=1):
                try:
                    cached = CachedCall.model_validate(row)
                except ValueError as exc:
                    raise LabellingError(
                        f"{journal.path}: record {number} is damaged: {exc}"
                    ) from exc
                self._cache[cached.key] = cached
                self.spent_before += cached.charged
            self._record_missing()

    def _record_missing(self) -> None:
        """Record the journalled calls that a crash kept out of the ledger."""
        if self.ledger is None or not self._cache:
            return
        recorded = {
            record.metadata.get(CALL_KEY) for record in self.ledger.records() if record.labelling
        }
        for cached in self._cache.values():
            if cached.key not in recorded:
                self.ledger.record(self._ledger_record(cached, None))

    @property
    def total_spent(self) -> float:
        """USD charged to the budget over every run on this output."""
        return self.spent_before + self.spent

    @property
    def budget_left(self) -> float | None:
        """USD left of the budget (``None``: no budget)."""
        return None if self.budget is None else max(0.0, self.budget - self.total_spent)

    @property
    def overrun(self) -> float:
        """USD spent past the budget over every run (0.0 when it held or there is none)."""
        return 0.0 if self.budget is None else max(0.0, self.total_spent - self.budget)

    def overrun_reason(self) -> str | None:
        """Why the spend passed the budget, for people (``None`` when it did not).

        Example:
            >>> caller = ModelCaller(budget=1.0)
            >>> caller.spent = 1.5
            >>> caller.overrun_reason()
            'the spend passed the budget'
        """
        if self.overrun <= 0:
            return None
        if self.overruns:
            more = f" (and {len(self.overruns) - 1} more)" if len(self.overruns) > 1 else ""
            return self.overruns[0] + more
        if self.spent_before > (self.budget or 0.0):
            return f"earlier runs on this output already spent ${self.spent_before:.4f}"
        return "the spend passed the budget"

    def price_name(self, model: CompletionModel, price_as: str | None) -> str:
        """The model name calls to ``model`` are priced with."""
        return price_as or model.name

    def estimate(self, price_name: str, prompt: str, max_output_tokens: int) -> float | None:
        """A cost no call of ``prompt`` exceeds (USD), or ``None`` when unpriced."""
        if price_name not in self._prices:
            self._prices[price_name] = self.pricer.price(price_name)
        price = self._prices[price_name]
        if price is None:
            return None
        return price.cost(prompt_token_bound(prompt), max_output_tokens)

    def check_priced(self, names: Mapping[str, str]) -> None:
        """With a budget, every model must have a price.

        Args:
            names: route -> the model name its calls are priced with.

        Raises:
            LabellingError: naming the routes whose model has no known price.
        """
        if self.budget is None:
            return
        unpriced = {route: name for route, name in names.items() if self.pricer.price(name) is None}
        if unpriced:
            listed = ", ".join(f"{route} ({name})" for route, name in unpriced.items())
            raise LabellingError(
                f"no price known for {listed}, so the budget cannot be kept; give the "
                "models file a [prices] entry (or price_as), or drop the budget"
            )

    async def call(
        self,
        route: str,
        model: CompletionModel,
        prompt: str,
        *,
        model_key: str,
        max_output_tokens: int,
        price_as: str | None = None,
        query_id: str | None = None,
        role: str = "answer",
    ) -> CachedCall:
        """The answer of ``model`` to ``prompt``: from the cache, or a paid request.

        Raises:
            BudgetExhausted: the call was not made, to keep the budget.
            Exception: the provider's error, once retries are spent.
        """
        key = call_key(model_key, prompt)
        cached = self._cache.get(key)
        if cached is not None:
            self.cache_hits += 1
            return cached
        running = self._in_flight.get(key)
        if running is not None:
            self.cache_hits += 1
            return await asyncio.shield(running)
        future: asyncio.Future[CachedCall] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            result = await self._request(
                key, route, model, prompt, model_key, max_output_tokens, price_as, query_id, role
            )
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: sharing callers re-raise it themselves
            raise
        finally:
            self._in_flight.pop(key, None)
        future.set_result(result)
        return result

    def _reserve(self, estimate: float) -> None:
        if self.budget is None:
            return
        if self.overruns:
            raise BudgetExhausted(f"no further call after an overrun: {self.overruns[0]}")
        if self.total_spent + self.reserved + estimate > self.budget:
            raise BudgetExhausted(
                f"the next call (up to ${estimate:.6f}) would pass the ${self.budget:.2f} budget"
            )
        self.reserved += estimate

    async def _request(
        self,
        key: str,
        route: str,
        model: CompletionModel,
        prompt: str,
        model_key: str,
        max_output_tokens: int,
        price_as: str | None,
        query_id: str | None,
        role: str,
    ) -> CachedCall:
        price_name = self.price_name(model, price_as)
        estimate = self.estimate(price_name, prompt, max_output_tokens)
        self._reserve(estimate or 0.0)
        try:
            attempt = 0
            while True:
                async with self._limit:
                    started = time.perf_counter()
                    try:
                        completion = await self._complete(model, prompt)
                    except Exception as exc:
                        latency = (time.perf_counter() - started) * 1000
                        if self.ledger is not None:
                            failed = CachedCall(
                                key=key,
                                model=model_key,
                                served_model=model.name,
                                text="",
                                route=route,
                                query_id=query_id,
                                role=role,
                                latency_ms=latency,
                            )
                            await self.ledger.arecord(self._ledger_record(failed, exc))
                        if attempt >= self.max_retries or not is_retryable(exc):
                            raise
                        error = exc
                    else:
                        latency = (time.perf_counter() - started) * 1000
                        break
                attempt += 1
                self.retries += 1
                delay = _retry_after(error)
                if delay is None:
                    delay = min(self.max_retry_delay, self.retry_delay * 2 ** (attempt - 1))
                    delay *= 0.5 + random.random() / 2
                await asyncio.sleep(min(delay, self.max_retry_delay))
            served = completion.model or model.name
            usage = completion.usage
            cost = None
            if usage is not None:
                cost = self.pricer.cost(
                    price_as or served, usage.input_tokens, usage.output_tokens, usage.cached_tokens
                )
            charged = cost if cost is not None else (estimate or 0.0)
            text = completion.text
            cached = CachedCall(
                key=key,
                model=model_key,
                served_model=served,
                text=text[: self.max_answer_chars],
                usage=usage,
                cost=cost,
                charged=charged,
                route=route,
                query_id=query_id,
                role=role,
                latency_ms=latency,
                cut_chars=max(0, len(text) - self.max_answer_chars),
            )
            # paid: counted before anything that can fail, so this run never pays it again
            self._cache[key] = cached
            self.spent += charged
            self.paid_calls += 1
            if estimate is not None and charged > estimate:
                self.overruns.append(
                    self._overrun_text(cached, estimate, max_output_tokens, len(text))
                )
            if self.journal is not None:
                await self.journal.aappend(cached.model_dump(mode="json"))
            if self.ledger is not None:
                try:
                    await self.ledger.arecord(self._ledger_record(cached, None))
                except Exception as exc:  # journalled: the next run records it
                    warnings.warn(
                        f"labelling call {key[:12]} is journalled but not in the ledger "
                        f"({error_text(exc)}); the next run records it",
                        RuntimeWarning,
                        stacklevel=2,
                    )
            return cached
        finally:
            self.reserved -= estimate or 0.0

    async def _complete(self, model: CompletionModel, prompt: str) -> Any:
        """One request, abandoned after ``timeout`` seconds (a retryable TimeoutError)."""
        return await within(model.acomplete(prompt), self.timeout)

    @staticmethod
    def _overrun_text(call: CachedCall, estimate: float, cap: int, answer_chars: int) -> str:
        """One line on a call that cost more than was reserved for it."""
        output = call.usage.output_tokens if call.usage is not None else None
        tokens = (
            f"{output:,} output tokens against a cap of {cap:,}"
            if output is not None
            else f"an answer of {answer_chars:,} characters"
        )
        return (
            f"a call to {call.route!r} ({call.served_model}) cost ${call.charged:.4f}, "
            f"${estimate:.4f} was reserved for it ({tokens})"
        )

    @staticmethod
    def _ledger_record(call: CachedCall, error: BaseException | None) -> LedgerRecord:
        """The ledger row of a paid call (``error=None``) or of a failed request."""
        metadata: dict[str, Any] = {
            PURPOSE_KEY: LABELLING_PURPOSE,
            "role": call.role,
            CALL_KEY: call.key,
        }
        if error is None and call.usage is None:
            metadata[UNMEASURED_KEY] = True
        counted = call.usage or TokenUsage()
        return LedgerRecord(
            framework="core",
            run_id=call.query_id,
            route=call.route,
            model=call.served_model,
            input_tokens=counted.input_tokens,
            output_tokens=counted.output_tokens,
            cached_tokens=counted.cached_tokens,
            cost=call.cost if error is None else 0.0,
            latency_ms=call.latency_ms,
            error=error_text(error) if error is not None else None,
            metadata=metadata,
        )


def default_paths(output: Path) -> tuple[Path, Path]:
    """The call journal and the ledger kept next to an output file."""
    stem = output.name.removesuffix(output.suffix)
    return output.with_name(f"{stem}.calls.jsonl"), output.with_name(f"{stem}.ledger.jsonl")
