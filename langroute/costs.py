"""Prices, the cost ledger and its report.

Three layers, each usable on its own:

* :class:`Pricer` turns token counts into US dollars. Prices come from the
  `genai-prices <https://github.com/pydantic/genai-prices>`_ package's bundled snapshot
  (no price list is written here, and nothing is fetched: its optional background
  updater, ``genai_prices.UpdatePrices``, is never started by langroute). Per-model
  :class:`ModelPrice` overrides win over the package.
* :class:`CostLedger` stores one :class:`LedgerRecord` per paid model call (a routed call
  or one attempt of a cascade) in a sink: memory, a JSONL file or a SQLite database that
  several processes can append to.
* :meth:`CostLedger.summary` aggregates the records per route into a
  :class:`LedgerSummary` (cost, tokens, latency percentiles, escalations, savings against
  always calling the strongest route), and :func:`render_report` / :func:`print_report`
  show it as a table (the ``langroute report LEDGER`` command).

Example:
    >>> ledger = CostLedger()  # in memory
    >>> _ = ledger.record(
    ...     LedgerRecord(
    ...         framework="core", kind="route", route="small", model="gpt-4o-mini",
    ...         input_tokens=1000, output_tokens=200, baseline_model="gpt-4o",
    ...     )
    ... )
    >>> summary = ledger.summary()
    >>> summary.calls, summary.cost is not None, summary.savings > 0
    (1, True, True)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sqlite3
import threading
import uuid
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from langroute.errors import LangrouteError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "CostLedger",
    "JSONLSink",
    "LedgerFormatError",
    "LedgerRecord",
    "LedgerSummary",
    "MemorySink",
    "ModelPrice",
    "Pricer",
    "RouteCostSummary",
    "SQLiteSink",
    "Sink",
    "UnpricedModelWarning",
    "print_report",
    "render_report",
    "summarize",
]

_MTOK = 1_000_000
_JSONL_SUFFIXES = (".jsonl",)
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


# --------------------------------------------------------------------------- errors


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


class UnpricedModelWarning(UserWarning):
    """No price is known for a model: its calls are recorded with ``cost=None``.

    Emitted once per model name and :class:`Pricer`. Silence it with
    ``warnings.filterwarnings("ignore", category=UnpricedModelWarning)`` or give the model
    a :class:`ModelPrice` override (``ModelPrice(input_per_mtok=0, output_per_mtok=0)``
    for a free local model).
    """


# --------------------------------------------------------------------------- prices


class ModelPrice(BaseModel):
    """A user-supplied price for one model, in US dollars per million tokens.

    ``cached_input_per_mtok`` prices input tokens read from the provider's prompt cache;
    when it is ``None`` cached tokens are billed at ``input_per_mtok``.

    Example:
        >>> price = ModelPrice(input_per_mtok=0.5, output_per_mtok=1.5)
        >>> price.cost(input_tokens=2_000_000, output_tokens=1_000_000)
        2.5
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(ge=0, description="USD per million (uncached) input tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million output tokens.")
    cached_input_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million cached input tokens (cache reads)."
    )

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        """Price one call; ``cached_tokens`` is the part of ``input_tokens`` read from cache.

        Args:
            input_tokens: All input (prompt) tokens, cached ones included.
            output_tokens: Output (completion) tokens, reasoning tokens included.
            cached_tokens: Input tokens served from the prompt cache (clamped to
                ``input_tokens``).

        Returns:
            The cost in US dollars.
        """
        cached = min(cached_tokens, input_tokens)
        cached_rate = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok
        )
        total = (
            (input_tokens - cached) * self.input_per_mtok
            + cached * cached_rate
            + output_tokens * self.output_per_mtok
        )
        return total / _MTOK


def _check_tokens(input_tokens: int, output_tokens: int, cached_tokens: int) -> None:
    for name, value in (
        ("input_tokens", input_tokens),
        ("output_tokens", output_tokens),
        ("cached_tokens", cached_tokens),
    ):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


class Pricer:
    """Prices model calls from ``genai-prices``, with per-model overrides.

    Lookup order: an override for the exact model name (then its lower-cased form), then
    ``genai-prices`` (which resolves dated and aliased names such as
    ``gpt-4o-mini-2024-07-18``), then, for names written ``provider:model`` or
    ``provider/model``, ``genai-prices`` with that provider. A model found nowhere costs
    ``None`` and triggers one :class:`UnpricedModelWarning` per model name; pricing never
    raises for an unknown model.

    ``genai-prices`` is imported on first use and only its bundled snapshot is read; no
    network access happens.

    Args:
        overrides: Model name -> :class:`ModelPrice` (or a mapping with its fields).
        provider: Default ``genai-prices`` provider id (``"openai"``, ``"azure"``, ...)
            when a model name alone is ambiguous; ``None`` lets ``genai-prices`` infer it.

    Example:
        >>> pricer = Pricer({"my-local-llama": {"input_per_mtok": 0, "output_per_mtok": 0}})
        >>> pricer.cost("my-local-llama", 1000, 200)
        0.0
        >>> round(pricer.cost("gpt-4o-mini", 1_000_000, 0), 2)  # from genai-prices
        0.15
    """

    def __init__(
        self,
        overrides: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None,
        provider: str | None = None,
    ) -> None:
        self.overrides: dict[str, ModelPrice] = {
            name: value if isinstance(value, ModelPrice) else ModelPrice.model_validate(value)
            for name, value in (overrides or {}).items()
        }
        self._lower_overrides = {name.lower(): price for name, price in self.overrides.items()}
        self.provider = provider
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._unknown: set[tuple[str, str | None]] = set()

    def __repr__(self) -> str:
        return f"Pricer(overrides={sorted(self.overrides)!r}, provider={self.provider!r})"

    def _override(self, model: str) -> ModelPrice | None:
        return self.overrides.get(model) or self._lower_overrides.get(model.lower())

    def _warn_once(self, model: str, detail: str) -> None:
        with self._lock:
            if model in self._warned:
                return
            self._warned.add(model)
        warnings.warn(
            f"no price known for model {model!r} ({detail}); its calls are recorded with "
            "cost=None. Pass Pricer(overrides={model: ModelPrice(...)}) to price it.",
            UnpricedModelWarning,
            stacklevel=3,
        )

    def _calc(
        self,
        model: str,
        provider: str | None,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int,
    ) -> float:
        """Price through genai-prices; raises LookupError / ValueError like it does."""
        from genai_prices import Usage, calc_price

        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cached_tokens,
        )
        try:
            result = calc_price(usage, model, provider_id=provider)
        except LookupError:
            if provider is not None:
                raise
            # "openai:gpt-4o-mini" (init_chat_model style) or "openai/gpt-4o-mini" (LiteLLM,
            # OpenRouter style): retry with the prefix as the provider.
            for sep in (":", "/"):
                prefix, found, rest = model.partition(sep)
                if found and prefix and rest:
                    with contextlib.suppress(LookupError):
                        result = calc_price(usage, rest, provider_id=prefix)
                        break
            else:
                raise
        return float(result.total_price)

    def cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
        provider: str | None = None,
    ) -> float | None:
        """The cost of one call in US dollars, or ``None`` when the model has no known price.

        Args:
            model: The model name as the provider reports it (``"gpt-4o-mini"``).
            input_tokens: All input tokens, cached ones included (LangChain's
                ``usage_metadata["input_tokens"]``).
            output_tokens: Output tokens.
            cached_tokens: The part of ``input_tokens`` read from the prompt cache
                (LangChain's ``input_token_details["cache_read"]``), priced at the cached
                rate when one is known. Clamped to ``input_tokens``.
            provider: ``genai-prices`` provider id for this call (default: the pricer's).

        Returns:
            USD, or ``None`` (with one :class:`UnpricedModelWarning` per model name).

        Raises:
            ValueError: A token count is negative.

        Example:
            >>> Pricer().cost("no-such-model-xyz", 10, 10) is None  # doctest: +SKIP
            True
        """
        _check_tokens(input_tokens, output_tokens, cached_tokens)
        cached_tokens = min(cached_tokens, input_tokens)
        override = self._override(model)
        if override is not None:
            return override.cost(input_tokens, output_tokens, cached_tokens)
        provider = provider if provider is not None else self.provider
        key = (model, provider)
        if key in self._unknown:
            self._warn_once(model, "not in genai-prices")
            return None
        try:
            return self._calc(model, provider, input_tokens, output_tokens, cached_tokens)
        except LookupError as exc:
            with self._lock:
                self._unknown.add(key)
            self._warn_once(model, f"genai-prices: {exc}")
            return None
        except ValueError as exc:  # genai-prices rejected the usage for this model
            self._warn_once(model, f"genai-prices: {exc}")
            return None

    def price(self, model: str, provider: str | None = None) -> ModelPrice | None:
        """The per-million-token prices of ``model`` (base tier), or ``None`` if unknown.

        Useful to show or sort routes by price. Tiered prices (for example above 200k
        input tokens) report their base tier; :meth:`cost` applies the tiers.

        Example:
            >>> Pricer().price("gpt-4o-mini").output_per_mtok  # doctest: +SKIP
            0.6
        """
        override = self._override(model)
        if override is not None:
            return override
        provider = provider if provider is not None else self.provider
        from genai_prices import Usage, calc_price

        def as_float(value: Any) -> float | None:
            if value is None:
                return None
            return float(getattr(value, "base", value))

        candidates = [(model, provider)]
        if provider is None:
            for sep in (":", "/"):
                prefix, found, rest = model.partition(sep)
                if found and prefix and rest:
                    candidates.append((rest, prefix))
        for ref, prov in candidates:
            try:
                result = calc_price(Usage(input_tokens=0, output_tokens=0), ref, provider_id=prov)
            except (LookupError, ValueError):
                continue
            prices = result.model_price
            input_price = as_float(prices.input_mtok)
            output_price = as_float(prices.output_mtok)
            if input_price is None or output_price is None:
                return None
            return ModelPrice(
                input_per_mtok=input_price,
                output_per_mtok=output_price,
                cached_input_per_mtok=as_float(prices.cache_read_mtok),
            )
        return None


# --------------------------------------------------------------------------- records


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so what is stored equals what is read back."""
    return json.loads(json.dumps(value, default=str))


class LedgerRecord(BaseModel):
    """One paid model call (or one attempt of a cascade), as the ledger stores it.

    Attempts that belong to one user request (cascade tiers, a fallback after an error)
    should share ``run_id``: the summary then counts the request, and its baseline cost,
    once. Records without ``run_id`` are each their own request.

    ``baseline_cost`` is what the same tokens would have cost on ``baseline_model`` (the
    strongest route's model). :meth:`CostLedger.record` fills ``cost`` and
    ``baseline_cost`` from its :class:`Pricer` when they are left ``None``.

    Example:
        >>> rec = LedgerRecord(framework="core", kind="route", route="small",
        ...                    model="gpt-4o-mini", input_tokens=12, output_tokens=30)
        >>> rec.timestamp.tzinfo is not None, rec.escalated
        (True, False)
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    timestamp: datetime = Field(default_factory=_utcnow, description="When the call ended (UTC).")
    framework: str = Field(default="core", description='"langchain", "llama_index", "core", ...')
    run_id: str | None = Field(default=None, description="Identifier of the user request.")
    kind: Literal["route", "cascade"] = "route"
    route: str | None = None
    model: str | None = None
    input_tokens: int = Field(default=0, ge=0, description="Input tokens, cached ones included.")
    output_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0, description="Part of input_tokens read from cache.")
    cost: float | None = Field(default=None, description="USD; None when the price is unknown.")
    baseline_model: str | None = Field(default=None, description="The strongest route's model.")
    baseline_cost: float | None = Field(
        default=None, description="The same tokens priced at baseline_model (USD)."
    )
    latency_ms: float | None = None
    escalated: bool = Field(
        default=False, description="This call happened because a cheaper route failed/was rejected."
    )
    escalated_from: str | None = None
    error: str | None = Field(default=None, description='"ErrorType: message" if it failed.')
    reason: str | None = Field(default=None, description='Decision reason ("vote", ...).')
    confidence: float | None = None
    tier: int | None = Field(default=None, description="Cascade tier index (0 = cheapest).")
    accepted: bool | None = Field(default=None, description="Cascade: was this answer accepted.")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    @field_validator("metadata")
    @classmethod
    def _metadata_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _json_safe(value)


# --------------------------------------------------------------------------- sinks


@runtime_checkable
class Sink(Protocol):
    """Where a :class:`CostLedger` keeps its records.

    Implementations must be safe to call from several threads. ``count()`` is optional
    (the ledger falls back to ``len(read())``).
    """

    def write(self, record: LedgerRecord) -> None:
        """Append one record."""
        ...

    def read(self) -> list[LedgerRecord]:
        """All records, oldest first."""
        ...

    def close(self) -> None:
        """Release files and connections; further writes may reopen them."""
        ...


class MemorySink:
    """Keeps records in a list (lost when the process ends).

    Example:
        >>> sink = MemorySink()
        >>> sink.write(LedgerRecord(model="m"))
        >>> len(sink.read())
        1
    """

    def __init__(self) -> None:
        self._records: list[LedgerRecord] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemorySink({self.count()} records)"

    def write(self, record: LedgerRecord) -> None:
        """Append one record."""
        with self._lock:
            self._records.append(record)

    def read(self) -> list[LedgerRecord]:
        """A copy of the records, oldest first."""
        with self._lock:
            return list(self._records)

    def count(self) -> int:
        """Number of records."""
        with self._lock:
            return len(self._records)

    def close(self) -> None:
        """Nothing to release."""


def _read_jsonl(path: Path) -> Iterator[LedgerRecord]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LedgerFormatError(
                    f"not valid JSON ({exc.msg})", path=path, line=number
                ) from exc
            if not isinstance(data, dict):
                raise LedgerFormatError(
                    f"expected a JSON object, got {type(data).__name__}", path=path, line=number
                )
            try:
                yield LedgerRecord.model_validate(data)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(part) for part in first["loc"]) or "record"
                raise LedgerFormatError(
                    f"field {field!r}: {first['msg']}", path=path, line=number
                ) from exc


class JSONLSink:
    """Appends records to a JSON Lines file, one record per line.

    Each write opens the file in append mode, writes one line, flushes and closes it, so
    nothing stays open, a crash loses at most the record being written, and log
    rotation is safe. A lock serialises this process's threads; on POSIX an advisory
    ``flock`` also serialises writers in other processes. The file and its parent folder
    are created on the first write.

    Example:
        >>> sink = JSONLSink("costs.jsonl")  # doctest: +SKIP
        >>> sink.write(LedgerRecord(model="gpt-4o-mini"))  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JSONLSink({str(self.path)!r})"

    def write(self, record: LedgerRecord) -> None:
        """Append one record as one line and flush it."""
        line = record.model_dump_json() + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle, _file_lock(handle):
                handle.write(line)
                handle.flush()

    def read(self) -> list[LedgerRecord]:
        """All records in file order ([] if the file does not exist yet).

        Raises:
            LedgerFormatError: A line is not a valid record (file and line named).
        """
        if not self.path.exists():
            return []
        return list(_read_jsonl(self.path))

    def count(self) -> int:
        """Number of records."""
        return len(self.read())

    def close(self) -> None:
        """Nothing stays open between writes; kept for the :class:`Sink` protocol."""


@contextlib.contextmanager
def _file_lock(handle: Any) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: O_APPEND line writes only
        yield
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


_SQL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("timestamp", "TEXT NOT NULL"),
    ("framework", "TEXT NOT NULL"),
    ("run_id", "TEXT"),
    ("kind", "TEXT NOT NULL"),
    ("route", "TEXT"),
    ("model", "TEXT"),
    ("input_tokens", "INTEGER NOT NULL"),
    ("output_tokens", "INTEGER NOT NULL"),
    ("cached_tokens", "INTEGER NOT NULL"),
    ("cost", "REAL"),
    ("baseline_model", "TEXT"),
    ("baseline_cost", "REAL"),
    ("latency_ms", "REAL"),
    ("escalated", "INTEGER NOT NULL"),
    ("escalated_from", "TEXT"),
    ("error", "TEXT"),
    ("reason", "TEXT"),
    ("confidence", "REAL"),
    ("tier", "INTEGER"),
    ("accepted", "INTEGER"),
    ("metadata", "TEXT NOT NULL"),
)
_SQL_NAMES = tuple(name for name, _ in _SQL_COLUMNS)
_SQL_TABLE = "ledger"
_SQL_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {_SQL_TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    + ", ".join(f"{name} {decl}" for name, decl in _SQL_COLUMNS)
    + ")"
)
_SQL_INSERT = (
    f"INSERT INTO {_SQL_TABLE} ({', '.join(_SQL_NAMES)}) "
    f"VALUES ({', '.join('?' for _ in _SQL_NAMES)})"
)
_SQL_SELECT = f"SELECT {', '.join(_SQL_NAMES)} FROM {_SQL_TABLE} ORDER BY id"


class SQLiteSink:
    """Appends records to a SQLite database file that several processes can share.

    The table ``ledger`` has one typed column per :class:`LedgerRecord` field (booleans
    as 0/1, the timestamp as ISO-8601 text) and ``metadata`` as JSON text; it is created
    if missing. The database uses WAL journaling (``synchronous=NORMAL``) and a busy
    timeout, so writers in other processes wait for each other instead of failing.
    Each thread gets its own connection (a new one after ``fork``); a lock serialises
    this process's writers. Every write is committed before it returns.

    Args:
        path: The database file (created with its parent folder if missing).
        timeout: Seconds a writer waits for another process's lock.

    Example:
        >>> sink = SQLiteSink("costs.db")  # doctest: +SKIP
        >>> sink.write(LedgerRecord(model="gpt-4o-mini"))  # doctest: +SKIP
        >>> # sqlite3 costs.db "select route, sum(cost) from ledger group by route"
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[tuple[int, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._ready_pid: int | None = None
        self._finalizer = weakref.finalize(self, _close_connections, self._connections)

    def __repr__(self) -> str:
        return f"SQLiteSink({str(self.path)!r})"

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use, reopened after fork)."""
        pid = os.getpid()
        cached = getattr(self._local, "conn", None)
        if cached is not None and cached[0] == pid:
            return cached[1]
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError:
            conn.close()
            raise
        self._local.conn = (pid, conn)
        with self._connections_lock:
            self._connections.append((pid, conn))
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        if self._ready_pid == os.getpid():
            return
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":  # pragma: no cover - exotic fs
            warnings.warn(
                f"{self.path}: SQLite WAL mode unavailable (got {mode!r})",
                RuntimeWarning,
                stacklevel=3,
            )
        conn.execute(_SQL_CREATE)
        self._check_columns(conn)
        self._ready_pid = os.getpid()

    def _check_columns(self, conn: sqlite3.Connection) -> None:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({_SQL_TABLE})")}
        missing = [name for name in _SQL_NAMES if name not in present]
        if missing:
            raise LedgerFormatError(
                f"table {_SQL_TABLE!r} lacks columns {missing}: not a langroute ledger",
                path=self.path,
            )

    def write(self, record: LedgerRecord) -> None:
        """Insert one record (committed before returning)."""
        row = _record_to_row(record)
        with self._lock:
            try:
                if self._ready_pid != os.getpid():
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = self._conn()
                self._ensure_schema(conn)
                conn.execute(_SQL_INSERT, row)
            except sqlite3.OperationalError:
                raise
            except sqlite3.DatabaseError as exc:  # "file is not a database" and the like
                raise LedgerFormatError(f"not a SQLite ledger: {exc}", path=self.path) from exc

    def read(self) -> list[LedgerRecord]:
        """All records in insertion order ([] if the database does not exist yet).

        Raises:
            LedgerFormatError: The file is not a SQLite langroute ledger.
        """
        if not self.path.exists():
            return []
        try:
            conn = self._conn()
            tables = {
                row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if _SQL_TABLE not in tables:
                if not tables:
                    return []
                raise LedgerFormatError(
                    f"no {_SQL_TABLE!r} table (found {sorted(tables)}): not a langroute ledger",
                    path=self.path,
                )
            self._check_columns(conn)
            rows = conn.execute(_SQL_SELECT).fetchall()
        except sqlite3.DatabaseError as exc:
            raise LedgerFormatError(f"not a readable SQLite ledger: {exc}", path=self.path) from exc
        records = []
        for number, row in enumerate(rows, start=1):
            try:
                records.append(_row_to_record(row))
            except (ValidationError, ValueError) as exc:
                raise LedgerFormatError(
                    f"row {number} is not a valid record: {exc}", path=self.path
                ) from exc
        return records

    def count(self) -> int:
        """Number of records."""
        if not self.path.exists():
            return 0
        try:
            return int(self._conn().execute(f"SELECT COUNT(*) FROM {_SQL_TABLE}").fetchone()[0])
        except sqlite3.OperationalError:  # no table yet
            return 0

    def close(self) -> None:
        """Close this process's connections (later calls reopen them)."""
        with self._connections_lock:
            _close_connections(self._connections)
        self._local = threading.local()
        self._ready_pid = None


def _close_connections(connections: list[tuple[int, sqlite3.Connection]]) -> None:
    """Close (and forget) the connections this process opened."""
    pid = os.getpid()
    for owner, conn in connections:
        if owner == pid:
            conn.close()
    connections.clear()


def _record_to_row(record: LedgerRecord) -> tuple[Any, ...]:
    data = record.model_dump()
    data["timestamp"] = record.timestamp.isoformat()
    data["escalated"] = int(record.escalated)
    data["accepted"] = None if record.accepted is None else int(record.accepted)
    data["metadata"] = json.dumps(record.metadata)
    return tuple(data[name] for name in _SQL_NAMES)


def _row_to_record(row: Sequence[Any]) -> LedgerRecord:
    data = dict(zip(_SQL_NAMES, row, strict=True))
    data["metadata"] = json.loads(data["metadata"] or "{}")
    data["escalated"] = bool(data["escalated"])
    if data["accepted"] is not None:
        data["accepted"] = bool(data["accepted"])
    return LedgerRecord.model_validate(data)


def _sink_for(target: str | Path | Sink | None) -> Sink:
    if target is None or (isinstance(target, str) and target == "memory"):
        return MemorySink()
    if isinstance(target, (str, Path)):
        path = Path(target)
        suffix = path.suffix.lower()
        if suffix in _JSONL_SUFFIXES:
            return JSONLSink(path)
        if suffix in _SQLITE_SUFFIXES:
            return SQLiteSink(path)
        raise LedgerFormatError(
            f"unsupported ledger file type {suffix or '(no suffix)'!r}: use .jsonl for JSON "
            "Lines or .db / .sqlite / .sqlite3 for SQLite",
            path=path,
        )
    if isinstance(target, Sink):
        return target
    raise TypeError(f"sink must be None, 'memory', a path or a Sink, not {type(target).__name__}")


# --------------------------------------------------------------------------- summary


class RouteCostSummary(BaseModel):
    """Aggregates of the ledger records of one route.

    ``escalations`` counts this route's calls that happened because a cheaper route
    failed or was rejected; ``rejected`` counts its cascade answers that were not
    accepted. ``cost`` sums the priced calls (``None`` when none was priced);
    ``unpriced_calls`` says how many are missing from it.
    """

    model_config = ConfigDict(frozen=True)

    route: str | None
    models: list[str] = Field(default_factory=list)
    calls: int = 0
    errors: int = 0
    escalations: int = 0
    escalation_rate: float = 0.0
    rejected: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None = None
    unpriced_calls: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None


class LedgerSummary(BaseModel):
    """Per-route and total aggregates of a ledger.

    * ``requests``: user requests (records sharing a ``run_id`` count once).
    * ``escalation_rate``: share of requests with at least one escalated call.
    * ``baseline_cost``: per request, its largest ``baseline_cost`` (what always calling
      the strongest route would have cost), summed.
    * ``savings`` / ``savings_pct``: baseline minus actual cost, over the requests whose
      calls are all priced and whose baseline is known; ``savings_pct`` is in percent of
      that baseline. ``None`` when no request qualifies.
    * Latency percentiles use linear interpolation between closest ranks (numpy's default).

    Example:
        >>> CostLedger().summary().calls
        0
    """

    model_config = ConfigDict(frozen=True)

    routes: list[RouteCostSummary] = Field(default_factory=list)
    requests: int = 0
    calls: int = 0
    errors: int = 0
    escalations: int = 0
    escalated_requests: int = 0
    escalation_rate: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None = None
    unpriced_calls: int = 0
    baseline_models: list[str] = Field(default_factory=list)
    baseline_cost: float | None = None
    savings: float | None = None
    savings_pct: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None

    def route(self, name: str | None) -> RouteCostSummary:
        """The summary of one route.

        Raises:
            KeyError: No record has that route.
        """
        for item in self.routes:
            if item.route == name:
                return item
        raise KeyError(name)


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _sum_costs(records: Sequence[LedgerRecord]) -> tuple[float | None, int]:
    known = [r.cost for r in records if r.cost is not None]
    unpriced = len(records) - len(known)
    return (math.fsum(known) if known else None), unpriced


def _summarize_route(route: str | None, records: Sequence[LedgerRecord]) -> RouteCostSummary:
    cost, unpriced = _sum_costs(records)
    latencies = [r.latency_ms for r in records if r.latency_ms is not None]
    escalations = sum(r.escalated for r in records)
    models = list(dict.fromkeys(r.model for r in records if r.model is not None))
    return RouteCostSummary(
        route=route,
        models=models,
        calls=len(records),
        errors=sum(r.error is not None for r in records),
        escalations=escalations,
        escalation_rate=escalations / len(records) if records else 0.0,
        rejected=sum(r.accepted is False for r in records),
        input_tokens=sum(r.input_tokens for r in records),
        output_tokens=sum(r.output_tokens for r in records),
        cached_tokens=sum(r.cached_tokens for r in records),
        cost=cost,
        unpriced_calls=unpriced,
        latency_p50_ms=_percentile(latencies, 50),
        latency_p95_ms=_percentile(latencies, 95),
    )


def summarize(records: Iterable[LedgerRecord], order: Sequence[str] | None = None) -> LedgerSummary:
    """Aggregate records into a :class:`LedgerSummary`.

    Args:
        records: Ledger records, oldest first.
        order: Route names to list first, in this order; other routes follow in order
            of first appearance.

    Returns:
        The summary.

    Example:
        >>> summarize([LedgerRecord(route="small", cost=0.5)]).cost
        0.5
    """
    records = list(records)
    by_route: dict[str | None, list[LedgerRecord]] = {name: [] for name in order or ()}
    requests: dict[str, list[LedgerRecord]] = {}
    for rec in records:
        by_route.setdefault(rec.route, []).append(rec)
        key = f"run:{rec.run_id}" if rec.run_id is not None else f"rec:{uuid.uuid4().hex}"
        requests.setdefault(key, []).append(rec)
    routes = [_summarize_route(name, recs) for name, recs in by_route.items() if recs]

    baseline_total: list[float] = []
    compared_baseline: list[float] = []
    compared_cost: list[float] = []
    escalated_requests = 0
    for group in requests.values():
        escalated_requests += any(r.escalated for r in group)
        baselines = [r.baseline_cost for r in group if r.baseline_cost is not None]
        if not baselines:
            continue
        baseline = max(baselines)
        baseline_total.append(baseline)
        if all(r.cost is not None for r in group):
            compared_baseline.append(baseline)
            compared_cost.extend(r.cost for r in group if r.cost is not None)

    savings: float | None = None
    savings_pct: float | None = None
    if compared_baseline:
        base = math.fsum(compared_baseline)
        savings = base - math.fsum(compared_cost)
        savings_pct = 100.0 * savings / base if base > 0 else None

    cost, unpriced = _sum_costs(records)
    latencies = [r.latency_ms for r in records if r.latency_ms is not None]
    timestamps = [r.timestamp for r in records]
    escalations = sum(r.escalated for r in records)
    return LedgerSummary(
        routes=routes,
        requests=len(requests),
        calls=len(records),
        errors=sum(r.error is not None for r in records),
        escalations=escalations,
        escalated_requests=escalated_requests,
        escalation_rate=escalated_requests / len(requests) if requests else 0.0,
        input_tokens=sum(r.input_tokens for r in records),
        output_tokens=sum(r.output_tokens for r in records),
        cached_tokens=sum(r.cached_tokens for r in records),
        cost=cost,
        unpriced_calls=unpriced,
        baseline_models=list(
            dict.fromkeys(r.baseline_model for r in records if r.baseline_model is not None)
        ),
        baseline_cost=math.fsum(baseline_total) if baseline_total else None,
        savings=savings,
        savings_pct=savings_pct,
        latency_p50_ms=_percentile(latencies, 50),
        latency_p95_ms=_percentile(latencies, 95),
        first_timestamp=min(timestamps) if timestamps else None,
        last_timestamp=max(timestamps) if timestamps else None,
    )


# --------------------------------------------------------------------------- ledger


class CostLedger:
    """Records the cost of every routed call and summarises it per route.

    Args:
        sink: ``None`` or ``"memory"`` (in memory), a path ending in ``.jsonl`` (JSON
            Lines), a path ending in ``.db`` / ``.sqlite`` / ``.sqlite3`` (SQLite, shareable
            by several processes), or any :class:`Sink`.
        pricer: Prices records whose ``cost`` / ``baseline_cost`` are ``None``
            (default: a plain :class:`Pricer`).
        auto_price: Set ``False`` to store records exactly as given.

    Raises:
        LedgerFormatError: The path has an unsupported suffix.

    Thread-safe; from asyncio use :meth:`arecord` (or :meth:`record`, which only does
    a fast local write).

    Example:
        >>> ledger = CostLedger()
        >>> _ = ledger.record(LedgerRecord(route="small", model="gpt-4o-mini",
        ...                                input_tokens=100, output_tokens=10))
        >>> len(ledger), ledger.records()[0].cost > 0
        (1, True)
    """

    def __init__(
        self,
        sink: str | Path | Sink | None = None,
        *,
        pricer: Pricer | None = None,
        auto_price: bool = True,
    ) -> None:
        self.sink: Sink = _sink_for(sink)
        self.pricer = pricer if pricer is not None else Pricer()
        self.auto_price = auto_price

    @classmethod
    def open(cls, path: str | Path, *, pricer: Pricer | None = None) -> CostLedger:
        """Open an existing JSONL or SQLite ledger (and check that it can be read).

        Raises:
            FileNotFoundError: The file does not exist.
            LedgerFormatError: Unsupported suffix, or a malformed line / table (the
                message names the file and line).

        Example:
            >>> CostLedger.open("costs.jsonl").summary()  # doctest: +SKIP
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no ledger at {path}")
        ledger = cls(path, pricer=pricer)
        ledger.records()  # validate now: fail with file and line
        return ledger

    def __repr__(self) -> str:
        return f"CostLedger({self.sink!r})"

    def __len__(self) -> int:
        count = getattr(self.sink, "count", None)
        return int(count()) if callable(count) else len(self.sink.read())

    def __enter__(self) -> CostLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def price(self, record: LedgerRecord) -> LedgerRecord:
        """Fill ``cost`` and ``baseline_cost`` where they are ``None`` and a model is set.

        Returns:
            The record, or an updated copy.
        """
        update: dict[str, float] = {}
        tokens = (record.input_tokens, record.output_tokens, record.cached_tokens)
        if record.cost is None and record.model is not None:
            cost = self.pricer.cost(record.model, *tokens)
            if cost is not None:
                update["cost"] = cost
        if record.baseline_cost is None and record.baseline_model is not None:
            baseline = self.pricer.cost(record.baseline_model, *tokens)
            if baseline is not None:
                update["baseline_cost"] = baseline
        return record.model_copy(update=update) if update else record

    def record(self, record: LedgerRecord) -> LedgerRecord:
        """Price (unless ``auto_price=False``) and store one record.

        Returns:
            The record as stored.
        """
        if self.auto_price:
            record = self.price(record)
        self.sink.write(record)
        return record

    async def arecord(self, record: LedgerRecord) -> LedgerRecord:
        """Async :meth:`record`: file and database writes run in a worker thread."""
        if isinstance(self.sink, MemorySink):
            return self.record(record)
        return await asyncio.to_thread(self.record, record)

    def records(self) -> list[LedgerRecord]:
        """All records, oldest first."""
        return self.sink.read()

    def summary(self, order: Sequence[str] | None = None) -> LedgerSummary:
        """Aggregate the records per route (see :class:`LedgerSummary`).

        Args:
            order: Route names to list first (for example cheapest to strongest).
        """
        return summarize(self.records(), order=order)

    def close(self) -> None:
        """Close the sink."""
        self.sink.close()


# --------------------------------------------------------------------------- report


def _fmt_usd(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value != 0 and abs(value) < 0.01:
        return f"${value:.6f}"
    return f"${value:,.4f}"


def _fmt_ms(p50: float | None, p95: float | None) -> str:
    if p50 is None or p95 is None:
        return "-"
    return f"{p50:,.0f} / {p95:,.0f}"


def _fmt_count(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:,.1f}M"
    if value >= 100_000:
        return f"{value / 1_000:,.1f}k"
    return f"{value:,}"


def _fmt_cost(cost: float | None, unpriced: int) -> str:
    text = _fmt_usd(cost)
    if unpriced and cost is not None:
        text += f" (+{unpriced} unpriced)"
    return text


def render_report(summary: LedgerSummary, *, title: str | None = "langroute cost report") -> Table:
    """A rich table of a summary: one row per route, a total row and a savings caption.

    The total row's "esc" cell counts requests with an escalation (and their
    share of all requests); route rows count that route's escalated calls (and their
    share of its calls). The "cached" column appears only when some input was cached.

    Example:
        >>> from rich.console import Console
        >>> Console().print(render_report(CostLedger().summary()))  # doctest: +SKIP
    """
    from rich.table import Table

    table = Table(title=title, show_footer=True, header_style="bold")
    show_cached = summary.cached_tokens > 0

    def escalated(count: int, rate: float) -> str:
        return f"{count:,} ({rate:.0%})" if count else "0"

    columns: list[tuple[str, str, Literal["left", "right"]]] = [
        ("route", "total", "left"),
        ("model", "", "left"),
        ("calls", f"{summary.calls:,}", "right"),
        ("err", f"{summary.errors:,}", "right"),
        ("esc", escalated(summary.escalated_requests, summary.escalation_rate), "right"),
        ("in tok", _fmt_count(summary.input_tokens), "right"),
        ("cached", _fmt_count(summary.cached_tokens), "right"),
        ("out tok", _fmt_count(summary.output_tokens), "right"),
        ("cost", _fmt_cost(summary.cost, summary.unpriced_calls), "right"),
        ("p50 / p95 ms", _fmt_ms(summary.latency_p50_ms, summary.latency_p95_ms), "right"),
    ]
    for header, footer, justify in columns:
        if header == "cached" and not show_cached:
            continue
        table.add_column(
            header,
            footer=footer,
            justify=justify,
            overflow="fold" if justify == "left" else "ellipsis",
            min_width=5 if justify == "left" else None,
        )
    for item in summary.routes:
        cells = [
            item.route if item.route is not None else "-",
            ", ".join(item.models) or "-",
            f"{item.calls:,}",
            f"{item.errors:,}",
            escalated(item.escalations, item.escalation_rate),
            _fmt_count(item.input_tokens),
            _fmt_count(item.cached_tokens),
            _fmt_count(item.output_tokens),
            _fmt_cost(item.cost, item.unpriced_calls),
            _fmt_ms(item.latency_p50_ms, item.latency_p95_ms),
        ]
        if not show_cached:
            del cells[6]
        table.add_row(*cells)
    lines = [f"{summary.requests:,} requests, {summary.calls:,} calls"]
    if summary.baseline_cost is not None:
        baseline = ", ".join(summary.baseline_models) or "baseline"
        lines.append(f"always {baseline}: {_fmt_usd(summary.baseline_cost)}")
    if summary.savings is not None:
        pct = "" if summary.savings_pct is None else f" ({summary.savings_pct:.1f}%)"
        lines.append(f"saved {_fmt_usd(summary.savings)}{pct}")
    table.caption = "; ".join(lines)
    return table


def print_report(
    source: CostLedger | LedgerSummary | str | Path,
    *,
    console: Console | None = None,
    order: Sequence[str] | None = None,
) -> LedgerSummary:
    """Print the cost report of a ledger (the ``langroute report LEDGER`` command).

    Args:
        source: A ledger, a summary, or the path of a JSONL / SQLite ledger file.
        console: Where to print (default: a new ``rich`` console on stdout).
        order: Route names to list first.

    Returns:
        The summary that was printed.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        LedgerFormatError: The file is malformed (file and line named).

    Example:
        >>> print_report("costs.jsonl")  # doctest: +SKIP
    """
    if isinstance(source, LedgerSummary):
        summary = source
    elif isinstance(source, CostLedger):
        summary = source.summary(order=order)
    else:
        summary = CostLedger.open(source).summary(order=order)
    if console is None:
        from rich.console import Console

        console = Console()
    console.print(render_report(summary))
    return summary
