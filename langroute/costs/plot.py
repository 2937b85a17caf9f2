"""The cost plot: spend per route and cumulative spend against the baseline (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from langroute.costs.records import LedgerRecord
from langroute.costs.summary import request_costs, summarize

__all__ = ["plot_costs"]


def plot_costs(
    records: Sequence[LedgerRecord],
    path: str | Path,
    *,
    order: Sequence[str] | None = None,
    title: str = "langroute: cost per route",
) -> Path:
    """Plot spend per route and cumulative spend against always using the strong model.

    Left: one bar per route (its cost, with the number of calls). Right: cumulative cost
    over the requests, next to what the same requests would have cost on the baseline
    (strongest) model; the gap between the two lines is the saving. Uses matplotlib's
    Agg canvas directly, so no display and no global backend change are needed.

    Args:
        records: Ledger records, oldest first (``CostLedger.records()``).
        path: The PNG to write (parent folders are created).
        order: Routes to list first (e.g. cheapest to strongest).
        title: Figure title.

    Returns:
        The path written.

    Example:
        >>> from langroute.costs import CostLedger
        >>> plot_costs(CostLedger("ledger.db").records(), "costs.png")  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = summarize(records, order=order)
    figure = Figure(figsize=(11, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.5]})

    names = [item.route or "-" for item in summary.routes]
    costs = [item.cost or 0.0 for item in summary.routes]
    colours = ["#4C9F70", "#D1495B", "#EDAE49", "#00798C", "#8E6C8A", "#30638E"]
    bars = left.bar(names, costs, color=[colours[i % len(colours)] for i in range(len(names))])
    for bar, item in zip(bars, summary.routes, strict=True):
        left.annotate(
            f"${item.cost or 0:.4f}\n{item.calls} calls",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    left.set_ylabel("cost (USD)")
    left.set_title("spend per route")
    left.margins(y=0.25)

    # requests whose cost is unknown (a call unpriced or unmeasured) are left out, not $0
    every_request = request_costs(records)
    per_request = [(c, b) for c, b in every_request if c is not None]
    unknown = len(every_request) - len(per_request)
    xs = list(range(1, len(per_request) + 1))
    actual: list[float] = []
    baseline: list[float] = []
    total = base = 0.0
    for cost, reference in per_request:
        total += cost
        base += reference if reference is not None else cost
        actual.append(total)
        baseline.append(base)
    strong = ", ".join(summary.baseline_models) or "strongest route"
    right.plot(xs, baseline, color="#D1495B", label=f"always {strong}")
    right.plot(xs, actual, color="#4C9F70", label="routed")
    right.fill_between(xs, actual, baseline, color="#4C9F70", alpha=0.15, label="saved")
    right.set_xlabel("request" if not unknown else f"request ({unknown} of unknown cost left out)")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_ylabel("cumulative cost (USD)")
    saved = "" if summary.savings_pct is None else f" (saved {summary.savings_pct:.0f}%)"
    right.set_title(f"cumulative spend{saved}")
    right.legend(loc="upper left", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    return path
