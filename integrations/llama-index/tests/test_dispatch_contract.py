"""RoutingLLM obeys the core dispatcher's rules, the same as the LangChain entry points.

chat, achat, stream_chat, complete and acomplete read their request and hand it to one
:class:`~langroute.dispatch.dispatcher.RouteDispatcher`: no visible query -> the fallback
route (U+200B included), forced routes by route or model name, the strongest route as
the baseline, escalation to the next route on an error.
"""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.llms.langroute import RouteMetadata, RoutingLLM
from llama_index.llms.langroute.testing import MockProviderError, MockProviderLLM

from langroute.router.conversation import ConversationContext

INVISIBLE = ["\u200b", "   ", "", "\u200b\u200c\ufeff\n", "\x00\x01"]
EASY = "what is the capital of france"
HARD = "prove that the square root of two is irrational"


def _info(response) -> RouteMetadata:
    return RouteMetadata.from_metadata(response.additional_kwargs)


async def _run(llm: RoutingLLM, mode: str, text: str, **kwargs) -> RouteMetadata:
    messages = [ChatMessage(role=MessageRole.USER, content=text)]
    if mode == "chat":
        return _info(llm.chat(messages, **kwargs))
    if mode == "achat":
        return _info(await llm.achat(messages, **kwargs))
    if mode == "stream_chat":
        return _info(list(llm.stream_chat(messages, **kwargs))[-1])
    if mode == "complete":
        return _info(llm.complete(text, **kwargs))
    if mode == "acomplete":
        return _info(await llm.acomplete(text, **kwargs))
    raise AssertionError(mode)


MODES = ["chat", "achat", "stream_chat", "complete", "acomplete"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", INVISIBLE, ids=repr)
async def test_no_visible_query_goes_to_the_fallback_route(mode, text, llm, router):
    info = await _run(llm, mode, text)
    assert (info.reason, info.route) == ("no_query", router.fallback)


@pytest.mark.parametrize("mode", ["chat", "achat", "stream_chat"])
async def test_invisible_user_turn_in_conversation_mode_falls_back(mode, router, small, large):
    llm = RoutingLLM(
        router=router, models={"small": small, "large": large}, context=ConversationContext()
    )
    info = await _run(llm, mode, "\u200b")
    assert (info.reason, info.route) == ("no_query", router.fallback)


@pytest.mark.parametrize("mode", MODES)
async def test_the_router_decides_a_visible_query(mode, llm):
    easy, hard = await _run(llm, mode, EASY), await _run(llm, mode, HARD)
    assert (easy.route, hard.route) == ("small", "large")
    assert easy.baseline_route == "large" and easy.baseline_model == "gpt-4o"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("forced", ["large", "gpt-4o"])
async def test_a_forced_route_by_route_or_model_name(mode, forced, llm):
    info = await _run(llm, mode, EASY, route=forced)
    assert (info.route, info.reason) == ("large", "forced")


@pytest.mark.parametrize("mode", MODES)
async def test_an_error_escalates_to_the_next_route(mode, router, large):
    small = MockProviderLLM(model="gpt-4o-mini", script=[MockProviderError("429 rate limited")])
    llm = RoutingLLM(router=router, models={"small": small, "large": large})
    info = await _run(llm, mode, EASY)
    assert (info.route, info.escalated, info.escalated_from) == ("large", True, "small")


def test_cascade_rows_have_the_cores_fields(ledger_handler):
    """A cascade's rows carry the fields the core's CascadeCall gives (as in LangChain)."""
    from llama_index.llms.langroute import CascadeLLM, CascadeResult

    from langroute.scorers import RefusalDetector

    cascade = CascadeLLM(
        tiers=[
            MockProviderLLM(model="gpt-4o-mini", script=["I'm sorry, but I can't help."]),
            MockProviderLLM(model="gpt-4o", script=["Sure."]),
        ],
        tier_names=["small", "large"],
        scorer=RefusalDetector(),
    )
    response = cascade.chat([ChatMessage(role=MessageRole.USER, content="help me")])
    rejected, accepted = ledger_handler.ledger.records()
    assert [
        (r.kind, r.route, r.tier, r.accepted, r.escalated, r.escalated_from, r.reason)
        for r in (rejected, accepted)
    ] == [
        ("cascade", "small", 0, False, False, None, "cascade"),
        ("cascade", "large", 1, True, True, "small", "cascade"),
    ]
    assert rejected.metadata["cascade_reason"].startswith("rejected:")
    result = CascadeResult.from_response(response)
    assert accepted.record_id == result.record_id
    assert rejected.run_id == accepted.run_id == result.call_id
