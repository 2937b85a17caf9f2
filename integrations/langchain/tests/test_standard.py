"""langchain-tests standard suites for RoutingChatModel over offline fake routes."""

from __future__ import annotations

from typing import Any

from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from langroute import Exemplar, ExemplarRouter
from langroute.embedders import HashingEmbedder

from langchain_langroute import RoutingChatModel
from langchain_langroute.testing import ScriptedChatModel

_ROUTER = ExemplarRouter(
    routes=["small", "large"],
    exemplars=[
        Exemplar(text="hello", route="small"),
        Exemplar(text="hey", route="small"),
        Exemplar(text="hi how are you", route="small"),
        Exemplar(text="prove the theorem rigorously step by step", route="large"),
        Exemplar(text="design and analyse a distributed protocol", route="large"),
    ],
    embedder=HashingEmbedder(),
    k=3,
    min_similarity=0.05,
)


def _params() -> dict[str, Any]:
    return {
        "router": _ROUTER,
        "models": {
            "small": ScriptedChatModel(model="fake-small-model", provider="fake"),
            "large": ScriptedChatModel(model="fake-large-model", provider="fake"),
        },
    }


class TestRoutingChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[RoutingChatModel]:
        return RoutingChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return _params()

    @property
    def model_override_value(self) -> str:
        return "large"


class TestRoutingChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[RoutingChatModel]:
        return RoutingChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return _params()

    @property
    def model_override_value(self) -> str:
        # "Hello" routes to "small"; forcing "large" must reach fake-large-model.
        return "large"

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        # with_structured_output(method="json_mode") falls back to tool calling (the
        # default BaseChatModel behaviour); no provider JSON mode is forwarded.
        return False
