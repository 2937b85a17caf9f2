"""Recipe 1: build a router from your own JSONL, then inspect a decision and its neighbours.

What it shows:
    * ``ExemplarRouter.from_file``: a router from a labelled JSONL file
      (``{"text": ..., "route": "small" | "large"}`` per line, cheapest route first).
    * ``router.route(query)``: the decision (route, reason, confidence, escalation) and
      the nearest exemplars that voted for it: every decision can be explained.
    * ``router.save`` / ``ExemplarRouter.load``: reuse the index without re-embedding.

Run it:
    python cookbook/01_route_and_explain.py
    python cookbook/01_route_and_explain.py "Why does my laptop reboot every night?"

Real providers:
    Routing needs no LLM and no API key: it runs on the bundled all-MiniLM-L6-v2
    embedder, locally. Recipes 2 to 5 send the routed requests to real models.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console

from langroute import ExemplarRouter
from langroute.cli.app import decision_table  # the same explanation `langroute route` prints

DATA = Path(__file__).parent / "data" / "helpdesk_exemplars.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queries", nargs="*", help="requests to route (default: three examples)")
    parser.add_argument(
        "--output", type=Path, help="where to save the router (default: a temp dir)"
    )
    args = parser.parse_args()
    console = Console()

    # 1. Build the router from your labelled examples. Routes are ordered cheapest first;
    #    "small" and "large" are route names, mapped to real models later (recipe 2).
    router = ExemplarRouter.from_file(DATA, routes=["small", "large"], k=5)
    console.print(f"built {router!r} from {DATA.name}: {router.counts()}")

    # 2. Route and explain. The reason is "vote" for a clear majority, "low_confidence"
    #    when the vote is too close to the dial (the request goes to the fallback, the
    #    strongest route) and "out_of_distribution" when no exemplar is similar enough.
    queries = args.queries or [
        "How do I reset my email password?",
        "Our VPN drops every 20 minutes for remote staff since the firewall upgrade; "
        "find the cause.",
        "Recommend a good podcast about gardening.",
    ]
    for query in queries:
        decision = router.route(query)
        console.rule(query[:80])
        console.print(decision_table(decision))
        # The same evidence as data: decision.neighbours[i].text / .route / .similarity
        top = decision.neighbours[0]
        print(
            f"ROUTE {decision.route} ({decision.reason}, confidence {decision.confidence:.2f}); "
            f"nearest exemplar: {top.text[:60]!r} -> {top.route} (similarity {top.similarity:.2f})"
        )

    # 3. Save once, load fast: the FAISS index and the exemplars are stored, so loading
    #    does not re-embed anything.
    target = args.output or Path(tempfile.mkdtemp(prefix="langroute-")) / "helpdesk-router"
    router.save(target)
    loaded = ExemplarRouter.load(target)
    same = loaded.route(queries[0]).route == router.route(queries[0]).route
    console.print(f"saved to {target}; reloaded {len(loaded)} exemplars; same decision: {same}")


if __name__ == "__main__":
    main()
