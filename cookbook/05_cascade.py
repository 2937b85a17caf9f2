"""Recipe 5: a cascade: the cheap model first, a validator or a judge decides, escalate on failure.

What it shows:
    * ``CascadeRunnable`` with a JSON-schema validator (``PydanticValidator``): the cheap
      model's answer is accepted only when it parses into the schema; otherwise the
      strong model answers.
    * The same cascade with an LLM judge (``llm_judge``): a cheap model grades the cheap
      answer ("Score: N/10") and low grades escalate. The judge's calls are costed too.
    * ``get_cascade_result``: which tier answered and why the earlier tier was rejected.

Run it:
    python cookbook/05_cascade.py                      # offline stand-in models
    python cookbook/05_cascade.py --provider openai    # langchain-openai + OPENAI_API_KEY
    LANGROUTE_PROVIDER=anthropic python cookbook/05_cascade.py
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Literal

from pydantic import BaseModel, Field
from rich.console import Console

from langchain_langroute import CascadeRunnable, get_cascade_result, llm_judge, track_costs
from langchain_langroute.demo import StandInChatModel, chat_models_for
from langchain_langroute.testing import ScriptedChatModel
from langroute.costs import print_report
from langroute.scorers import AllOf, NonEmptyValidator, PydanticValidator, RefusalDetector


class Triage(BaseModel):
    """The JSON every triage answer must match (this is the validator's schema)."""

    category: Literal["access", "hardware", "network", "security", "other"]
    priority: int = Field(ge=1, le=4)
    summary: str


SCHEMA = json.dumps(Triage.model_json_schema())
TICKETS = [
    "My laptop screen flickers when I plug in the docking station.",
    "I clicked a link in an email that asked for my password and typed it in.",
    "The whole third floor lost Wi-Fi ten minutes ago and the sales demo starts at 3pm.",
]
QUESTIONS = [
    "What does 2FA protect against, in one sentence?",
    "Explain why our DNS failover did not trigger when the primary resolver hung.",
]


def triage_prompt(ticket: str) -> str:
    return f"Triage this help-desk ticket. Reply with JSON only, matching {SCHEMA}.\n{ticket}"


def offline_models() -> tuple[StandInChatModel, StandInChatModel, ScriptedChatModel]:
    """Stand-ins scripted to show both outcomes: some cheap answers pass, some do not."""
    cheap_answers = {
        triage_prompt(TICKETS[0]): '{"category": "hardware", "priority": 3, '
        '"summary": "Screen flickers with dock"}',
        # wrong enum value and priority out of range: the validator rejects it
        triage_prompt(TICKETS[1]): '{"category": "phishing", "priority": 0, '
        '"summary": "User entered password"}',
        triage_prompt(TICKETS[2]): '{"category": "network", "priority": 1, '
        '"summary": "Floor 3 Wi-Fi outage"}',
        QUESTIONS[0]: "It stops someone who has your password from signing in without "
        "your second factor.",
        QUESTIONS[1]: "DNS is sometimes slow.",
    }
    strong_answers = {
        triage_prompt(TICKETS[1]): '{"category": "security", "priority": 1, '
        '"summary": "Credential phishing: reset password, revoke sessions"}',
        QUESTIONS[1]: "The health check only tested TCP port 53, which stayed open while "
        "the resolver process hung; use a real query (dig) as the probe and fail over on "
        "timeouts, not only on refused connections.",
    }
    cheap = StandInChatModel(model="gpt-4o-mini", provider="openai", answers=cheap_answers)
    strong = StandInChatModel(
        model="gpt-4o", provider="openai", answers=strong_answers, style="strong"
    )
    # The judge grades the first answer well and the second badly (it is too vague).
    judge = ScriptedChatModel(model="gpt-4o-mini", responses=["Score: 9/10", "Score: 3/10"])
    return cheap, strong, judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=os.environ.get("LANGROUTE_PROVIDER", "offline"))
    args = parser.parse_args()
    if args.provider == "offline":
        cheap, strong, judge_model = offline_models()
    else:
        cheap, strong = chat_models_for(args.provider)
        judge_model = cheap  # a cheap model is a fine judge

    # 1. Validator cascade: accept the cheap answer only if it is valid JSON for Triage.
    validated = CascadeRunnable(
        tiers=[cheap, strong],  # cheapest first
        scorer=AllOf(NonEmptyValidator(), RefusalDetector(), PydanticValidator(Triage)),
        threshold=0.5,
        tier_names=["small", "large"],
    )
    # 2. Judge cascade: a cheap model grades the answer on 0-10; below 7 escalates.
    judged = CascadeRunnable(
        tiers=[cheap, strong],
        scorer=llm_judge(judge_model, threshold=0.7),
        threshold=0.7,
        tier_names=["small", "large"],
    )

    with track_costs() as ledger:
        for ticket in TICKETS:
            answer = validated.invoke(triage_prompt(ticket))
            result = get_cascade_result(answer)
            print(f"validator: ANSWERED BY {result.tier_name} ({result.model}) <- {ticket[:50]}")
            for attempt in result.rejected:
                print(f"    {attempt.tier_name} rejected: {attempt.reason}")
            print(f"    {answer.content}")
        for question in QUESTIONS:
            answer = judged.invoke(question)
            result = get_cascade_result(answer)
            print(f"judge:     ANSWERED BY {result.tier_name} ({result.model}) <- {question[:50]}")
            for attempt in result.rejected:
                print(f"    {attempt.tier_name} rejected: {attempt.reason}")

    # Every paid attempt is in the ledger: rejected cheap answers and the judge's calls too.
    summary = ledger.summary(order=["small", "large", "judge"])
    print_report(summary, console=Console(width=120))


if __name__ == "__main__":
    main()
