"""Shared test set-up: never reach a model hub; shared data located beside the repo."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Caches (embedded starter pack, ONNX exports) go to a fresh folder per test session,
# shared with the subprocesses the tests start; never to the user's home.
os.environ["LANGROUTE_CACHE_DIR"] = tempfile.mkdtemp(prefix="langroute-test-cache-")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LANGROUTE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared benchmark data folder; tests using it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_embedder():
    """The bundled all-MiniLM-L6-v2, loaded once per test session."""
    from langroute.embedders import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def starter_router(minilm_embedder):
    """The bundled starter router over the real embedder (built once; do not mutate)."""
    from langroute import ExemplarRouter

    return ExemplarRouter.default(embedder=minilm_embedder)
