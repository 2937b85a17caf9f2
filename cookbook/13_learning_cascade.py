"""Recipe 13: a cascade that teaches its router, and a thumbs-down that moves a route.

What it shows:
    * ``CascadeRunnable(..., router=router, learn=True)``: every cascade outcome (cheap
      answer accepted or rejected by the scorer) becomes a learned exemplar, with its
      provenance (``source="cascade"``, time, scorer) in ``metadata``.
    * Route, then cascade: once the neighbours say the cheap model fails on queries like
      this one, the cascade starts at the strong tier and skips the attempt that would be
      thrown away (``skipped`` in the cascade result, ``routed_past`` in the ledger).
    * Feedback by ledger record id: ``CostCallbackHandler(store_queries=True)`` keeps the
      routed query, the answer names its ``record_id``, and
      ``router.learn_from_feedback(ledger, record_id, "bad")`` turns a user's thumbs-down
      into an exemplar for the next stronger route.
    * Learned exemplars listed by source and saved with the router.

Run it:
    python cookbook/13_learning_cascade.py

Real providers: replace the two ``ScriptedChatModel`` tiers with ``ChatOpenAI(...)``
models (or any chat models) and ``HashingEmbedder()`` with the default encoder
(``embedder=None``); nothing else changes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from langchain_langroute import (
    CascadeRunnable,
    CostCallbackHandler,
    RoutingChatModel,
    get_cascade_result,
)
from langchain_langroute.testing import ScriptedChatModel
from langroute import Exemplar, ExemplarRouter
from langroute.embedders import HashingEmbedder
from langroute.scorers import RefusalDetector

REFUSAL = "I'm sorry, but I can't help with that."
SQL = "write a sql query joining orders and customers by region"
SQL_AGAIN = "write a sql query joining orders and customers by country"


def build_router() -> ExemplarRouter:
    """A tiny help-desk router; the hashing embedder keeps the recipe offline and fast."""
    exemplars = [
        Exemplar(text="hello there", route="small"),
        Exemplar(text="what are your opening hours", route="small"),
        Exemplar(text="reset my password please", route="small"),
        Exemplar(text="write a short sql select query", route="small"),
        Exemplar(text="prove the algorithm terminates", route="large"),
        Exemplar(text="design a fault tolerant billing system", route="large"),
    ]
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=exemplars,
        embedder=HashingEmbedder(),
        k=1,
        min_similarity=0.05,
        min_margin=0.0,
    )


def main() -> None:
    console = Console()
    router = build_router()
    cheap = ScriptedChatModel(model="gpt-4o-mini", responses=[REFUSAL, "SELECT ..."])
    strong = ScriptedChatModel(model="gpt-4o", responses=["SELECT o.*, c.region FROM ..."] * 2)
    cascade = CascadeRunnable(
        [cheap, strong],
        scorer=RefusalDetector(),
        tier_names=["small", "large"],
        router=router,
        learn=True,
        route_past=True,
        route_past_at=0.8,
    )
    handler = CostCallbackHandler()
    for question in (SQL, SQL_AGAIN):
        answer = cascade.invoke(question, {"callbacks": [handler]})
        result = get_cascade_result(answer)
        skipped = f" (skipped {', '.join(result.skipped)})" if result.skipped else ""
        console.print(
            f"cascade: {escape(question)!r} -> {result.tier_name}{skipped}; "
            f"cheap calls so far: {cheap.call_count}"
        )
    stats = cascade.learning.stats
    console.print(
        f"route then cascade: {stats.routed_past} routed past, {stats.calls_saved} call(s) saved"
    )
    handler.ledger.flush()
    console.print("ledger reasons:", ", ".join(str(r.reason) for r in handler.ledger.records()))

    # A routed answer, a user's thumbs-down, and the route it moves.
    llm = RoutingChatModel(
        router=router,
        models={
            "small": ScriptedChatModel(model="gpt-4o-mini", responses=["Sure, here it is."]),
            "large": ScriptedChatModel(model="gpt-4o", responses=["A careful answer."]),
        },
    )
    costs = CostCallbackHandler(store_queries=True)
    question = "hello, what are your opening hours on public holidays"
    before = router.route(question).route
    answer = llm.invoke(question, {"callbacks": [costs]})
    record_id = answer.response_metadata["langroute"]["record_id"]
    learned = router.learn_from_feedback(costs.ledger, record_id, "bad")
    console.print(
        f"feedback: {before} answered, thumbs down -> learned route {learned.route}; "
        f"now routes to {router.route(question).route}"
    )

    for source in ("cascade", "feedback"):
        for ex in router.exemplars_by_source(source):
            console.print(
                f"learned \\[{source}] {escape(ex.text)!r} -> {ex.route} "
                f"(confirmations {ex.metadata['confirmations']})"
            )
    with tempfile.TemporaryDirectory() as folder:
        path = router.save(Path(folder) / "router")
        loaded = ExemplarRouter.load(path, embedder=HashingEmbedder())
        console.print(f"saved and loaded: {len(loaded.learned_exemplars)} learned exemplars")


if __name__ == "__main__":
    main()
