"""langroute: send each LLM request to the cheapest model that can handle it.

Heavy modules (numpy, faiss, sentence-transformers) load on first use, so
``import langroute`` stays fast.

Example:
    >>> from langroute import ExemplarRouter
    >>> router = ExemplarRouter.default()  # doctest: +SKIP
    >>> router.route("hi, how are you?").route  # doctest: +SKIP
    'small'
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from langroute.decision import Neighbour, RouteDecision
    from langroute.embedders import (
        CachedEmbedder,
        Embedder,
        HashingEmbedder,
        SentenceTransformerEmbedder,
        as_embedder,
    )
    from langroute.errors import (
        AllRoutesFailedError,
        EmbedderMismatchError,
        EmptyStreamError,
        ExemplarFormatError,
        InvalidQueryError,
        LangrouteError,
        RouterConfigError,
        RouterStoreError,
        UnknownRecordError,
    )
    from langroute.exemplars import Exemplar, load_exemplars, save_exemplars
    from langroute.router import ExemplarRouter, RouterSettings

_EXPORTS = {
    "ExemplarRouter": "langroute.router",
    "RouterSettings": "langroute.router",
    "Exemplar": "langroute.exemplars",
    "load_exemplars": "langroute.exemplars",
    "save_exemplars": "langroute.exemplars",
    "RouteDecision": "langroute.decision",
    "Neighbour": "langroute.decision",
    "Embedder": "langroute.embedders",
    "SentenceTransformerEmbedder": "langroute.embedders",
    "HashingEmbedder": "langroute.embedders",
    "CachedEmbedder": "langroute.embedders",
    "as_embedder": "langroute.embedders",
    "LangrouteError": "langroute.errors",
    "ExemplarFormatError": "langroute.errors",
    "RouterConfigError": "langroute.errors",
    "InvalidQueryError": "langroute.errors",
    "RouterStoreError": "langroute.errors",
    "EmbedderMismatchError": "langroute.errors",
    "EmptyStreamError": "langroute.errors",
    "AllRoutesFailedError": "langroute.errors",
    "UnknownRecordError": "langroute.errors",
}

__all__ = [
    "AllRoutesFailedError",
    "CachedEmbedder",
    "Embedder",
    "EmbedderMismatchError",
    "EmptyStreamError",
    "Exemplar",
    "ExemplarFormatError",
    "ExemplarRouter",
    "HashingEmbedder",
    "InvalidQueryError",
    "LangrouteError",
    "Neighbour",
    "RouteDecision",
    "RouterConfigError",
    "RouterSettings",
    "RouterStoreError",
    "SentenceTransformerEmbedder",
    "UnknownRecordError",
    "__version__",
    "as_embedder",
    "load_exemplars",
    "save_exemplars",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'langroute' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
