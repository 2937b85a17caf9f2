"""Fixtures for the LangChain integration tests: a fast HashingEmbedder router and fakes.

The offline set-up and the ``starter_router`` fixture come from the repository's root
``conftest.py``, a parent of these tests.
"""

from __future__ import annotations

import pytest
from langroute import Exemplar, ExemplarRouter
from langroute.embedders import HashingEmbedder

from langchain_langroute import RoutingChatModel
from langchain_langroute.testing import ScriptedChatModel

SMALL_EXEMPLARS = [
    "hello",
    "hey",
    "hi there how are you",
    "what is the capital of france",
    "thanks a lot",
    "what time is it in tokyo",
    "translate good morning to spanish",
]
LARGE_EXEMPLARS = [
    "prove that there are infinitely many primes",
    "derive the closed form of the recurrence and prove it by induction",
    "design a distributed consensus protocol and analyse its failure modes",
    "write a rigorous proof of the fundamental theorem of calculus",
    "analyse the asymptotic complexity of this algorithm and prove the bound",
]


def make_router(**options) -> ExemplarRouter:
    """A deterministic two-route router over the model-free HashingEmbedder."""
    exemplars = [Exemplar(text=t, route="small") for t in SMALL_EXEMPLARS]
    exemplars += [Exemplar(text=t, route="large") for t in LARGE_EXEMPLARS]
    settings = {"k": 3, "min_similarity": 0.05, "min_margin": 0.0, **options}
    return ExemplarRouter(
        routes=["small", "large"], exemplars=exemplars, embedder=HashingEmbedder(), **settings
    )


@pytest.fixture(scope="session")
def router() -> ExemplarRouter:
    return make_router()


@pytest.fixture
def small() -> ScriptedChatModel:
    return ScriptedChatModel(model="gpt-4o-mini", provider="openai")


@pytest.fixture
def large() -> ScriptedChatModel:
    return ScriptedChatModel(model="gpt-4o", provider="openai")


@pytest.fixture
def llm(router, small, large) -> RoutingChatModel:
    return RoutingChatModel(router=router, models={"small": small, "large": large})
