"""Circuit breakers per model: skip a model that keeps failing, probe it after a cool-down.

A breaker is *closed* while its model answers. It *opens* after ``failure_threshold``
consecutive failures, or when at least ``min_calls`` of the last ``window`` outcomes
hold a share of failures of ``failure_rate`` or more. An open model is skipped at once
(the call moves on to the next equivalent or route without paying a timeout). After
``cooldown_s`` the breaker is *half-open*: one request is let through as a probe; its
success closes the breaker, its failure opens it for another cool-down. A probe that
never reports (its caller was cancelled) frees the slot after another ``cooldown_s``.

Why not ``pybreaker`` or ``purgatory``: both wrap a call (``breaker.call(func)``), while
an escalation decides an attempt's outcome itself (a stream succeeds at its first
delivered chunk and may still break later; an error that ``escalate_on`` does not cover
is no provider failure), and one registry must serve threads and asyncio alike. What is
needed is three non-blocking methods under a lock: :meth:`BreakerRegistry.allow`,
:meth:`~BreakerRegistry.record_success` and :meth:`~BreakerRegistry.record_failure`.

State is per process. The clock is injectable, so tests move time without sleeping.

Example:
    >>> now = [0.0]
    >>> breakers = BreakerRegistry(BreakerPolicy(failure_threshold=2, cooldown_s=30),
    ...                            clock=lambda: now[0])
    >>> breakers.record_failure("gpt-4o-mini")
    >>> breakers.record_failure("gpt-4o-mini").new
    'open'
    >>> breakers.allow("gpt-4o-mini"), breakers.state("gpt-4o-mini")
    (False, 'open')
    >>> now[0] = 31.0
    >>> breakers.allow("gpt-4o-mini"), breakers.allow("gpt-4o-mini")  # one probe only
    (True, False)
    >>> breakers.record_success("gpt-4o-mini").new
    'closed'
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BreakerChange",
    "BreakerPolicy",
    "BreakerRegistry",
    "BreakerState",
    "BreakerStatus",
    "CircuitBreaker",
]

BreakerState = Literal["closed", "open", "half_open"]


class BreakerPolicy(BaseModel):
    """When a breaker opens and how long it stays open.

    Attributes:
        failure_threshold: Consecutive failures that open the breaker.
        failure_rate: Share of failures among the last ``window`` outcomes that opens
            it (``None``: only consecutive failures count).
        window: How many recent outcomes the failure rate is computed over.
        min_calls: Outcomes needed in the window before the rate may open the breaker.
            (A short window trips on random streaks: at a 25% base error rate, 10 of
            20 failures happen about once in 70 windows; 25 of 50, once in 8,000.)
        cooldown_s: Seconds an open breaker waits before letting one probe through.
    """

    model_config = ConfigDict(frozen=True)

    failure_threshold: int = Field(default=5, ge=1)
    failure_rate: float | None = Field(default=0.5, gt=0, le=1)
    window: int = Field(default=50, ge=1)
    min_calls: int = Field(default=20, ge=1)
    cooldown_s: float = Field(default=30.0, ge=0)


class BreakerStatus(BaseModel):
    """A breaker's state, for ``/healthz``, events and metrics (JSON-safe)."""

    model_config = ConfigDict(frozen=True)

    key: str
    state: BreakerState
    consecutive_failures: int
    recent_failures: int
    recent_calls: int
    opened_at: float | None = Field(
        default=None, description="The breaker clock's time when it last opened."
    )
    retry_in_s: float | None = Field(
        default=None, description="Seconds until an open breaker lets a probe through."
    )


class BreakerChange(BaseModel):
    """A breaker moved from one state to another."""

    model_config = ConfigDict(frozen=True)

    key: str
    old: BreakerState
    new: BreakerState
    status: BreakerStatus


class CircuitBreaker:
    """The breaker of one model (thread-safe; its methods never block on I/O).

    Args:
        key: The model (or provider/model) it guards.
        policy: When it opens and for how long.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self, key: str, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.key = key
        self.policy = policy
        self.clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._consecutive = 0
        self._recent: deque[bool] = deque(maxlen=policy.window)  # True: a failure
        self._opened_at: float | None = None
        self._probe_since: float | None = None

    # ------------------------------------------------------------------ reading
    def _current(self, now: float) -> BreakerState:
        """The state at ``now``: an open breaker past its cool-down is half-open."""
        if (
            self._state == "open"
            and self._opened_at is not None
            and now - self._opened_at >= self.policy.cooldown_s
        ):
            return "half_open"
        return self._state

    @property
    def state(self) -> BreakerState:
        """``"closed"``, ``"open"`` or ``"half_open"`` (a probe may go through)."""
        with self._lock:
            return self._current(self.clock())

    def status(self) -> BreakerStatus:
        """A snapshot of the breaker."""
        with self._lock:
            return self._status(self.clock())

    def _status(self, now: float) -> BreakerStatus:
        state = self._current(now)
        retry = None
        if state == "open" and self._opened_at is not None:
            retry = max(0.0, self._opened_at + self.policy.cooldown_s - now)
        return BreakerStatus(
            key=self.key,
            state=state,
            consecutive_failures=self._consecutive,
            recent_failures=sum(self._recent),
            recent_calls=len(self._recent),
            opened_at=self._opened_at,
            retry_in_s=retry,
        )

    # ------------------------------------------------------------------ deciding
    def allow(self) -> tuple[bool, BreakerChange | None]:
        """Whether a request may go to the model now (a half-open breaker: one probe)."""
        with self._lock:
            now = self.clock()
            state = self._current(now)
            if state == "closed":
                return True, None
            if state == "open":
                return False, None
            probe_free = (
                self._probe_since is None or now - self._probe_since >= self.policy.cooldown_s
            )
            if not probe_free:
                return False, None
            self._probe_since = now
            change = None
            if self._state != "half_open":
                self._state = "half_open"
                change = self._change("open", now)
            return True, change

    def _change(self, old: BreakerState, now: float) -> BreakerChange:
        return BreakerChange(key=self.key, old=old, new=self._state, status=self._status(now))

    def record_success(self) -> BreakerChange | None:
        """The model answered: a probe's success closes the breaker."""
        with self._lock:
            now = self.clock()
            old = self._current(now)
            self._consecutive = 0
            self._recent.append(False)
            self._probe_since = None
            if old == "closed":
                return None
            self._state, self._opened_at = "closed", None
            self._recent.clear()
            return self._change(old, now)

    def record_failure(self) -> BreakerChange | None:
        """The model failed: may open the breaker (a probe's failure re-opens it)."""
        with self._lock:
            now = self.clock()
            old = self._current(now)
            self._consecutive += 1
            self._recent.append(True)
            self._probe_since = None
            policy = self.policy
            rate_trips = (
                policy.failure_rate is not None
                and len(self._recent) >= policy.min_calls
                and sum(self._recent) / len(self._recent) >= policy.failure_rate
            )
            if old == "half_open" or (
                old == "closed" and (self._consecutive >= policy.failure_threshold or rate_trips)
            ):
                self._state, self._opened_at = "open", now
                return self._change(old, now)
            return None

    def release(self) -> None:
        """A request let through ended without a verdict (not a provider failure)."""
        with self._lock:
            self._probe_since = None


BreakerListener = Callable[[BreakerChange], object]


class BreakerRegistry:
    """The breakers of one process, keyed by model (see the module docs).

    Args:
        policy: The policy of every breaker it creates.
        clock: Monotonic seconds (injectable: tests move time without sleeping).

    Example:
        >>> registry = BreakerRegistry(BreakerPolicy(failure_threshold=1))
        >>> registry.record_failure("m").old
        'closed'
        >>> [(s.key, s.state) for s in registry.statuses()]
        [('m', 'open')]
    """

    def __init__(
        self, policy: BreakerPolicy | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self.clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()
        self._listeners: list[BreakerListener] = []

    def breaker(self, key: str) -> CircuitBreaker:
        """The breaker of ``key`` (created closed on first use)."""
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                breaker = self._breakers[key] = CircuitBreaker(key, self.policy, self.clock)
            return breaker

    def subscribe(self, listener: BreakerListener) -> Callable[[], None]:
        """Call ``listener`` with every state change; returns a function that unsubscribes.

        Listeners run on the thread that caused the change; one that raises is ignored
        (a broken dashboard must not fail requests).
        """
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _announce(self, change: BreakerChange | None) -> None:
        if change is None:
            return
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(change)
            except Exception:  # observers never fail a request
                continue

    def admit(self, key: str) -> tuple[bool, BreakerChange | None]:
        """Whether a request may go to ``key`` now, and the state change that caused."""
        allowed, change = self.breaker(key).allow()
        self._announce(change)
        return allowed, change

    def allow(self, key: str) -> bool:
        """Whether a request may go to ``key`` now (skip it at once when False)."""
        return self.admit(key)[0]

    def record_success(self, key: str) -> BreakerChange | None:
        """``key`` answered; returns the state change it caused (a probe closing it)."""
        change = self.breaker(key).record_success()
        self._announce(change)
        return change

    def record_failure(self, key: str) -> BreakerChange | None:
        """``key`` failed with a provider error; returns the state change (it opened)."""
        change = self.breaker(key).record_failure()
        self._announce(change)
        return change

    def release(self, key: str) -> None:
        """A request to ``key`` ended without a verdict on the provider."""
        self.breaker(key).release()

    def state(self, key: str) -> BreakerState:
        """The state of ``key``'s breaker (``"closed"`` for a model never seen)."""
        with self._lock:
            breaker = self._breakers.get(key)
        return breaker.state if breaker is not None else "closed"

    def statuses(self) -> list[BreakerStatus]:
        """Every breaker's status, by key (what ``/healthz`` shows)."""
        with self._lock:
            breakers = sorted(self._breakers.values(), key=lambda b: b.key)
        return [breaker.status() for breaker in breakers]

    def health(self) -> dict[str, object]:
        """JSON-safe summary: ``{"open": [...keys], "breakers": [status, ...]}``."""
        statuses = self.statuses()
        return {
            "open": [s.key for s in statuses if s.state == "open"],
            "half_open": [s.key for s in statuses if s.state == "half_open"],
            "breakers": [s.model_dump(mode="json") for s in statuses],
        }
