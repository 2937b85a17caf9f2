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

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version
from typing import TYPE_CHECKING

from langroute.exports import lazy_exports

try:  # the installed distribution's version: one source, pyproject.toml
    __version__ = _distribution_version("langroute")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from langroute.dispatch.dispatcher import RouteDispatcher, RouteRequest
    from langroute.embedders import (
        CachedEmbedder,
        Embedder,
        HashingEmbedder,
        SentenceTransformerEmbedder,
        as_embedder,
    )
    from langroute.errors import (
        AllRoutesFailedError,
        ApiKeysFileError,
        BudgetExhausted,
        CircuitOpenError,
        DatabaseError,
        DatabaseUnavailableError,
        EmbedderMismatchError,
        EmptyStreamError,
        ExemplarFormatError,
        GradingError,
        InvalidQueryError,
        LabellingError,
        LangrouteError,
        LedgerFormatError,
        LedgerWriteWarning,
        ModelsConfigError,
        NoShadowRowsError,
        RouterConfigError,
        RouterStoreError,
        SchemaVersionError,
        SinkUnavailableError,
        SpendWriteWarning,
        TornLinesWarning,
        UnknownRecordError,
        UnpricedModelWarning,
    )
    from langroute.protocols import Router
    from langroute.router.decision import Neighbour, RouteDecision
    from langroute.router.exemplar_router import ExemplarRouter
    from langroute.router.exemplars import Exemplar, load_exemplars, save_exemplars
    from langroute.router.settings import RouterSettings

_EXPORTS = {
    "ExemplarRouter": "langroute.router.exemplar_router",
    "RouterSettings": "langroute.router.settings",
    "Exemplar": "langroute.router.exemplars",
    "load_exemplars": "langroute.router.exemplars",
    "save_exemplars": "langroute.router.exemplars",
    "RouteDecision": "langroute.router.decision",
    "Neighbour": "langroute.router.decision",
    "Embedder": "langroute.embedders",
    "SentenceTransformerEmbedder": "langroute.embedders",
    "HashingEmbedder": "langroute.embedders",
    "CachedEmbedder": "langroute.embedders",
    "as_embedder": "langroute.embedders",
    "RouteDispatcher": "langroute.dispatch.dispatcher",
    "RouteRequest": "langroute.dispatch.dispatcher",
    "Router": "langroute.protocols",
    "AllRoutesFailedError": "langroute.errors",
    "ApiKeysFileError": "langroute.errors",
    "BudgetExhausted": "langroute.errors",
    "CircuitOpenError": "langroute.errors",
    "DatabaseError": "langroute.errors",
    "DatabaseUnavailableError": "langroute.errors",
    "EmbedderMismatchError": "langroute.errors",
    "EmptyStreamError": "langroute.errors",
    "ExemplarFormatError": "langroute.errors",
    "GradingError": "langroute.errors",
    "InvalidQueryError": "langroute.errors",
    "LabellingError": "langroute.errors",
    "LangrouteError": "langroute.errors",
    "LedgerFormatError": "langroute.errors",
    "LedgerWriteWarning": "langroute.errors",
    "ModelsConfigError": "langroute.errors",
    "RouterConfigError": "langroute.errors",
    "RouterStoreError": "langroute.errors",
    "SchemaVersionError": "langroute.errors",
    "SinkUnavailableError": "langroute.errors",
    "SpendWriteWarning": "langroute.errors",
    "TornLinesWarning": "langroute.errors",
    "UnknownRecordError": "langroute.errors",
    "NoShadowRowsError": "langroute.errors",
    "UnpricedModelWarning": "langroute.errors",
}

__all__ = [
    "AllRoutesFailedError",
    "ApiKeysFileError",
    "BudgetExhausted",
    "CachedEmbedder",
    "CircuitOpenError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "Embedder",
    "EmbedderMismatchError",
    "EmptyStreamError",
    "Exemplar",
    "ExemplarFormatError",
    "ExemplarRouter",
    "GradingError",
    "HashingEmbedder",
    "InvalidQueryError",
    "LabellingError",
    "LangrouteError",
    "LedgerFormatError",
    "LedgerWriteWarning",
    "ModelsConfigError",
    "Neighbour",
    "NoShadowRowsError",
    "RouteDecision",
    "RouteDispatcher",
    "RouteRequest",
    "Router",
    "RouterConfigError",
    "RouterSettings",
    "RouterStoreError",
    "SchemaVersionError",
    "SentenceTransformerEmbedder",
    "SinkUnavailableError",
    "SpendWriteWarning",
    "TornLinesWarning",
    "UnknownRecordError",
    "UnpricedModelWarning",
    "__version__",
    "as_embedder",
    "load_exemplars",
    "save_exemplars",
]

__getattr__, __dir__ = lazy_exports("langroute", _EXPORTS, __all__, globals())
