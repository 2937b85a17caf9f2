"""Recipe 14: three tiers behind a decider chain: free rules, the kNN router, an LLM router.

What it shows:
    * ``three_tier_router()``: the starter pack split in three routes, small, medium and
      large (no embedding: the starter router's vectors are reused).
    * ``DeciderChain(router, gate=HeuristicGate(rules), llm=LLMRouter(model))``: a rule
      decides first when one matches (free); else the kNN router; when the kNN is unsure
      (low confidence, out of distribution) a cheap chat model chooses, shown the route
      descriptions and the nearest labelled exemplars. Every decision names its stage.
    * ``evaluate_chain``: on a labelled three-tier set of our own, each stage's accuracy,
      quality loss (sent too cheap) and cost inflation (sent too strong) against the kNN
      router alone, and what the LLM router's calls cost.
    * End to end through LangChain: ``RoutingChatModel(router=chain)`` and a three-tier
      ``CascadeRunnable``, both recorded in one ledger; the LLM router's calls are rows
      of their own (route ``router``), counted against the savings.

Run it:
    python cookbook/14_three_tier_chain.py

Real providers:
    Offline by default: three stand-ins priced as gpt-4o-mini, gpt-4.1-mini and gpt-4o,
    and an LLM-router stand-in that judges by keywords. With ``--provider openai`` the
    tiers are ``ChatOpenAI`` models and the small one is the LLM router (needs a key).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from langchain_core.messages import HumanMessage
from rich.console import Console
from rich.table import Table

from langchain_langroute import CascadeRunnable, RoutingChatModel, track_costs
from langchain_langroute.demo import (
    THREE_TIERS,
    stand_in_router_model,
    three_tier_chain,
    three_tier_router,
    tier_models_for,
)
from langroute.costs import print_report
from langroute.evaluation.chains import evaluate_chain
from langroute.router.query_text import Query
from langroute.scorers import JSONValidator
from langroute.terminal import data_text

EVAL = Path(__file__).parent / "data" / "three_tier_eval.jsonl"
REQUESTS = [
    "hello!",  # the greeting rule
    "What's the capital of Portugal?",
    "Write a Python function that validates an IBAN.",
    "Design a sharded job queue that survives the loss of a data centre.",
    "Recommend a good board game for four players.",  # the kNN is unsure: the LLM chooses
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=os.environ.get("LANGROUTE_PROVIDER", "offline"))
    args = parser.parse_args()
    console = Console()

    models = tier_models_for(args.provider)
    router_model = stand_in_router_model() if args.provider == "offline" else models["small"]
    chain = three_tier_chain(three_tier_router(), router_model)
    console.print(data_text(f"{chain!r}"))

    table = Table(title="decisions", title_justify="left")
    for column in ("request", "route", "stage", "why"):
        table.add_column(column)
    for text in [*REQUESTS, Query("What is in this photo?", attachments=1)]:
        decision = chain.route(text)
        why = decision.stage_note or f"{decision.reason}, confidence {decision.confidence:.2f}"
        table.add_row(data_text(text), decision.route, decision.stage or "", data_text(why))
    console.print(table)

    report = evaluate_chain(chain, EVAL)
    stages = Table(title=f"{EVAL.name}: the chain stage by stage", title_justify="left")
    for column in ("stage", "rows", "accuracy", "quality loss", "cost inflation"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for item in [*report.stages, report.chain, report.knn_only]:
        stages.add_row(
            item.stage,
            str(item.n),
            f"{item.accuracy:.0%}" if item.accuracy is not None else "-",
            f"{item.quality_loss:.0%}",
            f"{item.cost_inflation:.0%}",
        )
    console.print(stages)
    cost = "unknown" if report.routing_cost is None else f"${report.routing_cost:.6f}"
    console.print(f"LLM router: {report.routing_calls} calls, {cost}")

    llm = RoutingChatModel(router=chain, models=models)
    cascade = CascadeRunnable(
        tiers=[models[route] for route in THREE_TIERS],
        scorer=JSONValidator(),
        threshold=0.5,
        tier_names=list(THREE_TIERS),
    )
    with track_costs() as ledger:
        for text in REQUESTS:
            llm.invoke([HumanMessage(text)])
        cascade.invoke('Return JSON with keys "city" and "country" for: Lisbon, Portugal')
    print_report(ledger, console=console, order=[*THREE_TIERS, "router"])


if __name__ == "__main__":
    main()
