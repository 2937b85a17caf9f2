"""Embedders: turn texts into normalised float32 vectors.

The core speaks one small protocol, :class:`Embedder`. Anything with LangChain's
``Embeddings`` methods (``embed_documents``/``embed_query``) or LlamaIndex's
(``get_text_embedding_batch``/``get_query_embedding``) is adapted by
:func:`as_embedder` without importing either framework.

Example:
    >>> from langroute.embedders import HashingEmbedder
    >>> emb = HashingEmbedder(dimension=64)
    >>> emb.embed_documents(["hello world"]).shape
    (1, 64)
"""

from langroute.embedders.adapters import as_embedder, embedder_from_spec, load_encoder
from langroute.embedders.base import (
    Embedder,
    computes_in_process,
    embed_documents,
    embedding_dimension,
    normalize,
)
from langroute.embedders.cache import CachedEmbedder
from langroute.embedders.hashing import HashingEmbedder
from langroute.embedders.onnx import (
    INT8_MODEL_FILE,
    ONNX_EXPORT_VERSION,
    OnnxEncoder,
    cache_dir,
    export_onnx,
    ffn_matmuls,
    onnx_export_dir,
)
from langroute.embedders.sentence_transformer import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_MODEL_NAME,
    SentenceTransformerEmbedder,
    conversion_hint,
    embedder_for_fingerprint,
)
from langroute.embedders.threads import (
    REQUESTS_IN_FLIGHT,
    RequestsInFlight,
    configure_torch_threads,
    encoder_alone_threads,
    encoder_calls,
    encoder_threads,
    num_threads,
    set_encoder_threads,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DEFAULT_MODEL_NAME",
    "INT8_MODEL_FILE",
    "ONNX_EXPORT_VERSION",
    "REQUESTS_IN_FLIGHT",
    "CachedEmbedder",
    "Embedder",
    "HashingEmbedder",
    "OnnxEncoder",
    "RequestsInFlight",
    "SentenceTransformerEmbedder",
    "as_embedder",
    "cache_dir",
    "computes_in_process",
    "configure_torch_threads",
    "conversion_hint",
    "embed_documents",
    "embedder_for_fingerprint",
    "embedder_from_spec",
    "embedding_dimension",
    "encoder_alone_threads",
    "encoder_calls",
    "encoder_threads",
    "export_onnx",
    "ffn_matmuls",
    "load_encoder",
    "normalize",
    "num_threads",
    "onnx_export_dir",
    "set_encoder_threads",
]
