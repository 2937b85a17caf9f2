"""RoutingChatModel over the real bundled starter router (all-MiniLM-L6-v2, offline)."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_langroute import RoutingChatModel, track_costs
from langchain_langroute.testing import ScriptedChatModel

pytestmark = pytest.mark.slow

EASY = ["hi, how are you?", "What is the capital of France?", "Translate thank you into French"]
HARD = [
    "Prove that there are infinitely many prime numbers.",
    "Design a distributed consensus protocol tolerant to Byzantine faults and prove its safety.",
]


@pytest.fixture
def default_llm(starter_router):
    return RoutingChatModel(
        router=starter_router,
        models={
            "small": ScriptedChatModel(model="gpt-4o-mini"),
            "large": ScriptedChatModel(model="gpt-4o"),
        },
    )


def test_default_router_sends_easy_and_hard_questions_apart(default_llm):
    answers = default_llm.batch(EASY + HARD)
    routes = [a.response_metadata["langroute"]["route"] for a in answers]
    assert routes == ["small"] * len(EASY) + ["large"] * len(HARD)
    assert all(a.response_metadata["langroute"]["reason"] == "vote" for a in answers)


async def test_default_router_rag_chain_and_costs(default_llm):
    context = "\n".join(HARD * 5)  # hard-looking retrieved context
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Use this context:\n{context}"), ("human", "{question}")]
    )
    chain = prompt | default_llm | StrOutputParser()
    with track_costs() as ledger:
        text = await chain.ainvoke({"context": context, "question": EASY[1]})
        streamed = [
            c
            async for c in default_llm.astream(
                [SystemMessage("Be rigorous."), HumanMessage(HARD[0])]
            )
        ]
    assert text.startswith("gpt-4o-mini answers:")
    assert streamed[0].response_metadata["langroute"]["route"] == "large"
    records = ledger.records()
    assert [(r.route, r.model) for r in records] == [("small", "gpt-4o-mini"), ("large", "gpt-4o")]
    assert all(r.cost is not None and r.cost > 0 for r in records)
    assert ledger.summary().savings > 0
