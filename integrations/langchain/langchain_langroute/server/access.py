"""Who may call ``langroute serve`` and how much they may spend: API keys and budgets.

:class:`KeyRing` reads the keys file (``langroute serve-key add``) and rereads it when
it changes, so keys added or removed take effect at the next request. :class:`Spend`
sums each key's priced calls per budget period; at start it is rebuilt from the ledger,
so a restart does not reset a budget.
"""

from __future__ import annotations

import threading
import warnings
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from langroute.costs import LedgerRecord
from langroute.errors import ApiKeysFileError
from langroute.serving.keys import (
    KEY_METADATA,
    ApiKey,
    ApiKeys,
    load_api_keys,
    period_start,
    priced_calls_this_period,
)

__all__ = ["KEY_METADATA", "KeyRing", "Spend"]


class KeyRing:
    """The keys of a keys file, reread when the file changes.

    Args:
        path: The keys file.

    Raises:
        ApiKeysFileError: The file is missing or malformed at start. A file that is
            deleted or turns malformed later is reported with a warning, and the last
            good keys stay in force until it is readable again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys = ApiKeys(path=path)
        self._reload(strict=True)

    def _signature(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def _reload(self, *, strict: bool) -> None:
        stamp = self._signature()
        if stamp == self._stamp and self._stamp is not None:
            return
        if stamp is None:  # no file: every request would be a silent 401
            problem = f"{self.path}: the keys file does not exist"
            if strict:
                raise ApiKeysFileError(
                    f"{problem}; create it with 'langroute serve-key add' (an empty file "
                    "means no key is accepted)"
                )
            if self._stamp is not None:
                warnings.warn(
                    f"{problem} (deleted?); the keys read before stay in force", stacklevel=2
                )
                self._stamp = None
            return
        try:
            keys = load_api_keys(self.path)
        except ApiKeysFileError as exc:
            if strict:
                raise
            warnings.warn(f"{exc}; the keys read before stay in force", stacklevel=2)
            self._stamp = stamp
            return
        self._keys, self._stamp = keys, stamp

    def keys(self) -> ApiKeys:
        """The current keys (the file is reread if it changed)."""
        with self._lock:
            self._reload(strict=False)
            return self._keys

    def find(self, secret: str) -> ApiKey | None:
        """The key of a secret (``None``: unknown)."""
        return self.keys().find(secret)


class Spend:
    """Spend in US dollars per key and budget period, and reservations (thread-safe).

    A call reserves its worst-case cost before it runs (:meth:`reserve`) and releases
    the reservation once its real cost was added (:meth:`release`), so concurrent calls
    of one key see each other's worst cases and the budget is passed by at most one
    call's worst case.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent: dict[tuple[str, str, datetime], float] = defaultdict(float)
        self._reserved: dict[tuple[str, str, datetime], float] = defaultdict(float)

    def add(self, key: ApiKey, cost: float, when: datetime | None = None) -> None:
        """Add ``cost`` to ``key``'s period that holds ``when`` (default: now)."""
        start = period_start(key.period, when)
        with self._lock:
            self._spent[(key.name, key.period, start)] += cost

    def spent(self, key: ApiKey, now: datetime | None = None) -> float:
        """What ``key`` has spent in its current period."""
        start = period_start(key.period, now)
        with self._lock:
            return self._spent.get((key.name, key.period, start), 0.0)

    def reserve(self, key: ApiKey, amount: float, now: datetime | None = None) -> datetime | None:
        """Hold ``amount`` of ``key``'s budget for a call, if any of it is left.

        A key is admitted while what it spent plus what running calls hold is below its
        budget (so a key that spent exactly its budget, or has a $0 budget, is not).

        Returns:
            The period the reservation belongs to (pass it to :meth:`release`), or
            ``None``: the budget is used up and nothing was reserved.
        """
        start = period_start(key.period, now)
        slot = (key.name, key.period, start)
        with self._lock:
            held = self._spent.get(slot, 0.0) + self._reserved.get(slot, 0.0)
            if key.budget is not None and held >= key.budget:
                return None
            self._reserved[slot] += amount
        return start

    def release(self, key: ApiKey, amount: float, start: datetime) -> None:
        """Give back a reservation of :meth:`reserve` (its call's cost was added)."""
        slot = (key.name, key.period, start)
        with self._lock:
            left = self._reserved.get(slot, 0.0) - amount
            if left > 1e-12:
                self._reserved[slot] = left
            else:
                self._reserved.pop(slot, None)

    def reserved(self, key: ApiKey, now: datetime | None = None) -> float:
        """What running calls of ``key`` hold in its current period."""
        start = period_start(key.period, now)
        with self._lock:
            return self._reserved.get((key.name, key.period, start), 0.0)

    def load(self, records: Iterable[LedgerRecord], keys: ApiKeys) -> int:
        """Add the priced calls of the current periods from a ledger; returns how many.

        Calls are matched to keys by the name in ``metadata["api_key"]``.
        """
        added = 0
        for key, record in priced_calls_this_period(records, keys):
            self.add(key, record.cost or 0.0, record.timestamp)
            added += 1
        return added
