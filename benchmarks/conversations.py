"""Follow-up routing accuracy with and without conversation context, and with sessions.

Run: ``python benchmarks/conversations.py [--json benchmarks/results/conversations.json]``

Data: ``langroute/data/conversations_eval.jsonl`` (bundled, written for langroute): 150
conversations whose last user turn is a follow-up (a confirmation, a refinement, a
change of language, a "why?", a "thanks") or a topic switch, each labelled with the
route the starter router's routes (``small``/``large``) should give the whole
conversation. The starter router (``ExemplarRouter.default()``, the default encoder)
routes the last user turn:

* with each :class:`~langroute.router.conversation.ConversationContext` strategy;
* with a :class:`~langroute.router.conversation.SessionTracker` (and ``current_only`` or
  ``window``): every earlier user turn is routed first, in order, in the same session,
  then the last one.

Accuracy is reported overall, on the follow-ups (everything but topic switches) and on
the topic switches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_path import add_output_options, output_path

from langroute import ExemplarRouter, load_exemplars
from langroute.router.conversation import (
    ConversationContext,
    SessionTracker,
    parse_messages,
    route_conversation,
    route_conversations,
)

DATA = Path(__file__).resolve().parents[1] / "langroute" / "data" / "conversations_eval.jsonl"
STRATEGIES = ["current_only", "window:1", "window:1:1", "window:3:0.5", "window_text:3"]


def _accuracy(rows: list[Any], routes: list[str]) -> dict[str, Any]:
    def share(pairs: list[tuple[str, str]]) -> float | None:
        return round(sum(a == b for a, b in pairs) / len(pairs), 4) if pairs else None

    pairs = [(row.route, route, row.metadata.get("kind")) for row, route in zip(rows, routes)]
    return {
        "accuracy": share([(a, b) for a, b, _ in pairs]),
        "follow_ups": share([(a, b) for a, b, k in pairs if k != "topic_switch"]),
        "topic_switches": share([(a, b) for a, b, k in pairs if k == "topic_switch"]),
        "large_share": round(sum(r == "large" for r in routes) / len(routes), 4),
    }


def _with_sessions(
    router: ExemplarRouter, rows: list[Any], context: ConversationContext, tracker: SessionTracker
) -> list[str]:
    out = []
    for i, row in enumerate(rows):
        turns = parse_messages(row.messages)
        users = [j for j, t in enumerate(turns) if t.role == "user"]
        decision = None
        for j in users:  # the conversation as it unfolds, turn by turn
            decision = route_conversation(
                router, turns[: j + 1], context, sessions=tracker, session_key=f"c{i}"
            )
        assert decision is not None
        out.append(decision.route)
    return out


THRESHOLDS = (0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
WORD_FLOORS = (3, 4, 5, 6, 8, 10)


def _sweep(router: ExemplarRouter, rows: list[Any]) -> list[dict[str, Any]]:
    """Sessions with window:1 over a grid of topic thresholds and word floors.

    Each setting is scored on the whole set and on its two halves (even and odd rows),
    so that a choice that only fits one half shows.
    """
    context = ConversationContext.parse("window:1")
    halves = {"even": rows[0::2], "odd": rows[1::2]}
    out = []
    for threshold in THRESHOLDS:
        for words in WORD_FLOORS:
            tracker = SessionTracker(topic_threshold=threshold, min_topic_words=words)
            routes = _with_sessions(router, rows, context, tracker)
            entry: dict[str, Any] = {
                "topic_threshold": threshold,
                "min_topic_words": words,
                **_accuracy(rows, routes),
            }
            for name, half in halves.items():
                half_routes = routes[0::2] if name == "even" else routes[1::2]
                entry[name] = _accuracy(half, half_routes)["accuracy"]
            out.append(entry)
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure and write the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_options(parser, "conversations.json")
    parser.add_argument("--data", default=DATA, type=Path)
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also sweep the sessions' topic_threshold and min_topic_words (window:1)",
    )
    args = parser.parse_args(argv)
    args.json = output_path(args.json, args.save, "conversations.json")
    rows = load_exemplars(args.data)
    router = ExemplarRouter.default()
    started = time.perf_counter()
    results: dict[str, Any] = {"contexts": {}, "sessions": {}}
    for spec in STRATEGIES:
        context = ConversationContext.parse(spec)
        decisions = route_conversations(router, [r.messages for r in rows], context)
        results["contexts"][context.describe()] = _accuracy(rows, [d.route for d in decisions])
    for spec in ("current_only", "window:1"):
        context = ConversationContext.parse(spec)
        routes = _with_sessions(router, rows, context, SessionTracker())
        results["sessions"][context.describe()] = _accuracy(rows, routes)
    if args.sweep:
        results["sweep"] = _sweep(router, rows)
    figures = {
        "data": str(args.data.name),
        "conversations": len(rows),
        "encoder": router.embedder.fingerprint,
        "session_defaults": {"topic_threshold": 0.3, "min_topic_words": 6},
        "seconds": round(time.perf_counter() - started, 2),
        "python": platform.python_version(),
        **results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
