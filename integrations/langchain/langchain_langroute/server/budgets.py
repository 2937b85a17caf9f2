"""Budgets of ``langroute serve`` as reservations, and the charge of an abandoned stream.

Before a call, :class:`Budgets` reserves the call's worst case against the key's
budget: every input token the body can hold (:func:`~langroute.costs.pricing.prompt_token_bound`,
plus :data:`MEDIA_PART_TOKENS` for each image, audio or file part, which a URL or a
reference does not bound) plus the answer's cap (the request's ``max_tokens``, else the
route's :attr:`~langroute.models.config.ModelSpec.output_token_cap`), at the price of the
dearest route the call may reach (tiered prices included). A key is
admitted while its spend plus what its running calls hold is below its budget; the
reservation is released once the call's real cost was counted. So concurrent requests
see each other, and a budget is passed by at most one call's worst case.

A stream the client leaves before its end is charged for what it was sent
(:class:`StreamTally`): one output token per relayed chunk, the input estimated from the
body, the row marked ``estimated``.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from langroute.costs import CostLedger, LedgerRecord, Pricer
from langroute.costs.pricing import prompt_token_bound
from langroute.models.config import ModelSpec
from langroute.serving.keys import ApiKey

from langchain_langroute.callbacks import RECORD_ID_METADATA, CostCallbackHandler
from langchain_langroute.server.access import Spend

__all__ = [
    "ESTIMATED_METADATA",
    "MEDIA_PART_TOKENS",
    "Budgets",
    "MemoryLedgerBudgetWarning",
    "Reservation",
    "StreamChargingHandler",
    "StreamTallies",
    "StreamTally",
    "media_parts",
]

ESTIMATED_METADATA = "estimated"
"""Ledger ``metadata`` key: the row's tokens are estimated (a stream left unfinished)."""
_BYTES_PER_TOKEN = 4  # a typical tokenizer's average, for estimates (not bounds)
MEDIA_PART_TOKENS = 10_000
"""Input tokens reserved for one non-text content part (an image, audio or a file): its
bytes in the request (often a URL) do not bound what the provider bills for it."""


def media_parts(messages: Sequence[Any]) -> int:
    """How many content parts of ``messages`` are not text (images, audio, files).

    Example:
        >>> media_parts([{"role": "user", "content": [
        ...     {"type": "text", "text": "what is this?"},
        ...     {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}])
        1
    """
    count = 0
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            count += sum(
                1 for part in content if isinstance(part, Mapping) and part.get("type") != "text"
            )
    return count


class MemoryLedgerBudgetWarning(UserWarning):
    """Keys with budgets on a ``"memory"`` ledger: every restart resets every budget."""


@dataclass
class Reservation:
    """What a running call holds of its key's budget (release it once, after the call)."""

    key: ApiKey
    amount: float
    period: datetime
    released: bool = False


class Budgets:
    """Admits calls against their key's budget by reserving their worst case.

    Args:
        spend: The keys' spend (real costs are added to it by the cost handler).
        pricer: The ledger's pricer (the one owner of prices).
        specs: Route -> its spec (price name, output cap, options).
    """

    def __init__(self, spend: Spend, pricer: Pricer, specs: Mapping[str, ModelSpec]) -> None:
        self.spend = spend
        self.pricer = pricer
        self._specs = dict(specs)

    def output_cap(self, route: str, max_tokens: int | None) -> int:
        """The most output tokens a call of ``route`` can be charged for."""
        if max_tokens is not None:
            return max_tokens
        spec = self._specs.get(route)
        return spec.output_token_cap if spec is not None else 0

    def worst_case(
        self, body: bytes, max_tokens: int | None, routes: Sequence[str], media: int = 0
    ) -> float:
        """The most a call can cost (USD) on any of ``routes`` (unpriced routes: 0).

        ``media``: the request's non-text content parts (:func:`media_parts`).

        Example:
            >>> from langroute.models.config import ModelSpec
            >>> spec = ModelSpec(route="a", spec="x", kind="chat", max_output_tokens=100)
            >>> prices = Pricer({"x": {"input_per_mtok": 1e6, "output_per_mtok": 1e6}})
            >>> Budgets(Spend(), prices, {"a": spec}).worst_case(b"hi", None, ["a"])
            134.0
        """
        input_tokens = prompt_token_bound(body) + media * MEDIA_PART_TOKENS
        worst = 0.0
        for route in routes:
            spec = self._specs.get(route)
            if spec is None:
                continue
            cap = self.output_cap(route, max_tokens)
            cost = self.pricer.cost(spec.price_as or spec.spec, input_tokens, cap)
            worst = max(worst, cost or 0.0)
        return worst

    def reserve(self, key: ApiKey | None, amount: float) -> Reservation | bool:
        """Reserve ``amount`` for a call of ``key``.

        Returns:
            A :class:`Reservation` to release after the call; ``True`` when the key has
            no budget (nothing to hold); ``False`` when the budget is used up.
        """
        if key is None or key.budget is None:
            return True
        period = self.spend.reserve(key, amount)
        if period is None:
            return False
        return Reservation(key=key, amount=amount, period=period)

    def refusal(self, key: ApiKey) -> str:
        """Why a request of ``key`` is refused: its budget is spent, or held by calls under way."""
        spent = self.spend.spent(key)
        budget = f"its budget of ${key.budget:g} this {key.period}"
        if key.budget is not None and spent < key.budget:
            return (
                f"key {key.name!r} has {budget} held by calls under way (spent ${spent:.6g}, "
                "each holds its worst-case cost until it ends); retry when they finish"
            )
        return f"key {key.name!r} has spent {budget}"

    def release(self, reservation: Reservation | bool | None) -> None:
        """Release a reservation (its call's real cost has been counted); idempotent."""
        if not isinstance(reservation, Reservation) or reservation.released:
            return
        reservation.released = True
        self.spend.release(reservation.key, reservation.amount, reservation.period)


def warn_memory_ledger(ledger: str, keys_configured: bool) -> None:
    """Warn at start when keys (and so budgets) are kept on a ledger a restart forgets."""
    if keys_configured and ledger == "memory":
        warnings.warn(
            MemoryLedgerBudgetWarning(
                '[serve] keys with ledger = "memory": spend is not kept, so every restart '
                "resets every key's budget; set ledger to a .db or .jsonl file or a "
                "postgresql:// URL"
            ),
            stacklevel=2,
        )


@dataclass
class StreamTally:
    """What a stream has sent its client so far (to charge a stream left unfinished).

    Args:
        route: The route that answers.
        model: The model that answers (as its provider named it).
        input_tokens: The prompt's estimated tokens.
    """

    route: str | None
    model: str | None
    input_tokens: int
    chunks: int = 0
    finished: bool = False

    @staticmethod
    def estimate_input(body: bytes) -> int:
        """An estimate (not a bound) of a request body's prompt tokens."""
        return max(1, math.ceil(len(body) / _BYTES_PER_TOKEN))

    def charged(self, failed: LedgerRecord) -> LedgerRecord | None:
        """The row of a stream left unfinished, from the failed row its end produced.

        ``None`` when nothing was sent (the failed row stands) or the stream finished.
        """
        if self.finished or self.chunks == 0:
            return None
        return failed.model_copy(
            update={
                "route": self.route or failed.route,
                "model": self.model or failed.model,
                "input_tokens": self.input_tokens,
                "output_tokens": self.chunks,
                "cached_tokens": 0,
                "cost": None,
                "baseline_cost": None,
                "error": None,
                "metadata": {
                    **failed.metadata,
                    ESTIMATED_METADATA: True,
                    "stream_left_after_chunks": self.chunks,
                    "stream_end": failed.error,
                },
            }
        )


@dataclass
class StreamTallies:
    """The tallies of the streams under way, by the record id of their answer."""

    _tallies: dict[str, StreamTally] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, record_id: str, tally: StreamTally) -> StreamTally:
        """Follow a stream."""
        with self._lock:
            self._tallies[record_id] = tally
        return tally

    def get(self, record_id: str | None) -> StreamTally | None:
        """The tally of a stream under way (``None``: not a stream, or it is over)."""
        if not record_id:
            return None
        with self._lock:
            return self._tallies.get(record_id)

    def close(self, record_id: str) -> None:
        """Stop following a stream."""
        with self._lock:
            self._tallies.pop(record_id, None)


class StreamChargingHandler(CostCallbackHandler):
    """The server's cost handler: a stream that ended early is charged for what it sent.

    A stream the client left (or that broke upstream) after sending output ends its
    model run with an error, whose row would cost nothing and lose the response's id.
    When ``streams`` counted what the stream sent, that row becomes the estimated charge
    (:meth:`StreamTally.charged`), and so takes the response's record id
    (:data:`~langchain_langroute.callbacks.RECORD_ID_METADATA`) like any answer.

    Args:
        ledger: The ledger.
        streams: The tallies of the streams under way.
        **options: :class:`~langchain_langroute.callbacks.CostCallbackHandler` options.
    """

    def __init__(self, ledger: CostLedger, *, streams: StreamTallies, **options: Any) -> None:
        """Create the handler; see the class docstring."""
        super().__init__(ledger, **options)
        self.streams = streams

    def _dispatch(self, run: Any, records: list[LedgerRecord]) -> None:
        tally = self.streams.get(run.metadata.get(RECORD_ID_METADATA))
        if tally is not None and records and records[-1].error is not None:
            charged = tally.charged(records[-1])
            if charged is not None:
                records = [*records[:-1], charged]
        super()._dispatch(run, records)
