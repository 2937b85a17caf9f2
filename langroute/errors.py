"""The langroute exception tree.

Every error raised on purpose by langroute derives from :class:`LangrouteError`::

    LangrouteError
    ├── ExemplarFormatError      a data file is malformed (file, line, field named)
    ├── RouterConfigError        routes, settings or exemplars do not fit together
    ├── InvalidQueryError        not a string, or no visible text in the query
    ├── RouterStoreError         a saved router cannot be read or written safely
    │   └── EmbedderMismatchError  the saved index was built by another embedder
    ├── LedgerFormatError        a cost ledger file is malformed (langroute.costs)
    ├── SinkUnavailableError     a ledger's storage is down for now (the writer retries)
    ├── UnknownRecordError       no ledger record has the id given (feedback on a call)
    ├── DatabaseError            a shared Postgres database cannot be used (langroute.postgres)
    │   ├── DatabaseUnavailableError  it cannot be reached (bad URL, down, refused)
    │   └── SchemaVersionError   its schema is newer than this langroute knows
    ├── ModelsConfigError        a models file is malformed or a model cannot be built
    ├── ApiKeysFileError         a serve API keys file is malformed (file and line named)
    ├── LabellingError           a labelling run cannot start or its files are damaged
    │   ├── GradingError         one query cannot be graded (the run goes on)
    │   └── BudgetExhausted      a paid call was not made: it would pass the budget
    ├── EmptyStreamError         a model's stream ended without a single chunk
    └── AllRoutesFailedError     every route raised (integrations; attempts attached)

Warnings (filter them with :mod:`warnings`): :class:`TornLinesWarning` (torn ledger
lines skipped), :class:`LedgerWriteWarning` (ledger records lost),
:class:`SpendWriteWarning` (budget settlements lost) and :class:`UnpricedModelWarning`
(a model with no known price).

``ExemplarFormatError``, ``RouterConfigError`` and ``InvalidQueryError`` also derive
from :class:`ValueError` so callers that catch ``ValueError`` keep working
(``UnknownRecordError`` derives from :class:`KeyError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "AllRoutesFailedError",
    "ApiKeysFileError",
    "BudgetExhausted",
    "CircuitOpenError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "EmbedderMismatchError",
    "EmptyStreamError",
    "ExemplarFormatError",
    "GradingError",
    "InvalidQueryError",
    "LabellingError",
    "LangrouteError",
    "LedgerFormatError",
    "LedgerWriteWarning",
    "ModelsConfigError",
    "NoShadowRowsError",
    "RouterConfigError",
    "RouterStoreError",
    "SchemaVersionError",
    "SinkUnavailableError",
    "SpendWriteWarning",
    "TornLinesWarning",
    "UnknownRecordError",
    "UnpricedModelWarning",
]


class LangrouteError(Exception):
    """Base class of every error langroute raises on purpose."""


class UnknownRecordError(LangrouteError, KeyError):
    """No ledger record has the id given (for example feedback on an unknown call).

    Example:
        >>> str(UnknownRecordError("no ledger record has id 'x'"))
        "no ledger record has id 'x'"
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ExemplarFormatError(LangrouteError, ValueError):
    """A data file (JSONL or CSV) is malformed.

    The message names the file, the 1-based line and the field, so the user can fix it.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        where = ""
        if self.path is not None:
            where = self.path
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            message = f"field {field!r}: {message}"
        super().__init__(where + message)


class RouterConfigError(LangrouteError, ValueError):
    """Routes, settings or exemplars are inconsistent (unknown route, no exemplars, ...)."""


class InvalidQueryError(LangrouteError, ValueError):
    """The query cannot be routed: not a string, or nothing visible in it.

    Empty, whitespace, zero-width and control characters only all count as empty.
    """


class RouterStoreError(LangrouteError):
    """A saved router is missing, truncated, corrupted, or cannot be written safely."""


class EmbedderMismatchError(RouterStoreError):
    """The saved router was built with a different embedder (fingerprint or dimension)."""


class DatabaseError(LangrouteError):
    """A shared database (``postgresql://`` URL) cannot be used for routers or the ledger."""


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached: a malformed URL, a server down or refusing us."""


class SchemaVersionError(DatabaseError):
    """The database's langroute schema is newer than this version of langroute knows."""


class ModelsConfigError(LangrouteError, ValueError):
    """A models file is malformed, or a model spec cannot be built (file and route named)."""


class ApiKeysFileError(LangrouteError, ValueError):
    """A ``langroute serve`` API keys file is malformed, or a key cannot be added (file, line)."""


class LabellingError(LangrouteError):
    """A labelling run cannot start, or a file it keeps is damaged (file and line named).

    For example: a budget with a model of unknown price, or a reference grader with
    queries that have no reference.
    """


class EmptyStreamError(LangrouteError):
    """A route's stream ended without yielding a single chunk.

    :class:`~langroute.dispatch.escalation.Escalation` records it as a failed attempt, so an
    empty stream escalates to the next route like any other provider error (a call
    answered with ``invoke`` would have failed too).
    """


class CircuitOpenError(LangrouteError):
    """A model was skipped because its circuit breaker is open (it kept failing).

    :class:`~langroute.dispatch.escalation.Escalation` records it as a failed attempt that
    cost nothing and took no time, and moves on to the next equivalent or route.
    """


class AllRoutesFailedError(LangrouteError):
    """Every route that was tried raised; ``attempts`` lists ``(route, error)`` pairs.

    ``call`` is the :class:`~langroute.dispatch.routed_call.RoutedCall` with every attempt, when the
    call was run by :class:`~langroute.dispatch.escalation.Escalation`. The last provider error
    is chained as ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        attempts: Sequence[tuple[str, BaseException]],
        call: Any = None,
    ) -> None:
        super().__init__(message)
        self.attempts: list[tuple[str, BaseException]] = list(attempts)
        self.call = call

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0], self.attempts, self.call))


class LedgerFormatError(LangrouteError, ValueError):
    """A ledger file is malformed or of an unsupported type.

    Like :class:`langroute.errors.ExemplarFormatError`, the message names the file and,
    when known, the 1-based line, so the user can fix it.

    Example:
        >>> str(LedgerFormatError("not JSON", path="costs.jsonl", line=3))
        'costs.jsonl:3: not JSON'
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(where + message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_ledger_format_error, (self.message, self.path, self.line))


def _rebuild_ledger_format_error(
    message: str, path: str | None, line: int | None
) -> LedgerFormatError:
    return LedgerFormatError(message, path=path, line=line)


class SinkUnavailableError(LangrouteError, ConnectionError):
    """Raised by a sink whose storage cannot be reached for now (a database down).

    The background writer keeps the batch queued and retries it with backoff (up to
    5 s between tries) instead of losing it; the records count as pending, each retry in
    :attr:`LedgerStats.retries`. Only :meth:`LedgerWriter.close` gives up on them
    (counted as failed, with a :class:`LedgerWriteWarning`).
    """


class GradingError(LabellingError):
    """One query cannot be graded (a bad reference, an unreadable judge reply).

    Only that query fails; the run goes on with the others.
    """


class BudgetExhausted(LabellingError):
    """A paid call was not made: its estimate would take the spend past the budget."""


# -- warnings------------------------------------------------------------


class TornLinesWarning(UserWarning):
    """A JSON Lines ledger holds torn lines, which were skipped.

    A torn line is a record cut short: its writer was killed in the middle of a write.
    The record is lost, but the lines around it are intact, so readers skip it and name
    the file and lines (also in :attr:`JSONLSink.torn_lines
    <langroute.costs.JSONLSink.torn_lines>` and ``langroute report``). A record that an
    older writer glued onto a torn line is kept. Lines that are complete but are not
    records still raise :class:`LedgerFormatError`.
    """


class LedgerWriteWarning(RuntimeWarning):
    """Ledger records were lost: the write queue was full, or the sink failed to write.

    The counts are in :attr:`CostLedger.stats <langroute.costs.CostLedger.stats>`
    (``dropped``, ``failed``). A full queue warns once per overflow (until the queue has
    drained); every failed write warns, naming the sink and the error.
    """


class SpendWriteWarning(RuntimeWarning):
    """Budget settlements or releases were lost before reaching Postgres.

    :class:`~langroute.postgres.spend.PostgresSpend` queues them for its writer; past
    ``max_pending`` (a long outage) new ones are dropped (warned once per overflow),
    and one the database refuses is dropped alone. Counted in ``PostgresSpend.dropped``.
    """


class UnpricedModelWarning(UserWarning):
    """No price is known for a model: its calls are recorded with ``cost=None``.

    Emitted once per model name and :class:`Pricer`. Silence it with
    ``warnings.filterwarnings("ignore", category=UnpricedModelWarning)`` or give the model
    a :class:`ModelPrice` override (``ModelPrice(input_per_mtok=0, output_per_mtok=0)``
    for a free local model).
    """


class NoShadowRowsError(LangrouteError, ValueError):
    """A ledger holds no shadow decisions (or none of the candidate asked for).

    ``langroute compare --ledger`` needs a ledger written with a shadow router
    (``shadow=`` on an entry point, or ``[serve] shadow_router``).
    """
