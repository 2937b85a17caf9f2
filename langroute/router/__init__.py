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
* :mod:`~langroute.router.dial_targets`: what an adaptive dial
  (:mod:`langroute.adaptive_dial`) holds, and the journal of its moves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langroute.exports import lazy_exports

if TYPE_CHECKING:
    from langroute.router.decision import Neighbour, RouteDecision
    from langroute.router.exemplar_router import ExemplarRouter
    from langroute.router.exemplars import Exemplar, load_exemplars, save_exemplars
    from langroute.router.settings import RouterSettings

_EXPORTS = {
    "ExemplarRouter": "langroute.router.exemplar_router",
    "RouterSettings": "langroute.router.settings",
    "RouteDecision": "langroute.router.decision",
    "Neighbour": "langroute.router.decision",
    "Exemplar": "langroute.router.exemplars",
    "load_exemplars": "langroute.router.exemplars",
    "save_exemplars": "langroute.router.exemplars",
}

__all__ = [
    "Exemplar",
    "ExemplarRouter",
    "Neighbour",
    "RouteDecision",
    "RouterSettings",
    "load_exemplars",
    "save_exemplars",
]

__getattr__, __dir__ = lazy_exports("langroute.router", _EXPORTS, __all__, globals())
