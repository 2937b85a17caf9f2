"""Recipe 3: a LangChain agent with tools, through the router.

What it shows:
    * ``create_agent(model=RoutingChatModel(...), tools=[...])``: the agent binds its
      tools once; at call time the chosen model's own ``bind_tools`` formats them for its
      provider, so tool calls reach whichever model the router picks.
    * Each turn is routed on the user's question (the last human message), so a simple
      lookup runs entirely on the cheap model and an analysis runs on the strong one,
      tool calls included.
    * (Alternative: ``langchain_langroute.middleware.RouterMiddleware`` routes inside any
      agent that already has a model.)

Run it:
    python cookbook/03_langchain_agent_tools.py                     # offline stand-ins
    python cookbook/03_langchain_agent_tools.py --provider openai   # langchain-openai + key
    LANGROUTE_PROVIDER=anthropic python cookbook/03_langchain_agent_tools.py
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool

from langchain_langroute import RoutingChatModel, track_costs
from langchain_langroute.demo import chat_models_for
from langroute import ExemplarRouter

DATA = Path(__file__).parent / "data" / "helpdesk_exemplars.jsonl"

TICKETS = {
    4521: "open; 'Outlook keeps asking for my password'; assigned to Sam; updated 2 h ago",
    9876: "reopened 4 times; 'nightly backup job fails on FS-02'; fixes: disk cleanup, "
    "agent reinstall, credential reset; fails again each Sunday after patching",
}


@tool
def get_ticket(ticket_id: int) -> str:
    """Look up a help-desk ticket by its number: status, title, history."""
    return TICKETS.get(ticket_id, f"no ticket {ticket_id}")


@tool
def search_knowledge_base(query: str) -> str:
    """Search the IT knowledge base for articles about a problem."""
    return f"KB-112 'Backups after patching' and KB-87 'Outlook password prompts' match {query!r}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=os.environ.get("LANGROUTE_PROVIDER", "offline"))
    args = parser.parse_args()

    cheap, strong = chat_models_for(args.provider)
    router = ExemplarRouter.from_file(DATA, routes=["small", "large"])
    llm = RoutingChatModel(router=router, models={"small": cheap, "large": strong})
    agent = create_agent(
        model=llm,
        tools=[get_ticket, search_knowledge_base],
        system_prompt="You are Acme's IT help desk. Use the tools to look things up.",
    )

    questions = [
        "What's the status of ticket 4521?",
        "In ticket 9876 the nightly file-server backup fails again after every fix. Analyse "
        "the history, find the root cause and propose a permanent fix with a rollout plan.",
    ]
    with track_costs() as ledger:
        for question in questions:
            print(f"\nUSER: {question}")
            state = agent.invoke({"messages": [{"role": "user", "content": question}]})
            for message in state["messages"][1:]:
                if isinstance(message, AIMessage):
                    route = message.response_metadata.get("langroute", {}).get("route")
                    model = message.response_metadata.get("model_name")
                    for call in message.tool_calls:
                        print(f"  ROUTE {route} {model}: TOOL CALL {call['name']}({call['args']})")
                    if message.content:
                        print(f"  ROUTE {route} {model}: {str(message.content)[:100]}")
                elif isinstance(message, ToolMessage):
                    print(f"  tool {message.name}: {str(message.content)[:80]}")

    summary = ledger.summary(order=router.routes)
    for item in summary.routes:
        print(f"{item.route}: {item.calls} model calls, ${item.cost or 0:.6f}")


if __name__ == "__main__":
    main()
