"""Recipe 7: cost per route: read the ledger, print the report, plot spend per route and savings.

What it shows:
    * ``CostLedger.open(path)``: read a SQLite (or JSONL) ledger written by
      ``track_costs`` / ``CostCallbackHandler`` (LangChain) or the LlamaIndex handler.
    * ``print_report``: the per-route table (calls, tokens, cost, latency, escalations,
      savings against always calling the strongest route), i.e. ``langroute report PATH``.
    * Savings over time: per-day cost against the always-strong baseline, from the records.
    * Plain SQL on the ledger table, for your own dashboards.
    * Plots: spend per route (``langroute.costs.plot_costs``) and savings per day.

Run it:
    python cookbook/07_cost_report.py                        # a simulated week of traffic
    python cookbook/07_cost_report.py --ledger langroute-demo/ledger.db   # after `langroute demo`

Real providers:
    Point --ledger at the ledger your application writes, e.g.
    ``with track_costs("costs.db"): chain.invoke(...)`` with real chat models.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from langroute.costs import CostLedger, LedgerRecord, plot_costs, print_report

OUTPUT = Path(__file__).parent / "output"


def simulate_week(path: Path) -> None:
    """Write a week of routed traffic, as CostCallbackHandler would have recorded it."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    rng = random.Random(7)
    ledger = CostLedger(path)  # prices from genai-prices, baseline at the strong model
    start = datetime.now(timezone.utc).replace(hour=9, minute=0) - timedelta(days=6)
    for day in range(7):
        share_small = 0.55 + 0.04 * day  # the router improves as feedback is added
        for n in range(40):
            small = rng.random() < share_small
            ledger.record(
                LedgerRecord(
                    timestamp=start + timedelta(days=day, minutes=12 * n),
                    framework="langchain",
                    run_id=f"d{day}-r{n}",
                    route="small" if small else "large",
                    model="gpt-4o-mini" if small else "gpt-4o",
                    baseline_model="gpt-4o",
                    input_tokens=rng.randint(150, 600) if small else rng.randint(400, 1500),
                    output_tokens=rng.randint(20, 150) if small else rng.randint(200, 700),
                    latency_ms=rng.uniform(250, 700) if small else rng.uniform(900, 3000),
                    reason="vote",
                )
            )
    ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", type=Path, help="an existing ledger (.db/.sqlite/.jsonl)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    console = Console(width=120)
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.ledger
    if path is None:
        path = args.output / "week.db"
        simulate_week(path)

    # 1. The report (the same as `langroute report PATH`).
    ledger = CostLedger.open(path)
    summary = print_report(ledger, console=console, order=["small", "large"])

    # 2. Savings over time: group requests by day (records of one request share run_id).
    per_day: dict[str, dict[str, float]] = defaultdict(lambda: {"cost": 0.0, "baseline": 0.0})
    requests: dict[str, list[LedgerRecord]] = defaultdict(list)
    for record in ledger.records():
        requests[record.run_id or str(id(record))].append(record)
    for group in requests.values():
        day = group[0].timestamp.date().isoformat()
        per_day[day]["cost"] += sum(r.cost or 0.0 for r in group)
        per_day[day]["baseline"] += max((r.baseline_cost or 0.0) for r in group)
    table = Table(title="savings per day")
    for column in ("day", "cost", "always strong", "saved"):
        table.add_column(column, justify="left" if column == "day" else "right")
    for day, row in sorted(per_day.items()):
        saved = row["baseline"] - row["cost"]
        table.add_row(day, f"${row['cost']:.4f}", f"${row['baseline']:.4f}", f"${saved:.4f}")
    console.print(table)

    # 3. Plain SQL works too (SQLite ledgers have one typed column per field).
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        with sqlite3.connect(path) as db:
            rows = db.execute(
                "SELECT route, COUNT(*), ROUND(SUM(cost), 6) FROM ledger GROUP BY route"
            ).fetchall()
        print("SQL:", rows)

    # 4. Plots: spend per route + cumulative spend, and the saving per day.
    routes_png = plot_costs(
        ledger.records(),
        args.output / "cost_per_route.png",
        order=["small", "large"],
        title=f"cost per route: {path.name}",
    )
    days_png = plot_savings_per_day(per_day, args.output / "savings_per_day.png")
    print(
        f"TOTAL ${summary.cost or 0:.4f}; SAVED ${summary.savings or 0:.4f} "
        f"({summary.savings_pct or 0:.0f}%)"
    )
    print(f"wrote {routes_png} and {days_png}")


def plot_savings_per_day(per_day: dict[str, dict[str, float]], path: Path) -> Path:
    """Bars of cost and always-strong cost per day, with the saving in percent."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    days = sorted(per_day)
    figure = Figure(figsize=(8, 3.8), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    xs = range(len(days))
    axes.bar(
        [x - 0.2 for x in xs],
        [per_day[d]["baseline"] for d in days],
        width=0.4,
        color="#D1495B",
        label="always the strong model",
    )
    axes.bar(
        [x + 0.2 for x in xs],
        [per_day[d]["cost"] for d in days],
        width=0.4,
        color="#4C9F70",
        label="routed",
    )
    for x, day in zip(xs, days, strict=True):
        base, cost = per_day[day]["baseline"], per_day[day]["cost"]
        if base:
            axes.annotate(
                f"-{100 * (base - cost) / base:.0f}%",
                (x, base),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    axes.set_xticks(list(xs), [d[5:] for d in days])
    axes.set_ylabel("cost (USD)")
    axes.set_title("savings per day")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    return path


if __name__ == "__main__":
    main()
