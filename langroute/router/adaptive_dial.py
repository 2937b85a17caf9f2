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
(:meth:`AdaptiveDial.start`). Each reading scans the ledger's calls once, as
``langroute monitor`` does. Thread-safe.

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
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langroute.errors import LedgerFormatError, RouterConfigError

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


class SpendTarget(BaseModel):
    """Hold spend per hour (USD, as the ledger prices calls) within ``tolerance`` of it.

    Example:
        >>> SpendTarget(per_hour=2.0).describe()
        'spend $2.00/h ± 5%'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["spend"] = "spend"
    per_hour: float = Field(gt=0, description="Spend per hour to hold (USD).")
    tolerance: float = Field(
        default=0.05, ge=0, lt=1, description="Relative: no change while within it (0.05 = 5%)."
    )

    def describe(self) -> str:
        """The target in words."""
        return f"spend ${self.per_hour:.2f}/h ± {self.tolerance:.0%}"


class StrongShareTarget(BaseModel):
    """Hold the share of requests the strongest route answers.

    Example:
        >>> StrongShareTarget(share=0.3).describe()
        'strong share 30% ± 2 points'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["strong_share"] = "strong_share"
    share: float = Field(ge=0, le=1)
    tolerance: float = Field(
        default=0.02, ge=0, lt=1, description="In share points: no change while within it."
    )

    def describe(self) -> str:
        """The target in words."""
        return f"strong share {self.share:.0%} ± {self.tolerance * 100:g} points"


class EscalationBand(BaseModel):
    """Keep the share of requests sent up between ``low`` and ``high``.

    Too many escalations (cheap answers rejected or failing) make the dial stronger; too
    few (the router could afford more cheap answers) make it cheaper.

    Example:
        >>> EscalationBand(low=0.05, high=0.15).describe()
        'escalation rate in 5% .. 15%'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["escalation_band"] = "escalation_band"
    low: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> EscalationBand:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    def describe(self) -> str:
        """The target in words."""
        return f"escalation rate in {self.low:.0%} .. {self.high:.0%}"


DialTarget = Annotated[
    SpendTarget | StrongShareTarget | EscalationBand, Field(discriminator="kind")
]
"""One of the targets, told apart by ``kind`` (``spend``, ``strong_share``, ``escalation_band``)."""


class AdaptiveDialConfig(BaseModel):
    """How an :class:`AdaptiveDial` moves the dial (``[serve.adaptive_dial]`` in a models file).

    Attributes:
        target: What to hold (``kind`` = ``spend``, ``strong_share`` or ``escalation_band``).
        window_s: The ledger window read, in seconds (only requests since the last
            change count).
        check_every_s: Read the ledger at most this often.
        min_interval_s: Changes are at least this far apart.
        max_step: The largest move of the threshold in one change.
        gain: The move per unit of error (relative error for spend; share points for a
            share or the band), before ``max_step`` caps it.
        min_requests: Requests needed in the window before anything moves.
        floor_quality: The quality floor, as a fraction of the strongest route's quality:
            the dial never goes cheaper than the threshold that keeps it (cross-validated
            within the router's exemplars).
        floor_threshold: The floor as a threshold instead (the highest allowed).
        min_threshold: The strongest the dial may go (the lowest threshold).
        journal: A JSON Lines file recording every change (``None``: beside a file
            ledger, ``costs.dial.jsonl`` for ``costs.jsonl``; none for other ledgers).

    Example:
        >>> AdaptiveDialConfig.model_validate(
        ...     {"target": {"kind": "spend", "per_hour": 2.0}, "max_step": 0.02}
        ... ).target.describe()
        'spend $2.00/h ± 5%'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: DialTarget
    window_s: float = Field(default=900.0, gt=0)
    check_every_s: float = Field(default=30.0, ge=0)
    min_interval_s: float = Field(default=300.0, ge=0)
    max_step: float = Field(default=0.05, gt=0, le=1)
    gain: float = Field(default=0.25, gt=0)
    min_requests: int = Field(default=20, ge=1)
    floor_quality: float = Field(default=0.90, ge=0, le=1)
    floor_threshold: float | None = Field(default=None, ge=0, le=1)
    min_threshold: float = Field(default=0.0, ge=0, le=1)
    journal: Path | None = None

    @model_validator(mode="after")
    def _bounds(self) -> AdaptiveDialConfig:
        if self.floor_threshold is not None and self.floor_threshold < self.min_threshold:
            raise ValueError(
                f"floor_threshold ({self.floor_threshold}) is below min_threshold "
                f"({self.min_threshold}): no threshold satisfies both"
            )
        return self


class DialChange(BaseModel):
    """One move of the dial, with why it moved (a line of the journal).

    Example:
        >>> change = DialChange(at=datetime(2026, 1, 1, tzinfo=timezone.utc), previous=0.6,
        ...                     threshold=0.65, target="spend $2.00/h ± 5%", reason="r")
        >>> change.direction
        'cheaper'
    """

    model_config = ConfigDict(frozen=True)

    at: datetime
    previous: float
    threshold: float
    target: str = Field(description="The target in words.")
    measured: float | None = Field(default=None, description="The value read in the window.")
    requests: int = Field(default=0, description="Requests in the window read.")
    limit: Literal["floor", "min_threshold", "max_step"] | None = Field(
        default=None, description="What cut the move short, if anything."
    )
    reason: str

    @property
    def direction(self) -> Literal["cheaper", "stronger"]:
        """``cheaper`` when the threshold rose (more traffic to cheaper routes)."""
        return "cheaper" if self.threshold > self.previous else "stronger"


class DialReading(BaseModel):
    """What the dial read last, and why it did or did not move."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    start: datetime
    requests: int
    measured: float | None
    threshold: float
    floor: float
    action: str = Field(description="What the dial did with the reading, in words.")


def dial_journal_path(ledger: str | Path) -> Path:
    """Where the journal of a file ledger's dial lives: ``costs.jsonl`` -> ``costs.dial.jsonl``.

    Example:
        >>> dial_journal_path("data/costs.db").as_posix()
        'data/costs.dial.jsonl'
    """
    path = Path(ledger)
    return path.with_name(f"{path.stem}.dial.jsonl")


class DialJournal:
    """A JSON Lines file of :class:`DialChange`, appended to by one or more processes.

    Example:
        >>> journal = DialJournal("costs.dial.jsonl")  # doctest: +SKIP
        >>> [change.threshold for change in journal.read()]  # doctest: +SKIP
        [0.65, 0.7]
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, change: DialChange) -> None:
        """Add one change (one line, written whole)."""
        line = change.model_dump_json() + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)

    def read(self) -> list[DialChange]:
        """Every change, oldest first (``[]`` when the file does not exist).

        Raises:
            LedgerFormatError: A line is not a dial change (naming the file and line).
        """
        if not self.path.exists():
            return []
        changes = []
        with self.path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    changes.append(DialChange.model_validate_json(line))
                except ValidationError as exc:
                    problem = exc.errors()[0]
                    where = ".".join(str(part) for part in problem["loc"]) or "line"
                    raise LedgerFormatError(
                        f"not a dial change: {where}: {problem['msg']}",
                        path=self.path,
                        line=number,
                    ) from None
        return changes

    def __repr__(self) -> str:
        return f"DialJournal({str(self.path)!r})"


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
        return calibrate_by_cross_validation(scratch, target_quality=quality, folds=folds).threshold


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
