"""Dynamic batching: concurrent single requests share one batched call.

Threads calling :meth:`RequestBatcher.submit` and asyncio tasks awaiting
:meth:`RequestBatcher.asubmit` hand in one item each; items that arrive while a batch
is running are run together in the next call, and each caller gets its own result.

* A lone caller runs its item at once, in its own thread: no queue, no wait.
* While a batch runs, new items queue. When it ends, a worker thread takes the queue
  (at most ``max_batch`` items) and, if fewer callers are back than were in the last
  batch, waits at most ``max_wait_ms`` for the others before it runs them.
* ``run`` gets the items and how long each waited in the queue (``0.0`` for one run at
  once), so callers can report their own latency.
* One failing item never fails its neighbours: when a batch raises, its items are run
  again one by one and only the failing one gets the error.

Example:
    >>> batcher = RequestBatcher(lambda items, waits: [len(item) for item in items])
    >>> batcher.submit("four")
    4
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["MAX_BATCH", "MAX_WAIT_MS", "RequestBatcher"]

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 64
"""Default cap on the items of one batch."""
MAX_WAIT_MS = 1.0
"""Default longest wait for more callers before a batch runs (only under concurrency)."""


class _Pending:
    """One caller's item and, once run, its result or error."""

    __slots__ = ("done", "error", "future", "item", "loop", "queued", "result")

    def __init__(self, item: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.item = item
        self.result: Any = None
        self.error: BaseException | None = None
        self.loop = loop
        self.future: asyncio.Future[Any] | None = loop.create_future() if loop else None
        self.done = threading.Event()
        self.queued: float | None = None  # when it joined the queue (None: run at once)

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()
        if self.loop is not None and self.future is not None:
            # a closed event loop raises RuntimeError: nobody is waiting there any more
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(_settle, self.future, result, error)

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class RequestBatcher(Generic[T, R]):
    """Runs concurrent single items through ``run`` in shared batches.

    Args:
        run: ``run(items, waits)`` -> one result per item, in order; ``waits`` are the
            seconds each item spent queued. Called from one thread at a time.
        max_batch: The most items in one call.
        max_wait_ms: The longest a formed batch waits for more callers (only when
            other callers are expected back; never for a lone caller).
    """

    def __init__(
        self,
        run: Callable[[list[T], list[float]], Sequence[R]],
        *,
        max_batch: int = MAX_BATCH,
        max_wait_ms: float = MAX_WAIT_MS,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if not 0.0 <= max_wait_ms <= 1000.0:
            raise ValueError(f"max_wait_ms must be in [0, 1000], got {max_wait_ms}")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._busy = False  # a batch is running (in a caller's thread or the worker)
        self._handoff = False  # the worker owns the queue
        self._worker: threading.Thread | None = None
        self._last_size = 1
        self._batches = 0
        self._items = 0
        self._largest = 0
        self._queued = 0

    def submit(self, item: T) -> R:
        """Run ``item`` (alone, or in a batch with concurrent ones) and return its result."""
        pending = _Pending(item)
        if self._enqueue(pending):
            self._run_inline(pending)
        pending.done.wait()
        return pending.outcome()

    async def asubmit(self, item: T) -> R:
        """Async :meth:`submit`: the event loop is not blocked while the batch runs."""
        pending = _Pending(item, asyncio.get_running_loop())
        if self._enqueue(pending):
            await asyncio.to_thread(self._run_inline, pending)
        assert pending.future is not None
        return await pending.future

    def stats(self) -> dict[str, int]:
        """Batches run, items run, the largest batch, and how many items had to queue."""
        with self._cond:
            return {
                "batches": self._batches,
                "items": self._items,
                "largest": self._largest,
                "queued": self._queued,
            }

    def pending(self) -> int:
        """How many items are waiting for a batch right now."""
        with self._cond:
            return len(self._queue)

    # -- internals -------------------------------------------------------------------

    def _enqueue(self, pending: _Pending) -> bool:
        """Queue ``pending``; True when the caller should run it at once (idle batcher)."""
        with self._cond:
            if not self._busy and not self._queue:
                self._busy = True
                return True
            pending.queued = time.perf_counter()
            self._queued += 1
            self._queue.append(pending)
            self._cond.notify_all()
            return False

    def _run_inline(self, pending: _Pending) -> None:
        self._execute([pending])
        with self._cond:
            if self._queue:
                self._handoff = True
                self._ensure_worker()
                self._cond.notify_all()
            else:
                self._busy = False

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(
                target=self._work, name="langroute-batcher", daemon=True
            )
            self._worker.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._handoff:
                    self._cond.wait()
                wanted = min(self.max_batch, self._last_size)
                deadline = time.monotonic() + self.max_wait_ms / 1000
                while len(self._queue) < wanted:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                count = min(self.max_batch, len(self._queue))
                batch = [self._queue.popleft() for _ in range(count)]
            self._execute(batch)
            with self._cond:
                if not self._queue:
                    self._handoff = False
                    self._busy = False

    def _execute(self, batch: list[_Pending]) -> None:
        with self._cond:
            self._batches += 1
            self._items += len(batch)
            self._largest = max(self._largest, len(batch))
            self._last_size = len(batch)
        self._deliver(batch)

    def _deliver(self, batch: list[_Pending]) -> None:
        try:
            now = time.perf_counter()
            waits = [0.0 if p.queued is None else now - p.queued for p in batch]
            results = list(self._run([p.item for p in batch], waits))
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
        except Exception as exc:
            if len(batch) == 1:
                batch[0].finish(error=exc)
                return
            for pending in batch:  # find the failing item: the others still get answers
                self._deliver([pending])
            return
        except BaseException as exc:  # KeyboardInterrupt and the like: nobody hangs
            for pending in batch:
                pending.finish(error=exc)
            raise
        for pending, result in zip(batch, results):
            pending.finish(result)
