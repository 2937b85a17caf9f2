"""What a verdict posted to ``POST /v1/feedback`` teaches the router.

One function, :func:`teach_router`, so that the way a server learns from feedback can
change in one place.
"""

from __future__ import annotations

from typing import Any

from langroute.costs import LedgerRecord
from langroute.costs.records import Verdict
from langroute.protocols import Router

__all__ = ["teach_router"]


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
