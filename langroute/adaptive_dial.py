"""An adaptive dial: hold a live target from the ledger by moving the router's threshold.

A router's dial (:attr:`ExemplarRouter.threshold <langroute.router.ExemplarRouter.threshold>`,
higher sends more traffic to cheaper routes) is set once, at build time, for a quality
target. Traffic drifts: when more hard queries arrive, more go to the strong route and
spend rises. :class:`AdaptiveDial` reads the cost ledger's recent window and moves the
dial to hold one of three targets:

* :class:`SpendTarget`: spend per hour (pacing a budget; USD, as the ledger prices it);
* :class:`StrongShareTarget`: the share of requests the strongest route answers;
* :class:`EscalationBand`: the share of requests sent up (a rejected or failed cheaper
  answer, or an unsure decision) kept between two bounds.

Guarantees:

* **Bounded steps.** A change moves the threshold by at most ``max_step``, and changes
  are at least ``min_interval_s`` apart; the effect of a change is measured on the
  requests that began after it (and at most ``window_s`` back), so the controller does
  not react twice to the same traffic.
* **No oscillation inside the tolerance.** Nothing moves while the measured value is
  within the target's tolerance (its band, for :class:`EscalationBand`).
* **A quality floor.** The dial never goes cheaper than ``floor_threshold``: by default
  the threshold that cross-validation within the router's exemplars says keeps
  ``floor_quality`` (90%) of the strongest route's quality. It may always go stronger
  (down to ``min_threshold``). A router attached while cheaper than the floor is moved
  to the floor at once.
* **Every change recorded** with its reason: in :attr:`AdaptiveDial.changes` and, when a
  journal is set (by default beside a file ledger: ``costs.jsonl`` ->
  ``costs.dial.jsonl``), one JSON line per change, which ``langroute monitor`` shows.

The dial reads the ledger when :meth:`AdaptiveDial.update` is called and at most once
per ``check_every_s`` (calling it after every request is cheap), or on its own timer
(:meth:`AdaptiveDial.start`). Each reading reads the ledger's recent calls (from
:data:`~langroute.monitoring.REQUEST_SPAN` before the window, by the ledger's timestamp
index), not the whole ledger. Thread-safe.

Example:
    >>> from langroute.costs import CostLedger
    >>> dial = AdaptiveDial(router, CostLedger("costs.jsonl"),
    ...                     target=SpendTarget(per_hour=2.0))  # doctest: +SKIP
    >>> dial.start()  # doctest: +SKIP
    >>> dial.changes[-1].reason  # doctest: +SKIP
    'spend $2.61/h is 31% above the target $2.00/h: threshold 0.62 -> 0.67 (cheaper)'
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from langroute.errors import RouterConfigError
from langroute.router.dial_targets import (
    AdaptiveDialConfig,
    DialChange,
    DialJournal,
    DialReading,
    DialTarget,
    EscalationBand,
    SpendTarget,
    StrongShareTarget,
    dial_journal_path,
)

__all__ = [
    "AdaptiveDial",
    "AdaptiveDialConfig",
    "DialChange",
    "DialJournal",
    "DialReading",
    "DialTarget",
    "EscalationBand",
    "SpendTarget",
    "StrongShareTarget",
    "dial_journal_path",
    "quality_floor",
]

_log = logging.getLogger("langroute.adaptive_dial")
_KEPT_CHANGES = 1000
"""Changes kept in memory (the journal keeps them all)."""


class _Dialled(Protocol):
    """What the dial moves: anything with a settable ``threshold`` (an ExemplarRouter)."""

    threshold: float


def quality_floor(router: Any, quality: float = 0.90, *, folds: int = 5) -> float:
    """The highest threshold that keeps ``quality`` of the strongest route's quality.

    Cross-validated within the router's exemplars (as the build-time calibration is),
    on a scratch copy: the router itself is not changed.

    Raises:
        RouterConfigError: The router cannot be cross-validated (too few exemplars, an
            ``argmax`` router); give ``floor_threshold`` instead.

    Example:
        >>> round(quality_floor(router, 0.9), 3)  # doctest: +SKIP
        0.71
    """
    from langroute.evaluation.calibration import (
        calibrate_by_cross_validation,
        cross_validation_skip_reason,
    )
    from langroute.evaluation.datasets import exemplar_vectors
    from langroute.router.exemplar_router import ExemplarRouter

    reason = cross_validation_skip_reason(router, folds)
    if reason is not None:
        raise RouterConfigError(
            f"cannot find the quality floor by cross-validation: {reason}; "
            "give floor_threshold instead"
        )
    options = router.settings.model_dump(exclude={"routes"})
    options["mode"] = router.mode
    scratch = ExemplarRouter(
        routes=router.routes,
        exemplars=router.exemplars,
        embedder=exemplar_vectors(router),
        **options,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "target not reached": the best threshold is kept
        # the estimate itself (no margin): the floor is the dial's outer bound, measured
        # so (benchmarks/adaptive_dial.py); `build`'s margin is for the dial's own target
        floor = calibrate_by_cross_validation(
            scratch, target_quality=quality, folds=folds, standard_errors=0.0
        )
        return floor.threshold


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class AdaptiveDial:
    """Moves a router's threshold, in bounded steps, to hold a target read from a ledger.

    Args:
        router: What to move: an :class:`~langroute.ExemplarRouter` (anything with a
            settable ``threshold``). A router without enough exemplars to cross-validate
            needs ``floor_threshold``.
        ledger: The :class:`~langroute.costs.CostLedger` (or sink, or records) the
            router's calls are written to.
        target: What to hold (or give ``config``).
        config: Every setting (:class:`AdaptiveDialConfig`); ``options`` override its fields.
        clock: Returns the time now (aware UTC); tests and replays pass their own.
        **options: Fields of :class:`AdaptiveDialConfig` (``max_step=0.02``, ...).

    Raises:
        RouterConfigError: Neither or both of ``target`` and ``config``, invalid
            options, or no quality floor can be found (see :func:`quality_floor`).

    Example:
        >>> from langroute.costs import CostLedger
        >>> ledger = CostLedger()
        >>> dial = AdaptiveDial(router, ledger, target=StrongShareTarget(share=0.3),
        ...                     floor_threshold=0.8, min_interval_s=60)
        >>> dial.update() is None  # nothing in the ledger yet: nothing to act on
        True
        >>> dial.floor
        0.8
    """

    def __init__(
        self,
        router: _Dialled,
        ledger: Any,
        target: SpendTarget | StrongShareTarget | EscalationBand | None = None,
        *,
        config: AdaptiveDialConfig | None = None,
        clock: Callable[[], datetime] | None = None,
        **options: Any,
    ) -> None:
        if (target is None) == (config is None):
            raise RouterConfigError("give exactly one of target= or config=")
        try:
            if config is None:
                config = AdaptiveDialConfig(target=target, **options)
            elif options:
                config = AdaptiveDialConfig.model_validate(config.model_dump() | options)
        except ValidationError as exc:
            raise RouterConfigError(f"invalid adaptive dial settings: {exc}") from exc
        self.config = config
        self.router = router
        self.ledger = ledger
        self._clock = clock or _utc_now
        self.floor = (
            config.floor_threshold
            if config.floor_threshold is not None
            else quality_floor(router, config.floor_quality)
        )
        """The highest threshold the dial may set (the quality floor)."""
        journal = config.journal
        if journal is None:
            path = getattr(getattr(ledger, "sink", None), "path", None)
            journal = dial_journal_path(path) if path is not None else None
        self.journal = DialJournal(journal) if journal is not None else None
        self.changes: deque[DialChange] = deque(maxlen=_KEPT_CHANGES)
        """The latest changes, oldest first (the journal keeps every one)."""
        self.last_reading: DialReading | None = None
        self.errors = 0
        """Timer checks that failed (the ledger unreadable, say); the dial keeps going."""
        self._lock = threading.RLock()
        self._since = self._clock()
        self._last_check: datetime | None = None
        self._last_change: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if router.threshold > self.floor:
            self._apply(
                self._since, self.floor, None, 0, "floor",
                f"threshold {router.threshold:.4g} was cheaper than the quality floor "
                f"{self.floor:.4g}: moved to the floor",
            )  # fmt: skip

    # ------------------------------------------------------------------ control
    def update(self, *, force: bool = False) -> DialChange | None:
        """Read the ledger's recent window and move the dial if the target asks for it.

        Does nothing (returns ``None``) when the last check was less than
        ``check_every_s`` ago (unless ``force``), the last change less than
        ``min_interval_s`` ago, the window holds fewer than ``min_requests`` requests,
        the value is within the target's tolerance, or the floor (or ``min_threshold``)
        blocks the move; :attr:`last_reading` says which.

        Returns:
            The change made, or ``None``.
        """
        with self._lock:
            now = self._clock()
            config = self.config
            if (
                not force
                and self._last_check is not None
                and (now - self._last_check).total_seconds() < config.check_every_s
            ):
                return None
            self._last_check = now
            if (
                self._last_change is not None
                and (now - self._last_change).total_seconds() < config.min_interval_s
            ):
                return None
            start = max(now - timedelta(seconds=config.window_s), self._since)
            if self._last_change is not None:
                start = max(start, self._last_change)
            return self._act(now, start)

    def _act(self, now: datetime, start: datetime) -> DialChange | None:
        from langroute.monitoring import window_stats

        stats = window_stats(self.ledger, start, now)
        threshold = float(self.router.threshold)
        measured, error, words = self._measure(stats, start, now)

        def note(action: str) -> None:
            self.last_reading = DialReading(
                at=now, start=start, requests=stats.requests, measured=measured,
                threshold=threshold, floor=self.floor, action=action,
            )  # fmt: skip

        if stats.requests < self.config.min_requests:
            note(f"waiting: {stats.requests} requests < min_requests {self.config.min_requests}")
            return None
        if measured is None or error == 0:
            note(words)
            return None
        step = self.config.gain * error
        limit: Literal["floor", "min_threshold", "max_step"] | None = None
        if abs(step) > self.config.max_step:
            step = self.config.max_step if step > 0 else -self.config.max_step
            limit = "max_step"
        if step > 0:
            if threshold >= self.floor:
                note(f"{words}; held at the quality floor ({self.floor:.4g})")
                return None
            new = min(threshold + step, self.floor)
            limit = "floor" if new < threshold + step else limit
        else:
            if threshold <= self.config.min_threshold:
                note(f"{words}; held at min_threshold ({self.config.min_threshold:.4g})")
                return None
            new = max(threshold + step, self.config.min_threshold)
            limit = "min_threshold" if new > threshold + step else limit
        new = round(new, 4)
        if new == round(threshold, 4):
            note(f"{words}; the step is below the dial's resolution")
            return None
        direction = "cheaper" if new > threshold else "stronger"
        reason = f"{words}: threshold {threshold:.4g} -> {new:.4g} ({direction})"
        if limit is not None:
            reason += f", limited by {limit.replace('_', ' ')}"
        note(reason)
        return self._apply(now, new, measured, stats.requests, limit, reason)

    def _measure(
        self, stats: Any, start: datetime, now: datetime
    ) -> tuple[float | None, float, str]:
        """(the measured value, the error, the reading in words); error > 0: go cheaper."""
        target = self.config.target
        if isinstance(target, SpendTarget):
            hours = (now - start).total_seconds() / 3600
            if stats.cost is None or hours <= 0:
                return None, 0.0, "no priced call in the window"
            rate = stats.cost / hours
            relative = rate / target.per_hour - 1
            words = (
                f"spend ${rate:.4g}/h is {abs(relative):.0%} "
                f"{'above' if relative > 0 else 'below'} the target ${target.per_hour:.4g}/h"
            )
            return rate, (relative if abs(relative) > target.tolerance else 0.0), words
        if isinstance(target, StrongShareTarget):
            strongest = self._strongest()
            share = stats.route_shares.get(strongest, 0.0) if strongest else 0.0
            diff = share - target.share
            words = f"strong share {share:.1%} against the target {target.share:.1%}"
            return share, (diff if abs(diff) > target.tolerance else 0.0), words
        rate = stats.escalation_rate
        words = f"escalation rate {rate:.1%} against the band {target.low:.0%} .. {target.high:.0%}"
        if rate > target.high:
            return rate, -(rate - target.high), words
        if rate < target.low:
            return rate, target.low - rate, words
        return rate, 0.0, words

    def _strongest(self) -> str | None:
        routes = getattr(self.router, "routes", None)
        return routes[-1] if routes else None

    def _apply(
        self,
        now: datetime,
        threshold: float,
        measured: float | None,
        requests: int,
        limit: Literal["floor", "min_threshold", "max_step"] | None,
        reason: str,
    ) -> DialChange:
        change = DialChange(
            at=now,
            previous=float(self.router.threshold),
            threshold=threshold,
            target=self.config.target.describe(),
            measured=measured,
            requests=requests,
            limit=limit,
            reason=reason,
        )
        self.router.threshold = threshold
        self._last_change = now
        self.changes.append(change)
        if self.journal is not None:
            try:
                self.journal.append(change)
            except OSError as exc:  # the dial moved: a full disk must not stop it
                _log.warning("could not write the dial journal %s: %s", self.journal.path, exc)
        _log.info("adaptive dial: %s", reason)
        return change

    # ------------------------------------------------------------------ timer
    def start(self) -> AdaptiveDial:
        """Check on a background thread every ``check_every_s`` (at least every second).

        A check that fails (an unreadable ledger) is logged and counted in
        :attr:`errors`; the next one tries again. Returns the dial.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="langroute-adaptive-dial", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        interval = max(self.config.check_every_s, 1.0)
        while not self._stop.wait(interval):
            try:
                self.update()
            except Exception as exc:  # the timer must outlive a bad read
                self.errors += 1
                _log.warning("adaptive dial check failed: %s", exc)

    def stop(self) -> None:
        """Stop the timer (waits for a check under way)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> AdaptiveDial:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def status(self) -> dict[str, Any]:
        """The dial's state as JSON-ready data (threshold, floor, target, last reading)."""
        with self._lock:
            last = self.changes[-1] if self.changes else None
            return {
                "target": self.config.target.describe(),
                "threshold": float(self.router.threshold),
                "floor": self.floor,
                "min_threshold": self.config.min_threshold,
                "changes": len(self.changes),
                "last_change": None if last is None else last.model_dump(mode="json"),
                "last_reading": (
                    None if self.last_reading is None else self.last_reading.model_dump(mode="json")
                ),
                "journal": None if self.journal is None else str(self.journal.path),
            }

    def __repr__(self) -> str:
        return (
            f"AdaptiveDial(target={self.config.target.describe()!r}, "
            f"threshold={self.router.threshold:.4g}, floor={self.floor:.4g})"
        )
