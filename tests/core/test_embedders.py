from __future__ import annotations

import numpy as np
import pytest

from langroute import CachedEmbedder, Exemplar, ExemplarRouter, HashingEmbedder, as_embedder


class LangChainStyle:
    """Has LangChain Embeddings' methods and returns lists, unnormalised."""

    model = "toy-embed"

    def __init__(self) -> None:
        self.inner = HashingEmbedder(dimension=32)
        self.query_calls = 0

    def embed_documents(self, texts):
        return (self.inner.embed_documents(texts) * 3.0).tolist()

    def embed_query(self, text):
        self.query_calls += 1
        return (self.inner.embed_documents([text])[0] * 5.0).tolist()


class LlamaIndexStyle:
    """Has LlamaIndex BaseEmbedding's methods."""

    model_name = "toy-li"

    def __init__(self) -> None:
        self.inner = HashingEmbedder(dimension=48)

    def get_text_embedding_batch(self, texts, **kwargs):
        return self.inner.embed_documents(texts).tolist()

    def get_query_embedding(self, query):
        return self.inner.embed_documents([query])[0].tolist()


@pytest.mark.parametrize(
    ("obj", "fingerprint", "dimension"),
    [
        (LangChainStyle(), "LangChainStyle:toy-embed", 32),
        (LlamaIndexStyle(), "LlamaIndexStyle:toy-li", 48),
    ],
)
def test_framework_embeddings_plug_in(obj, fingerprint, dimension):
    embedder = as_embedder(obj)
    assert embedder.fingerprint == fingerprint
    assert embedder.dimension == dimension
    vectors = embedder.embed_documents(["hello world", "prove it"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, dimension)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-6)
    router = ExemplarRouter(
        routes=["small", "large"],
        exemplars=[
            Exemplar(text="hello world", route="small"),
            Exemplar(text="prove it", route="large"),
        ],
        embedder=obj,
        min_similarity=0.1,
    )
    assert router.route("hello world again").route == "small"


def test_langchain_queries_use_embed_query():
    obj = LangChainStyle()
    as_embedder(obj).embed_queries(["a", "b"])
    assert obj.query_calls == 2


def test_not_an_embedder():
    with pytest.raises(TypeError, match="not an embedder"):
        as_embedder(object())


def test_lru_cache_is_bounded_and_evicts_oldest():
    cached = CachedEmbedder(HashingEmbedder(), max_size=2)
    cached.embed_queries(["a", "b"])
    cached.embed_queries(["a"])  # a is now most recent
    cached.embed_queries(["c"])  # evicts b
    info = cached.cache_info()
    assert info["size"] == 2 and info["hits"] == 1 and info["misses"] == 3
    cached.embed_queries(["b"])
    assert cached.cache_info()["misses"] == 4
    direct = HashingEmbedder().embed_queries(["a", "b", "c"])
    assert np.allclose(cached.embed_queries(["a", "b", "c"]), direct)


def test_cache_can_be_disabled():
    router = ExemplarRouter(
        routes=["small"],
        exemplars=[Exemplar(text="hello", route="small")],
        embedder=HashingEmbedder(),
        cache_size=0,
    )
    assert not isinstance(router.embedder, CachedEmbedder)


def test_only_langroutes_own_encoders_say_they_compute_in_process():
    from langroute.embedders import SentenceTransformerEmbedder, computes_in_process

    assert computes_in_process(HashingEmbedder())
    assert computes_in_process(SentenceTransformerEmbedder())  # nothing loaded to know it
    assert computes_in_process(CachedEmbedder(HashingEmbedder()))
    # a framework's embeddings may call an API: a server must not wait on them in its loop
    assert not computes_in_process(as_embedder(LangChainStyle()))
    assert not computes_in_process(CachedEmbedder(as_embedder(LlamaIndexStyle())))
    assert not computes_in_process(LangChainStyle())
