"""API keys of ``langroute serve``: a JSON Lines file of hashed keys with spend budgets.

Each line holds one key: its name, the SHA-256 of the secret (the secret itself is
printed once, by ``langroute serve-key add``, and never stored), and an optional
budget in US dollars per period (``day``, ``week`` and ``month`` are calendar periods
in UTC; ``total`` never resets)::

    {"name": "team-a", "sha256": "9f86d0...", "budget": 5.0, "period": "day", "created": "..."}

Example:
    >>> secret, key = add_api_key("keys.jsonl", "team-a", budget=5.0, period="day")
    >>> secret.startswith("lr-"), key.sha256 == hash_secret(secret)
    (True, True)
    >>> load_api_keys("keys.jsonl").find(secret).name
    'team-a'
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langroute.errors import ApiKeysFileError
from langroute.files.durable import atomic_write_text

if TYPE_CHECKING:
    from langroute.costs import LedgerRecord

__all__ = [
    "KEY_METADATA",
    "ApiKey",
    "ApiKeys",
    "BudgetPeriod",
    "KeyRole",
    "add_api_key",
    "hash_secret",
    "load_api_keys",
    "period_start",
    "priced_calls_this_period",
    "remove_api_key",
]

BudgetPeriod = Literal["day", "week", "month", "total"]
"""How often a key's spend budget starts again (calendar periods in UTC)."""
KeyRole = Literal["client", "admin"]
"""What a key may do beyond asking: an ``admin`` key's feedback teaches the router at once."""

KEY_METADATA = "api_key"
"""Ledger ``metadata`` key naming the API key of a call (``langroute monitor --segment``)."""

_SECRET_PREFIX = "lr-"


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest a keys file stores for ``secret``."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def period_start(period: BudgetPeriod, now: datetime | None = None) -> datetime:
    """When the budget period that holds ``now`` (default: now, UTC) began.

    Example:
        >>> period_start("month", datetime(2025, 3, 17, 9, 30, tzinfo=timezone.utc)).isoformat()
        '2025-03-01T00:00:00+00:00'
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return datetime.min.replace(tzinfo=timezone.utc)


def priced_calls_this_period(
    records: Iterable[LedgerRecord], keys: ApiKeys, now: datetime | None = None
) -> Iterator[tuple[ApiKey, LedgerRecord]]:
    """The priced calls of ``records`` in their key's current budget period, with the key.

    Calls are matched to keys by the name in ``metadata["api_key"]``; feedback rows,
    calls of no known cost and calls of unknown keys are left out.
    """
    now = now or datetime.now(timezone.utc)
    for record in records:
        if record.is_feedback or not record.cost:
            continue
        key = keys.named(str(record.metadata.get(KEY_METADATA)))
        if key is not None and record.timestamp >= period_start(key.period, now):
            yield key, record


class ApiKey(BaseModel):
    """One API key as the keys file stores it (never the secret, only its SHA-256)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Who uses the key; named in the ledger.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the secret.")
    budget: float | None = Field(default=None, ge=0, description="USD per period; None: no budget.")
    period: BudgetPeriod = "day"
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    role: KeyRole = Field(
        default="client",
        description="client: its feedback teaches the shared router only once enough keys "
        "agree; admin: its feedback teaches at once.",
    )


class ApiKeys(BaseModel):
    """The keys of a keys file, found by their secret."""

    model_config = ConfigDict(frozen=True)

    path: Path | None = None
    keys: list[ApiKey] = Field(default_factory=list)

    def find(self, secret: str) -> ApiKey | None:
        """The key whose secret this is (``None``: no such key)."""
        digest = hash_secret(secret)
        for key in self.keys:
            if secrets.compare_digest(key.sha256, digest):
                return key
        return None

    def named(self, name: str) -> ApiKey | None:
        """The key called ``name`` (``None``: no such key)."""
        return next((key for key in self.keys if key.name == name), None)


def load_api_keys(path: str | Path) -> ApiKeys:
    """Read a keys file; a missing file holds no keys.

    Raises:
        ApiKeysFileError: A line is not a key, or two keys share a name or a secret
            (the message names the file and line).
    """
    path = Path(path)
    if not path.exists():
        return ApiKeys(path=path)
    keys: list[ApiKey] = []
    names: set[str] = set()
    digests: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiKeysFileError(f"{path}: cannot read the keys file: {exc}") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            key = ApiKey.model_validate_json(line)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"])
            problem = f"{field}: {error['msg']}" if field else error["msg"]
            raise ApiKeysFileError(f"{path}:{number}: not an API key: {problem}") from exc
        if key.name in names:
            raise ApiKeysFileError(f"{path}:{number}: a second key named {key.name!r}")
        if key.sha256 in digests:
            raise ApiKeysFileError(f"{path}:{number}: key {key.name!r} repeats a secret")
        names.add(key.name)
        digests.add(key.sha256)
        keys.append(key)
    return ApiKeys(path=path, keys=keys)


def _write_keys(path: Path, keys: list[ApiKey]) -> None:
    """Replace the file at once (a reader sees the old file or the new, never a part)."""
    atomic_write_text(path, "".join(key.model_dump_json() + "\n" for key in keys), mode=0o600)


def add_api_key(
    path: str | Path,
    name: str,
    *,
    budget: float | None = None,
    period: BudgetPeriod = "day",
    role: KeyRole = "client",
) -> tuple[str, ApiKey]:
    """Create a key: store its hash in the keys file, return the secret (shown once).

    Returns:
        The secret (``"lr-..."``) and the stored key.

    Raises:
        ApiKeysFileError: The file is malformed, a key is already called ``name``, or
            the budget or period is invalid.
    """
    path = Path(path)
    existing = load_api_keys(path)
    if existing.named(name) is not None:
        raise ApiKeysFileError(f"{path}: a key named {name!r} exists already")
    secret = _SECRET_PREFIX + secrets.token_urlsafe(32)
    try:
        key = ApiKey(name=name, sha256=hash_secret(secret), budget=budget, period=period, role=role)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ApiKeysFileError(f"{path}: {error['loc'][0]}: {error['msg']}") from exc
    _write_keys(path, [*existing.keys, key])
    return secret, key


def remove_api_key(path: str | Path, name: str) -> ApiKey:
    """Delete the key called ``name`` from the keys file.

    Raises:
        ApiKeysFileError: The file is malformed or holds no key of that name.
    """
    path = Path(path)
    existing = load_api_keys(path)
    key = existing.named(name)
    if key is None:
        names = [k.name for k in existing.keys]
        raise ApiKeysFileError(f"{path}: no key named {name!r}; keys: {names}")
    _write_keys(path, [k for k in existing.keys if k.name != name])
    return key
