"""The ONNX backend: the model exported once (cached) and run with onnxruntime."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from langroute.embedders.base import embedding_dimension
from langroute.embedders.threads import REQUESTS_IN_FLIGHT

__all__ = [
    "INT8_MODEL_FILE",
    "ONNX_EXPORT_VERSION",
    "OnnxEncoder",
    "cache_dir",
    "export_onnx",
    "ffn_matmuls",
    "onnx_export_dir",
]

ONNX_EXPORT_VERSION = 1
INT8_MODEL_FILE = "model_int8_ffn.onnx"
"""The int8 export's file name. It names the recipe (:func:`ffn_matmuls`): an export
made by an earlier recipe (``model_int8.onnx``, every MatMul and the embedding tables
quantised) is never picked up in its place."""
_log = logging.getLogger("langroute")


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
    numpy), ``model_int8_ffn.onnx`` when ``quantize`` (see :func:`ffn_matmuls`),
    ``tokenizer.json`` and ``meta.json``. Needs torch and sentence-transformers for the
    export itself and ``onnx`` + ``onnxruntime`` for quantisation. Concurrent exports
    are safe: each writes a private folder and the first rename wins.

    Raises:
        ValueError: for a model that is not a transformer with mean or CLS pooling.
    """
    if not Path(model_path).is_dir():
        raise ValueError(f"the onnx backend needs a local model folder, not {model_path!r}")
    target = onnx_export_dir(model_path)
    wanted = target / (INT8_MODEL_FILE if quantize else "model.onnx")
    if wanted.exists() and (target / "meta.json").exists():
        return target
    if not (target / "model.onnx").exists():
        _log.info("exporting %s to ONNX (once) in %s", model_path, target)
        _export_fp32(Path(model_path), target)
    if quantize and not wanted.exists():
        _quantize_ffn(target / "model.onnx", target, wanted)
    return target


def ffn_matmuls(model: Any) -> list[str]:
    """Names of the feed-forward MatMuls of an exported transformer: those int8 quantises.

    A feed-forward MatMul multiplies by a constant weight that is not square (hidden to
    intermediate size and back); the attention projections (square weights), the
    attention products (no constant weight) and the embedding tables stay float32.
    Measured on the bundled MiniLM (``benchmarks/int8_variants.py``): cosine to float32
    0.995 on average (0.993 with every MatMul and the embeddings quantised) and most of
    the speed-up, since the feed-forward layers hold two thirds of the weights.
    """
    weights = {
        init.name: tuple(init.dims) for init in model.graph.initializer if len(init.dims) == 2
    }
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul"
        and len(node.input) == 2
        and node.input[1] in weights
        and weights[node.input[1]][0] != weights[node.input[1]][1]
    ]


def _quantize_ffn(source: Path, target: Path, wanted: Path) -> None:
    """Write ``wanted``: ``source`` with dynamic per-channel int8 feed-forward weights."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = ffn_matmuls(onnx.load(str(source), load_external_data=False))
    if not nodes:
        raise ValueError(
            f"no feed-forward MatMul found in {source} to quantise: use backend='onnx'"
        )
    staging = target / f".int8-{os.getpid()}-{threading.get_ident()}.onnx"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's advice to pre-process: not needed here
    try:
        quantize_dynamic(
            str(source),
            str(staging),
            weight_type=QuantType.QInt8,
            per_channel=True,  # per-tensor int8 loses too much of MiniLM (cosine ~0.96)
            nodes_to_quantize=nodes,
        )
    finally:
        root.setLevel(level)
    os.replace(staging, wanted)


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
            "dimension": int(embedding_dimension(model)),
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            os.replace(staging, target)
        except OSError:  # another process won the race: keep its export
            if not (target / "model.onnx").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _session(model_file: Path, threads: int) -> Any:
    """An onnxruntime session of ``model_file`` on ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if os.environ.get("LANGROUTE_ORT_SPIN", "0") != "1":
        # idle workers sleep instead of spinning: spinning is faster on an idle machine
        # but, measured beside a busy process, slower than one thread (and its p99 worse)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    """A transformer exported to ONNX, run with onnxruntime, pooled and normalised in numpy.

    Built by :meth:`from_model`; has the small part of ``SentenceTransformer``'s API
    that :class:`SentenceTransformerEmbedder` uses (``encode`` and
    ``get_embedding_dimension``). Imports neither torch nor
    sentence-transformers once the export is cached.

    Each call runs on ``threads`` intra-op threads; with ``alone_threads`` above that, a
    second session (about 120 MB more) runs the calls made while
    :data:`~langroute.embedders.threads.REQUESTS_IN_FLIGHT` counts one request at most
    on that many: the cores that would sit idle while the request waits for its vector.
    Idle intra-op threads sleep rather than spin (``LANGROUTE_ORT_SPIN=1`` spins).
    """

    def __init__(
        self,
        folder: Path,
        *,
        quantize: bool = False,
        threads: int = 1,
        alone_threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime  # noqa: F401
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the onnx backends need onnxruntime and tokenizers (langroute's own "
                "dependencies): reinstall langroute, or use backend='torch'"
            ) from exc
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text())
        self.quantized = quantize
        self.threads = threads
        self.alone_threads = max(threads, alone_threads or threads)
        model_file = folder / (INT8_MODEL_FILE if quantize else "model.onnx")
        self.session = _session(model_file, threads)
        self.alone_session = (
            _session(model_file, self.alone_threads) if self.alone_threads > threads else None
        )
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(self.meta["max_seq_length"]))
        self.tokenizer.enable_padding(
            pad_id=int(self.meta["pad_token_id"]), pad_token=str(self.meta["pad_token"])
        )
        self._inputs: list[str] = list(self.meta["inputs"])

    @classmethod
    def from_model(
        cls,
        model_path: str | Path,
        *,
        quantize: bool = False,
        threads: int = 1,
        alone_threads: int | None = None,
    ) -> OnnxEncoder:
        """Export ``model_path`` if needed (cached) and load it."""
        return cls(
            export_onnx(model_path, quantize=quantize),
            quantize=quantize,
            threads=threads,
            alone_threads=alone_threads,
        )

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
        session = self.session
        if self.alone_session is not None and REQUESTS_IN_FLIGHT.alone():
            session = self.alone_session
        tokens = session.run(None, feeds)[0]
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
