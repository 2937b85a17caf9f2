"""Recipe 12: a multi-turn chat whose follow-ups keep the route of the conversation.

What it shows:
    * ``RoutingChatModel`` routes the conversation by default (``window:1``): a
      follow-up such as "yes, do that" is routed with the earlier user turn mixed in
      (embedding space), not on its own few words; assistant replies and tool results
      never count. ``context=None, sessions=False`` routes the last message alone.
    * Sessions, on by default: within one conversation the route never drops to a
      cheaper model unless the topic changes; the key comes from ``config["metadata"]``
      (``session_id``/``thread_id``), else from the transcript.
    * ``response_metadata["langroute"]["session"]``: whether the route was held
      (``sticky``), moved up (``upgrade``) or reset (``topic_shift``).

Run it:
    python cookbook/12_multi_turn_chat.py

Real providers:
    Offline by default (local stand-ins priced as gpt-4o-mini and gpt-4o). With
    ``--provider openai`` the two routes are ``ChatOpenAI`` models (needs an API key).
"""

from __future__ import annotations

import argparse
import os

from langchain_core.messages import AIMessage, HumanMessage
from rich.console import Console
from rich.text import Text

from langchain_langroute import RoutingChatModel
from langchain_langroute.demo import chat_models_for
from langroute import ExemplarRouter

TURNS = [
    "Write a distributed rate limiter in Go that works across several nodes with Redis.",
    "yes, do that",
    "make it shorter",
    "and now in Rust?",
    "thanks!",
    "By the way, what is the capital of Canada?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=os.environ.get("LANGROUTE_PROVIDER", "offline"))
    args = parser.parse_args()
    cheap, strong = chat_models_for(args.provider)
    router = ExemplarRouter.default()  # the starter pack: routes small and large
    console = Console()
    for label, options in (
        ("last message only", {"context": None, "sessions": False}),
        ("conversation + sessions", {}),  # the defaults
    ):
        llm = RoutingChatModel(router=router, models={"small": cheap, "large": strong}, **options)
        console.print(Text(f"\n{label}", style="bold"))
        history: list = []
        config = {"metadata": {"session_id": "recipe-12"}}
        for turn in TURNS:
            history.append(HumanMessage(turn))
            answer = llm.invoke(history, config=config)
            history.append(AIMessage(str(answer.content)))
            record = answer.response_metadata["langroute"]
            session = record.get("session") or {}
            note = f"  ({session['action']}, router chose {session['routed']})" if session else ""
            console.print(Text(f"  {record['route']:<6} {turn}{note}"))


if __name__ == "__main__":
    main()
