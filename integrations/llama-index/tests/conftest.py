"""Fixtures for the LlamaIndex integration tests: a hashing router, scripted LLMs, events.

The offline set-up and the ``starter_router`` fixture come from the repository's root
``conftest.py``, a parent of these tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core import Settings
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.llms.langroute import CostCallbackHandler, RoutingLLM
from llama_index.llms.langroute.testing import HashingEmbedding, MockProviderLLM

from langroute import Exemplar, ExemplarRouter
from langroute.costs import CostLedger
from langroute.embedders import HashingEmbedder

EASY = [
    "what is the capital of france",
    "hello how are you today",
    "what time does the store open",
    "translate thank you into spanish",
    "when was the company founded",
    "who is the chief executive of the company",
]
HARD = [
    "prove that the square root of two is irrational",
    "derive the gradient of the loss function step by step",
    "analyse the legal implications of the warranty clause in depth",
    "write a rigorous proof of the convergence theorem",
    "compare the architectural trade offs of both designs in depth",
    "explain the legal liability implications and derive the consequences",
]


class SettingsMustNotBeUsed(MockProviderLLM):
    """Installed as Settings.llm: any call means a component fell back to Settings."""

    def _next_turn(self, method: str, messages: Any, kwargs: dict[str, Any]) -> Any:
        raise AssertionError(f"Settings.llm was used ({method}); pass llm= explicitly")


@pytest.fixture(autouse=True)
def _isolated_settings() -> Iterator[None]:
    """Never let LlamaIndex resolve a default (OpenAI) model; restore Settings after."""
    saved = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    Settings.llm = SettingsMustNotBeUsed(model="settings-llm")
    Settings.embed_model = HashingEmbedding()
    try:
        yield
    finally:
        Settings._llm, Settings._embed_model, Settings._callback_manager = saved


@pytest.fixture
def router() -> ExemplarRouter:
    """Two routes over a bag-of-words embedder: chit-chat/facts -> small, proofs/law -> large."""
    exemplars = [Exemplar(text=t, route="small") for t in EASY] + [
        Exemplar(text=t, route="large") for t in HARD
    ]
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=exemplars,
        embedder=HashingEmbedder(),
        k=3,
        min_similarity=0.1,
        min_margin=0.0,
    )


@pytest.fixture
def small() -> MockProviderLLM:
    return MockProviderLLM(model="gpt-4o-mini", context_window=128_000, num_output=4_096)


@pytest.fixture
def large() -> MockProviderLLM:
    return MockProviderLLM(model="gpt-4o", context_window=64_000, num_output=16_384)


@pytest.fixture
def llm(router: ExemplarRouter, small: MockProviderLLM, large: MockProviderLLM) -> RoutingLLM:
    return RoutingLLM(router=router, models={"small": small, "large": large})


class EventCollector(BaseEventHandler):
    """Keeps every instrumentation event it sees."""

    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EventCollector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)

    def of(self, *names: str) -> list[BaseEvent]:
        return [e for e in self.events if type(e).__name__ in names]

    def names(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


@pytest.fixture
def events() -> Iterator[EventCollector]:
    collector = EventCollector()
    root = get_dispatcher()
    root.add_event_handler(collector)
    try:
        yield collector
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not collector]


@pytest.fixture
def ledger_handler() -> Iterator[CostCallbackHandler]:
    handler = CostCallbackHandler(ledger=CostLedger())
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        yield handler
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not handler]
