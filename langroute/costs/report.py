"""The cost report: a ``rich`` table of a ledger summary (``langroute report LEDGER``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from langroute.costs.ledger import CostLedger
from langroute.costs.summary import LedgerSummary

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["print_report", "render_report"]


def _fmt_usd(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value != 0 and abs(value) < 0.01:
        return f"${value:.6f}"
    return f"${value:,.4f}"


def _fmt_ms(p50: float | None, p95: float | None) -> str:
    if p50 is None or p95 is None:
        return "-"
    return f"{p50:,.0f} / {p95:,.0f}"


def _fmt_count(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:,.1f}M"
    if value >= 100_000:
        return f"{value / 1_000:,.1f}k"
    return f"{value:,}"


def _fmt_cost(cost: float | None, unpriced: int, unmeasured: int = 0) -> str:
    text = _fmt_usd(cost)
    if unpriced and cost is not None:
        text += f" (+{unpriced} unpriced)"
    if unmeasured:
        text += f" (+{unmeasured} unmeasured)"
    return text


def render_report(summary: LedgerSummary, *, title: str | None = "langroute cost report") -> Table:
    """A rich table of a summary: one row per route, a total row and a savings caption.

    The total row's "esc" cell counts requests with an escalation (and their
    share of all requests); route rows count that route's escalated calls (and their
    share of its calls). The "cached" column appears only when some input was cached.
    Calls whose provider reported no usage are shown as "(+N unmeasured)" in the cost
    cells and named in the caption; savings leave their requests out.

    Example:
        >>> from rich.console import Console
        >>> Console().print(render_report(CostLedger().summary()))  # doctest: +SKIP
    """
    from rich.table import Table

    table = Table(title=title, show_footer=True, header_style="bold")
    show_cached = summary.cached_tokens > 0

    def escalated(count: int, rate: float) -> str:
        return f"{count:,} ({rate:.0%})" if count else "0"

    columns: list[tuple[str, str, Literal["left", "right"]]] = [
        ("route", "total", "left"),
        ("model", "", "left"),
        ("calls", f"{summary.calls:,}", "right"),
        ("err", f"{summary.errors:,}", "right"),
        ("esc", escalated(summary.escalated_requests, summary.escalation_rate), "right"),
        ("in tok", _fmt_count(summary.input_tokens), "right"),
        ("cached", _fmt_count(summary.cached_tokens), "right"),
        ("out tok", _fmt_count(summary.output_tokens), "right"),
        (
            "cost",
            _fmt_cost(summary.cost, summary.unpriced_calls, summary.unmeasured_calls),
            "right",
        ),
        ("p50 / p95 ms", _fmt_ms(summary.latency_p50_ms, summary.latency_p95_ms), "right"),
    ]
    for header, footer, justify in columns:
        if header == "cached" and not show_cached:
            continue
        table.add_column(
            header,
            footer=footer,
            justify=justify,
            overflow="fold" if justify == "left" else "ellipsis",
            min_width=5 if justify == "left" else None,
        )
    for item in summary.routes:
        cells = [
            item.route if item.route is not None else "-",
            ", ".join(item.models) or "-",
            f"{item.calls:,}",
            f"{item.errors:,}",
            escalated(item.escalations, item.escalation_rate),
            _fmt_count(item.input_tokens),
            _fmt_count(item.cached_tokens),
            _fmt_count(item.output_tokens),
            _fmt_cost(item.cost, item.unpriced_calls, item.unmeasured_calls),
            _fmt_ms(item.latency_p50_ms, item.latency_p95_ms),
        ]
        if not show_cached:
            del cells[6]
        table.add_row(*cells)
    lines = [f"{summary.requests:,} requests, {summary.calls:,} calls"]
    if summary.unmeasured_calls:
        lines.append(
            f"{summary.unmeasured_calls:,} calls unmeasured (no usage reported; "
            f"{summary.unmeasured_requests:,} requests left out of cost and savings)"
        )
    if summary.baseline_cost is not None:
        baseline = ", ".join(summary.baseline_models) or "baseline"
        lines.append(f"always {baseline}: {_fmt_usd(summary.baseline_cost)}")
    if summary.savings is not None:
        pct = "" if summary.savings_pct is None else f" ({summary.savings_pct:.1f}%)"
        lines.append(f"saved {_fmt_usd(summary.savings)}{pct}")
    table.caption = "; ".join(lines)
    return table


def print_report(
    source: CostLedger | LedgerSummary | str | Path,
    *,
    console: Console | None = None,
    order: Sequence[str] | None = None,
) -> LedgerSummary:
    """Print the cost report of a ledger (the ``langroute report LEDGER`` command).

    Args:
        source: A ledger, a summary, or the path of a JSONL / SQLite ledger file.
        console: Where to print (default: a new ``rich`` console on stdout).
        order: Route names to list first.

    A JSONL ledger's torn lines (records cut short by a killed writer) are skipped and
    noted below the table with their file and line.

    Returns:
        The summary that was printed.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        LedgerFormatError: The file is malformed (file and line named).

    Example:
        >>> print_report("costs.jsonl")  # doctest: +SKIP
    """
    ledger: CostLedger | None = None
    if isinstance(source, LedgerSummary):
        summary = source
    else:
        ledger = source if isinstance(source, CostLedger) else CostLedger.open(source)
        summary = ledger.summary(order=order)
    if console is None:
        from rich.console import Console

        console = Console()
    console.print(render_report(summary))
    if ledger is not None and ledger.torn_lines:
        from rich.text import Text

        console.print(Text(_torn_note(ledger), style="yellow"))
    return summary


def _torn_note(ledger: CostLedger) -> str:
    """The report's note on torn lines: how many, and where."""
    torn = ledger.torn_lines
    path = getattr(ledger.sink, "path", ledger.sink)
    places = ", ".join(f"{path}:{number}" for number in torn[:5])
    if len(torn) > 5:
        places += f", ... (+{len(torn) - 5} more)"
    plural = "s" if len(torn) > 1 else ""
    return (
        f"note: skipped {len(torn)} torn line{plural}: {places} (records cut short by an "
        "interrupted write, e.g. a killed process; they are lost, the rest is complete)"
    )
