"""What a verdict posted to ``POST /v1/feedback`` teaches the router.

:func:`teach_router` turns a verdict into a learned exemplar. With API keys, one tenant
must not re-route everyone: :class:`FeedbackQuorum` holds a client key's verdict until
enough distinct keys agree on the same query, and :class:`FeedbackRate` bounds how often
one key may post.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from langroute.costs import LedgerRecord
from langroute.costs.records import Verdict
from langroute.protocols import Router

__all__ = ["FeedbackQuorum", "FeedbackRate", "teach_router"]


def teach_router(
    router: Router, call: LedgerRecord, verdict: Verdict, *, learner: Any = None
) -> str | None:
    """Learn the verdict on the call's answer; returns the route the query is now labelled.

    The outcome becomes a learned exemplar (``ExemplarRouter.learn``, ``source="feedback"``:
    bounded, deduplicated by text, never over a hand-made exemplar): a good answer labels
    the query with the route that gave it, a bad one with the next stronger route. Needs
    the query in the ledger record (``[serve] learn = true`` keeps it). ``learner``: what
    to teach instead of ``router`` itself (a shared router's
    :class:`~langroute.postgres.RouterReplica`, so that every replica learns it).

    Returns:
        The learned exemplar's route, ``None`` when nothing was learned (no query, a
        router that cannot learn, or a hand-made exemplar of the same text).
    """
    learn = getattr(learner if learner is not None else router, "learn", None)
    if call.query is None or call.route is None or not callable(learn):
        return None
    if call.route not in router.routes:
        return None
    exemplar = learn(call.query, call.route, good=verdict == "good", source="feedback")
    return exemplar.route if exemplar is not None else None


class FeedbackQuorum:
    """Verdicts held until ``quorum`` distinct keys give the same one on the same query.

    Keyed by the query's text, the route that answered and the verdict; bounded (the least
    recently voted entries are dropped beyond ``max_entries``) and thread-safe. Per
    process: replicas count apart.

    Example:
        >>> quorum = FeedbackQuorum(2)
        >>> quorum.vote("capital of France?", "small", "bad", "key-a")
        (False, 1)
        >>> quorum.vote("capital of France?", "small", "bad", "key-a")  # the same key again
        (False, 1)
        >>> quorum.vote("capital of France?", "small", "bad", "key-b")
        (True, 2)
    """

    def __init__(self, quorum: int, *, max_entries: int = 10_000) -> None:
        self.quorum = quorum
        self.max_entries = max_entries
        self._votes: OrderedDict[str, set[str]] = OrderedDict()
        self._lock = threading.Lock()

    def vote(self, query: str, route: str, verdict: str, key: str) -> tuple[bool, int]:
        """Count ``key``'s verdict; whether the quorum is reached, and the keys so far."""
        item = hashlib.sha256(
            f"{route}\x1f{verdict}\x1f{query}".encode("utf-8", "surrogatepass")
        ).hexdigest()
        with self._lock:
            keys = self._votes.pop(item, set())
            keys.add(key)
            self._votes[item] = keys
            while len(self._votes) > self.max_entries:
                self._votes.popitem(last=False)
            return len(keys) >= self.quorum, len(keys)


class FeedbackRate:
    """At most ``per_minute`` posts per key in any 60 s (a sliding window); thread-safe.

    Example:
        >>> rate = FeedbackRate(2, clock=lambda: 0.0)
        >>> [rate.allow("key-a") for _ in range(3)]
        [True, True, False]
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._posts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Count one post of ``key`` if it is within its rate; whether it is."""
        now = self._clock()
        with self._lock:
            posts = self._posts.setdefault(key, deque())
            while posts and now - posts[0] >= 60.0:
                posts.popleft()
            if len(posts) >= self.per_minute:
                return False
            posts.append(now)
            return True
