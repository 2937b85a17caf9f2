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
    """Label the call's query with the route it should have taken; returns that route.

    A good answer confirms the route that gave it; a bad one labels the query with the
    next stronger route (nothing is learned when the strongest route answered badly).
    Needs the query in the ledger record (``[serve] learn = true`` keeps it) and a
    router with ``feedback(query, route)``, such as ``ExemplarRouter``. ``learner``: what
    to teach instead of ``router`` itself (a shared router's
    :class:`~langroute.postgres.RouterReplica`, so that every replica learns it).

    Returns:
        The route the query was labelled with, ``None`` when nothing was learned.
    """
    learn = getattr(learner if learner is not None else router, "feedback", None)
    if call.query is None or call.route is None or not callable(learn):
        return None
    routes = list(router.routes)
    if call.route not in routes:
        return None
    position = routes.index(call.route)
    if verdict == "good":
        target = call.route
    elif position + 1 < len(routes):
        target = routes[position + 1]
    else:
        return None
    learn(call.query, target)
    return target
