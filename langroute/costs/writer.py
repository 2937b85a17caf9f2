"""The ledger's writer: a bounded queue drained into a sink by a background thread.

A request never waits for a disk, a lock or a database: :meth:`LedgerWriter.submit` only
appends to a queue (unless the writer is built with ``background=False``). One daemon
thread per writer hands queued records to the sink in batches (the sink's ``write_many``
when it has one). Nothing is lost silently: a full queue drops the new record, a sink
that raises loses what it was given, and both are counted in :class:`LedgerStats` and
reported with a :class:`LedgerWriteWarning`. A sink that is only unreachable for now (a
database restarting) raises :class:`SinkUnavailableError`: its records stay queued and
are retried with backoff, so an outage costs records only once ``max_pending`` is full.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from langroute.costs.records import LedgerRecord
from langroute.costs.sinks import Sink
from langroute.errors import LedgerWriteWarning, SinkUnavailableError

__all__ = [
    "LedgerStats",
    "LedgerWriteWarning",
    "LedgerWriter",
    "SinkUnavailableError",
    "flush_writers_of",
]

_BATCH = 256
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 5.0
_log = logging.getLogger(__name__)


class LedgerStats(BaseModel):
    """What happened to the records given to a ledger.

    * ``written``: stored by the sink.
    * ``pending``: accepted and not yet written (queued, or being written).
    * ``dropped``: refused because ``max_pending`` records were already pending.
    * ``failed``: the sink raised while writing them (a lock held too long, a full disk).
    * ``retries``: batches put back in the queue because the sink was unavailable
      (:class:`SinkUnavailableError`); their records are still pending, not lost.
    * ``unavailable``: the sink's last write found it unavailable (records are held).

    Example:
        >>> LedgerStats(written=3).lost
        0
    """

    model_config = ConfigDict(frozen=True)

    written: int = 0
    pending: int = 0
    dropped: int = 0
    failed: int = 0
    retries: int = 0
    unavailable: bool = False

    @property
    def lost(self) -> int:
        """Records that will never be stored (``dropped + failed``)."""
        return self.dropped + self.failed


class LedgerWriter:
    """Writes a sink's records on a background thread, off the caller's path.

    The thread starts on the first :meth:`submit` (again after :meth:`close` or a
    ``fork``). The queue is per process: a forked child starts empty.

    Args:
        sink: Where records go.
        max_pending: Records that may wait (including those being written); more are
            dropped and counted.
        background: ``False`` writes in :meth:`submit` itself, which then raises what
            the sink raises (counted as failed).

    Raises:
        ValueError: ``max_pending`` is below 1.

    Example:
        >>> from langroute.costs import MemorySink
        >>> writer = LedgerWriter(MemorySink())
        >>> writer.submit(LedgerRecord(route="a")), writer.flush(), writer.stats.written
        (True, True, 1)
        >>> writer.close()
    """

    def __init__(self, sink: Sink, *, max_pending: int = 10_000, background: bool = True) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.sink = sink
        self.max_pending = max_pending
        self.background = background
        self._reset()
        _WRITERS.add(self)

    def _reset(self) -> None:
        """Fresh state (at construction and in a forked child)."""
        self._cond = threading.Condition()
        self._queue: deque[LedgerRecord] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._accepted = 0
        self._written = 0
        self._failed = 0
        self._dropped = 0
        self._overflowing = False
        self._retries = 0
        self._closing = False
        self._unavailable = False

    def __repr__(self) -> str:
        return f"LedgerWriter({self.sink!r})"

    @property
    def stats(self) -> LedgerStats:
        """Counts of written, pending, dropped and failed records (this process)."""
        with self._cond:
            return LedgerStats(
                written=self._written,
                pending=self._accepted - self._written - self._failed,
                dropped=self._dropped,
                failed=self._failed,
                retries=self._retries,
                unavailable=self._unavailable,
            )

    def submit(self, record: LedgerRecord) -> bool:
        """Queue one record without waiting.

        Returns:
            ``False`` when the queue was full and the record was dropped (counted, and
            warned about once per overflow).
        """
        if not self.background:
            return self._write_inline(record)
        with self._cond:
            pending = self._accepted - self._written - self._failed
            if pending >= self.max_pending:
                self._dropped += 1
                warn = not self._overflowing
                self._overflowing = True
                dropped = self._dropped
            else:
                self._queue.append(record)
                self._accepted += 1
                self._start()
                self._cond.notify_all()
                return True
        if warn:
            warnings.warn(
                LedgerWriteWarning(
                    f"{self.sink!r}: ledger write queue full ({self.max_pending} pending): "
                    f"records are being dropped ({dropped} so far, see ledger.stats)"
                ),
                stacklevel=3,
            )
        return False

    def _write_inline(self, record: LedgerRecord) -> bool:
        try:
            self.sink.write(record)
        except BaseException:
            with self._cond:
                self._accepted += 1
                self._failed += 1
            raise
        with self._cond:
            self._accepted += 1
            self._written += 1
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record submitted so far is written or has failed.

        Args:
            timeout: Seconds to wait at most (``None``: as long as it takes; each sink
                write is bounded by the sink's own lock timeout).

        Returns:
            ``True`` when nothing submitted before the call is still pending. ``False``
            after ``timeout``, or at once while the sink is unavailable (the records stay
            queued for the retries; a reader would find the sink unavailable too).
        """
        with self._cond:
            target = self._accepted
            if self._thread is threading.current_thread():  # a sink reading its ledger
                return self._written + self._failed >= target
            self._cond.wait_for(
                lambda: self._written + self._failed >= target or self._unavailable, timeout
            )
            return self._written + self._failed >= target

    def _drain(self) -> None:
        """Wait until everything submitted is written or failed (close: no more retries)."""
        with self._cond:
            target = self._accepted
            if self._thread is threading.current_thread():
                return
            self._cond.wait_for(lambda: self._written + self._failed >= target)

    def close(self) -> None:
        """Write what is pending, then stop the thread (a later :meth:`submit` restarts it).

        Records held back by an unavailable sink get one more try; if the sink is still
        unavailable they are counted as failed and warned about.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        try:
            self._drain()
        finally:
            with self._cond:
                self._closing = False
        with self._cond:
            thread = self._thread
            self._stopping = True
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            self._stopping = False

    def _start(self) -> None:
        """Start the thread if none runs (called with the condition held)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(
            target=self._run, name=f"langroute-ledger-{id(self):x}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        pause = _RETRY_FIRST_S
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
                batch = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
                closing = self._closing
            try:
                written, failures = self._write(batch)
            except SinkUnavailableError as exc:
                if not closing:
                    self._hold(batch, exc, pause)
                    pause = min(pause * 2, _RETRY_MAX_S)
                    continue
                written, failures = 0, [(batch, exc)]
            pause = _RETRY_FIRST_S
            if self._unavailable and written:
                _log.warning("%r: reachable again; writing the held records", self.sink)
            with self._cond:
                self._unavailable = False
                self._written += written
                self._failed += sum(len(records) for records, _ in failures)
                failed = self._failed
                if not self._queue:
                    self._overflowing = False
                self._cond.notify_all()
            for records, error in failures:
                _warn_failed(self.sink, records, error, failed)

    def _hold(self, batch: list[LedgerRecord], error: BaseException, pause: float) -> None:
        """Put a batch the sink could not take back at the queue's head; wait ``pause`` s."""
        with self._cond:
            self._queue.extendleft(reversed(batch))
            self._retries += 1
            first = not self._unavailable
            self._unavailable = True
            pending = self._accepted - self._written - self._failed
            self._cond.notify_all()
        if first:
            _log.warning(
                "%r: unavailable (%s); %d records held and retried, dropped only past "
                "max_pending=%d",
                self.sink,
                error,
                pending,
                self.max_pending,
            )
        with self._cond:
            self._cond.wait_for(lambda: self._closing, pause)

    def _write(
        self, batch: list[LedgerRecord]
    ) -> tuple[int, list[tuple[list[LedgerRecord], BaseException]]]:
        """Hand a batch to the sink: how many were written, and what failed with which error.

        A batch fails as a whole only for errors of the storage itself (a lock, a disk);
        when the sink rejects the data (``ValueError`` / ``TypeError``), each record is
        retried alone so that one bad record never costs its neighbours.

        Raises:
            SinkUnavailableError: The sink cannot be reached; nothing of the batch was
                written (the caller holds it for a retry).
        """
        write_many = getattr(self.sink, "write_many", None)
        if callable(write_many):
            try:
                write_many(batch)
                return len(batch), []
            except SinkUnavailableError:
                raise
            except (ValueError, TypeError) as exc:
                if len(batch) == 1:
                    return 0, [(batch, exc)]
            except BaseException as exc:  # a daemon thread: report everything, never die
                return 0, [(batch, exc)]
        written = 0
        failures: list[tuple[list[LedgerRecord], BaseException]] = []
        for position, record in enumerate(batch):
            try:
                self.sink.write(record)
                written += 1
            except SinkUnavailableError:
                if written == 0 and not failures:
                    raise
                # part of the batch is stored: hold back only the rest
                self._hold(batch[position:], SinkUnavailableError("unavailable"), 0)
                return written, failures
            except BaseException as exc:
                failures.append(([record], exc))
        return written, failures


def _warn_failed(
    sink: Sink, records: Sequence[LedgerRecord], error: BaseException, failed: int
) -> None:
    count = len(records)
    routes = ", ".join(sorted({str(record.route) for record in records}))
    warnings.warn(
        LedgerWriteWarning(
            f"{sink!r}: {count} record{'s' if count > 1 else ''} (route {routes}) lost: "
            f"{type(error).__name__}: {error} ({failed} failed so far, see ledger.stats)"
        ),
        stacklevel=2,
    )


_WRITERS: weakref.WeakSet[LedgerWriter] = weakref.WeakSet()


def flush_writers_of(sink: Sink) -> None:
    """Wait for this process's pending writes to ``sink``, the same file or database URL.

    Readers call it first, so a record is visible as soon as :meth:`CostLedger.record
    <langroute.costs.CostLedger.record>` returns, whichever ledger reads the file.
    """
    path = getattr(sink, "path", None)
    target = _resolved(path) if isinstance(path, Path) else None
    url = getattr(sink, "url", None)
    for writer in list(_WRITERS):
        if writer.sink is sink:
            writer.flush()
            continue
        other = getattr(writer.sink, "path", None)
        same_file = target is not None and isinstance(other, Path) and _resolved(other) == target
        same_database = isinstance(url, str) and getattr(writer.sink, "url", None) == url
        if same_file or same_database:
            writer.flush()


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:  # pragma: no cover - unreadable parent
        return path.absolute()


def _reset_after_fork() -> None:
    """In a forked child: no writer thread survived, and the parent's queue is its own."""
    for writer in list(_WRITERS):
        writer._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
