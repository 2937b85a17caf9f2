"""What an adaptive dial holds, how it moves, and the journal of its moves.

The settings of :class:`langroute.adaptive_dial.AdaptiveDial` (the targets and
:class:`AdaptiveDialConfig`, also the ``[serve.adaptive_dial]`` table of a models file)
and the record of its changes (:class:`DialChange`, :class:`DialJournal`), apart from
the controller so that reading a models file needs none of it.

Example:
    >>> AdaptiveDialConfig(target=SpendTarget(per_hour=2.0)).max_step
    0.05
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langroute.errors import LedgerFormatError

__all__ = [
    "AdaptiveDialConfig",
    "DialChange",
    "DialJournal",
    "DialReading",
    "DialTarget",
    "EscalationBand",
    "SpendTarget",
    "StrongShareTarget",
    "dial_journal_path",
]


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
        >>> from datetime import timezone
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
