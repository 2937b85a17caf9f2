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
from datetime import datetime, timezone
from pathlib import Path

from langroute.costs import LedgerRecord
from langroute.errors import ApiKeysFileError
from langroute.serving.keys import ApiKey, ApiKeys, load_api_keys, period_start

__all__ = ["KEY_METADATA", "KeyRing", "Spend"]

KEY_METADATA = "api_key"
"""Ledger ``metadata`` key naming the API key of a call (``langroute monitor --segment``)."""


class KeyRing:
    """The keys of a keys file, reread when the file changes.

    Args:
        path: The keys file.

    Raises:
        ApiKeysFileError: The file is malformed at start (a file that turns malformed
            later is reported with a warning, and the last good keys stay in force).
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
    """Spend in US dollars per key and budget period (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent: dict[tuple[str, str, datetime], float] = defaultdict(float)

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

    def over_budget(self, key: ApiKey, now: datetime | None = None) -> bool:
        """Whether ``key`` has a budget and has spent all of it this period."""
        return key.budget is not None and self.spent(key, now) >= key.budget

    def load(self, records: Iterable[LedgerRecord], keys: ApiKeys) -> int:
        """Add the priced calls of the current periods from a ledger; returns how many.

        Calls are matched to keys by the name in ``metadata["api_key"]``.
        """
        now = datetime.now(timezone.utc)
        added = 0
        for record in records:
            if record.is_feedback or not record.cost:
                continue
            key = keys.named(str(record.metadata.get(KEY_METADATA)))
            if key is None or record.timestamp < period_start(key.period, now):
                continue
            self.add(key, record.cost, record.timestamp)
            added += 1
        return added
