"""Recipe 2: swap ChatOpenAI for RoutingChatModel in an existing LCEL chain; stream; batch.

What it shows:
    * A prompt | model | parser chain where the model line is the only change:
      ``ChatOpenAI(model="gpt-4o")`` becomes a ``RoutingChatModel`` over a cheap and a
      strong model. The router reads the user's question, not the system prompt.
    * ``stream``: the decision rides on the first chunk's ``response_metadata["langroute"]``.
    * ``batch``: all inputs are routed with one batched embedding call.
    * ``track_costs``: cost per route, and the saving against always using the strong model.

Run it:
    python cookbook/02_langchain_chain.py                     # offline stand-in models
    python cookbook/02_langchain_chain.py --provider openai   # langchain-openai + OPENAI_API_KEY
    LANGROUTE_PROVIDER=anthropic python cookbook/02_langchain_chain.py
    (models: LANGROUTE_CHEAP_MODEL / LANGROUTE_STRONG_MODEL; ollama works too)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from rich.console import Console

from langchain_langroute import RouteMetadata, RoutingChatModel, track_costs
from langchain_langroute.demo import chat_models_for
from langroute import ExemplarRouter
from langroute.costs import print_report

DATA = Path(__file__).parent / "data" / "helpdesk_exemplars.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=os.environ.get("LANGROUTE_PROVIDER", "offline"))
    args = parser.parse_args()

    # Offline: two local stand-ins that answer like gpt-4o-mini and gpt-4o (and are priced
    # as them). With --provider openai: ChatOpenAI(model="gpt-4o-mini") / ChatOpenAI("gpt-4o").
    cheap, strong = chat_models_for(args.provider)

    # Your router: ExemplarRouter.default() (the bundled starter pack) or your own exemplars.
    router = ExemplarRouter.from_file(DATA, routes=["small", "large"])

    # BEFORE:  llm = ChatOpenAI(model="gpt-4o")
    # AFTER:   the same chain, every call goes to the cheapest model that can handle it.
    llm = RoutingChatModel(router=router, models={"small": cheap, "large": strong})

    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You are the IT help desk of Acme. Team: {team}. Be concise."),
            ("human", "{question}"),
        ]
    )
    chain = prompt | llm | StrOutputParser()

    with track_costs() as ledger:
        # invoke: unchanged call sites.
        answer = chain.invoke({"team": "finance", "question": "How do I reset my VPN password?"})
        print("invoke:", answer[:100])

        # stream: tokens as they come; the decision rides on the first chunk.
        question = (
            "Design a backup plan for our file servers that survives a ransomware attack, "
            "with a 4-hour recovery objective."
        )
        print("stream: ", end="")
        for chunk in (prompt | llm).stream({"team": "ops", "question": question}):
            decision = chunk.response_metadata.get("langroute")
            if decision:
                print(f"[ROUTE {decision['route']} -> {decision['model']}] ", end="")
            print(chunk.content, end="", flush=True)
        print()

        # batch: one routing call for all inputs; answers keep their routing record.
        questions = [
            "How do I share my calendar with a colleague?",
            "Write a threat model for our new customer self-service portal.",
            "thanks, all sorted!",
        ]
        for question, message in zip(questions, llm.batch(questions)):
            record = RouteMetadata.from_metadata(message.response_metadata)
            print(f"batch: ROUTE {record.route:<5} {record.model:<12} {question[:60]}")

    summary = ledger.summary(order=router.routes)
    print_report(summary, console=Console(width=120))
    if summary.savings is not None:
        print(
            f"SAVED ${summary.savings:.6f} ({summary.savings_pct:.0f}%) vs always the strong model"
        )


if __name__ == "__main__":
    main()
