"""Two ``langroute serve`` replicas on one Postgres: feedback propagation, one ledger.

Bounded and self-stopping. Starts the fake upstream provider, a throwaway Postgres
(``.ci/postgres.sh``, or ``LANGROUTE_TEST_POSTGRES``), publishes the bundled starter
router to it, and runs two ``langroute serve`` subprocesses of the same models file
(``[serve] shared_router`` and ``ledger`` on that database, ``learn = true``). Then,
``--trials`` times, with a query never seen before that the router sends to ``small``:

1. replica A answers it, and the client posts a thumbs-down (``POST /v1/feedback``);
   replica A labels the query ``large`` in the shared router;
2. the client asks replica B the same query until B answers it on ``large``.

Reported: the propagation time (feedback answered by A -> first answer of B on
``large``; its resolution is one request to B, a few milliseconds), and whether the one
Postgres ledger holds a row for every request both replicas served.

    python benchmarks/serve_replicas.py --trials 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_path import add_output_options, output_path  # noqa: E402
from serve_load import routes_toml, start_provider, start_serve  # noqa: E402

EASY = [  # unlike each other, so that one labelled large does not pull the next one up
    "what's the capital of Australia?",
    "translate 'where is the train station' into Spanish",
    "good morning! how are you today?",
    "convert 72 degrees Fahrenheit to Celsius",
    "thanks a lot, that was helpful",
    "spell-check this: 'recieve the pakage tomorow'",
    "what time zone is Tokyo in?",
    "classify this review as positive or negative: 'loved it'",
    "reformat this date as ISO: March 5 2024",
    "who wrote Pride and Prejudice?",
    "extract the email from: contact bob@example.com for details",
    "summarise in five words: the meeting moved to Friday",
    "how many days are in a leap year?",
    "what is the plural of 'mouse'?",
    "rewrite politely: send me the report now",
    "what does HTTP stand for?",
    "list the primary colours",
    "is a tomato a fruit or a vegetable?",
    "what's 15% of 80?",
    "say hello in Japanese",
]


def start_postgres() -> tuple[str, str | None]:
    url = os.environ.get("LANGROUTE_TEST_POSTGRES")
    if url:
        return url, None
    done = subprocess.run(
        ["bash", str(REPO / ".ci" / "postgres.sh"), "start"],
        capture_output=True,
        text=True,
        check=True,
    )
    folder, url = done.stdout.split()
    return url, folder


def ask(client: httpx.Client, url: str, query: str) -> tuple[str, str]:
    """(route, response id) of one chat completion."""
    response = client.post(
        url + "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": query}]},
    )
    response.raise_for_status()
    return response.headers["x-langroute-route"], response.json()["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=len(EASY))
    add_output_options(parser, "serve_replicas.json", flag="--output")
    args = parser.parse_args()
    args.output = output_path(args.output, args.save, "serve_replicas.json")

    from langroute import ExemplarRouter
    from langroute.costs import CostLedger
    from langroute.postgres import publish_router

    provider, provider_port = start_provider()
    url, pg_folder = start_postgres()
    replicas: list[subprocess.Popen[str]] = []
    try:
        publish_router(ExemplarRouter.default(), url, name="starter")
        folder = Path(tempfile.mkdtemp(prefix="langroute-replicas-"))
        config = folder / "models.toml"
        config.write_text(
            routes_toml(provider_port)
            + f'\n[serve]\nshared_router = {json.dumps(url)}\nrouter_name = "starter"\n'
            f"ledger = {json.dumps(url)}\nlearn = true\nmax_retries = 0\n",
            encoding="utf-8",
        )
        (one, one_url), (two, two_url) = start_serve(config), start_serve(config)
        replicas = [one, two]
        served = 0
        skipped = 0
        propagation: list[float] = []
        polls: list[int] = []
        with httpx.Client(timeout=30) as client:
            for trial in range(args.trials):
                query = EASY[trial % len(EASY)]
                route, answer_id = ask(client, one_url, query)
                served += 1
                if route != "small":  # an earlier label pulled it up: not a fresh trial
                    skipped += 1
                    continue
                reply = client.post(
                    one_url + "/v1/feedback", json={"id": answer_id, "verdict": "bad"}
                )
                reply.raise_for_status()
                learned = time.perf_counter()
                count = 0
                while True:
                    route, _ = ask(client, two_url, query)
                    served += 1
                    count += 1
                    if route == "large":
                        break
                    if time.perf_counter() - learned > 30:
                        raise RuntimeError("replica two never learned the feedback")
                propagation.append((time.perf_counter() - learned) * 1000)
                polls.append(count)
    finally:
        for process in replicas:
            process.terminate()
        for process in replicas:
            process.wait(timeout=60)
        provider.kill()
    ledger = CostLedger(url)
    records = ledger.records()
    ledger.close()
    if pg_folder is not None:
        subprocess.run(["bash", str(REPO / ".ci" / "postgres.sh"), "stop", pg_folder], check=False)
    calls = [r for r in records if not r.is_feedback]
    result = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "trials": args.trials,
        "trials_skipped": skipped,
        "propagation_ms": {
            "median": statistics.median(propagation),
            "p90": sorted(propagation)[int(0.9 * (len(propagation) - 1))],
            "max": max(propagation),
        },
        "requests_to_replica_two_until_learned": {
            "median": statistics.median(polls),
            "max": max(polls),
        },
        "requests_served": served,
        "ledger_call_rows": len(calls),
        "ledger_requests": len({r.run_id for r in calls}),
        "ledger_feedback_rows": len(records) - len(calls),
        "ledger_rows_equal_requests": len({r.run_id for r in calls}) == served,
    }
    print(json.dumps(result, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
