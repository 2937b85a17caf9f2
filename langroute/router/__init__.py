"""The kNN router and what it decides with.

* :mod:`~langroute.router.exemplar_router`: :class:`ExemplarRouter`, the router itself;
* :mod:`~langroute.router.exemplars`: labelled or scored example queries, read and written;
* :mod:`~langroute.router.settings`: every knob, validated; :mod:`~langroute.router.decision`:
  what a routing call returns;
* :mod:`~langroute.router.engine` (the decision engine) and :mod:`~langroute.router.votes`
  (the vote maths: neighbours to per-route evidence);
* :mod:`~langroute.router.index` (FAISS), :mod:`~langroute.router.batching` (concurrent
  requests share one encoder call), :mod:`~langroute.router.warmup`;
* :mod:`~langroute.router.conversation`: which turns a multi-turn request is routed on;
* :mod:`~langroute.router.query_text`: what counts as an empty query, what is embedded;
* :mod:`~langroute.router.store`: saving and loading routers as directories;
* :mod:`~langroute.router.adaptive_dial`: :class:`AdaptiveDial`, which moves the dial to
  hold a spend, strong-share or escalation target read from the ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langroute.exports import lazy_exports

if TYPE_CHECKING:
    from langroute.router.adaptive_dial import (
        AdaptiveDial,
        AdaptiveDialConfig,
        EscalationBand,
        SpendTarget,
        StrongShareTarget,
    )
    from langroute.router.decision import Neighbour, RouteDecision
    from langroute.router.exemplar_router import ExemplarRouter
    from langroute.router.exemplars import Exemplar, load_exemplars, save_exemplars
    from langroute.router.settings import RouterSettings

_EXPORTS = {
    "AdaptiveDial": "langroute.router.adaptive_dial",
    "AdaptiveDialConfig": "langroute.router.adaptive_dial",
    "EscalationBand": "langroute.router.adaptive_dial",
    "SpendTarget": "langroute.router.adaptive_dial",
    "StrongShareTarget": "langroute.router.adaptive_dial",
    "ExemplarRouter": "langroute.router.exemplar_router",
    "RouterSettings": "langroute.router.settings",
    "RouteDecision": "langroute.router.decision",
    "Neighbour": "langroute.router.decision",
    "Exemplar": "langroute.router.exemplars",
    "load_exemplars": "langroute.router.exemplars",
    "save_exemplars": "langroute.router.exemplars",
}

__all__ = [
    "AdaptiveDial",
    "AdaptiveDialConfig",
    "EscalationBand",
    "Exemplar",
    "ExemplarRouter",
    "Neighbour",
    "RouteDecision",
    "RouterSettings",
    "SpendTarget",
    "StrongShareTarget",
    "load_exemplars",
    "save_exemplars",
]

__getattr__, __dir__ = lazy_exports("langroute.router", _EXPORTS, __all__, globals())
