"""The cost report of a ledger summary: a ``rich`` table, JSON or CSV (``langroute report``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from langroute.costs.ledger import CostLedger
from langroute.costs.summary import LedgerSummary, RouteCostSummary
from langroute.terminal import data_text, printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["CSV_COLUMNS", "print_report", "render_report", "report_csv", "report_json"]


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


def _escalated(count: int, rate: float) -> str:
    return f"{count:,} ({rate:.0%})" if count else "0"


Item = LedgerSummary | RouteCostSummary
"""A route's summary, or the whole ledger's (the total row)."""

# In the compact layout, left out in this order while the table is too wide.
_DROPPABLE = ("p50 / p95 ms", "in / out tok", "esc", "err")
_ROUTE_MIN_WIDTH = 5


def _escalations(item: Item) -> int:
    """Escalated requests in total, escalated calls for a route."""
    return item.escalated_requests if isinstance(item, LedgerSummary) else item.escalations


def _number_columns(summary: LedgerSummary, compact: bool) -> list[tuple[str, list[str]]]:
    """Header and cells (one per route, then the total) of each right-aligned column."""
    items: list[Item] = [*summary.routes, summary]

    def cost(item: Item) -> str:
        if not compact:
            return _fmt_cost(item.cost, item.unpriced_calls, item.unmeasured_calls)
        marked = (item.unpriced_calls and item.cost is not None) or item.unmeasured_calls
        return _fmt_usd(item.cost) + ("*" if marked else "")

    cells: list[tuple[str, Callable[[Item], str]]] = [
        ("calls", lambda item: f"{item.calls:,}"),
        ("err", lambda item: f"{item.errors:,}"),
        ("esc", lambda item: _escalated(_escalations(item), item.escalation_rate)),
    ]
    if compact:
        cells.append(
            (
                "in / out tok",
                lambda item: f"{_fmt_count(item.input_tokens)} / {_fmt_count(item.output_tokens)}",
            )
        )
    else:
        cells.append(("in tok", lambda item: _fmt_count(item.input_tokens)))
        if summary.cached_tokens > 0:
            cells.append(("cached", lambda item: _fmt_count(item.cached_tokens)))
        cells.append(("out tok", lambda item: _fmt_count(item.output_tokens)))
    cells.append(("cost", cost))
    cells.append(("p50 / p95 ms", lambda item: _fmt_ms(item.latency_p50_ms, item.latency_p95_ms)))
    return [(header, [cell(item) for item in items]) for header, cell in cells]


def _table_width(widths: Sequence[int]) -> int:
    """Width of a table with the default box and padding: cell widths, padding, rules."""
    return sum(widths) + 3 * len(widths) + 1


def _route_names(summary: LedgerSummary) -> list[str]:
    return [item.route if item.route is not None else "-" for item in summary.routes]


def render_report(
    summary: LedgerSummary,
    *,
    title: str | None = "langroute cost report",
    width: int | None = None,
) -> Table:
    """A rich table of a summary: one row per route, a total row and a savings caption.

    The total row's "esc" cell counts requests with an escalation (and their
    share of all requests); route rows count that route's escalated calls (and their
    share of its calls). The "cached" column appears only when some input was cached.
    Calls whose provider reported no usage are shown as "(+N unmeasured)" in the cost
    cells and named in the caption; savings leave their requests out.
    Route and model names are shown as text, never read as markup.

    Args:
        summary: What to show.
        title: The table's title.
        width: The columns available (for example ``console.width``). When the full
            table is wider, a compact layout is used (80 columns: pipes, CI logs):
            input and output tokens share a column, cached tokens are left out, the
            models are listed under the table and a cost that leaves unpriced or
            unmeasured calls out is marked ``*``; if that is still too wide, the
            latency, token, escalation and error columns are left out in that order.
            Costs are never cut, and route names wrap. ``None``: always the full table.

    Example:
        >>> from rich.console import Console
        >>> Console().print(render_report(CostLedger().summary()))  # doctest: +SKIP
    """
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    names = _route_names(summary)
    models = [", ".join(item.models) or "-" for item in summary.routes]

    def natural(header: str, cells: Sequence[str]) -> int:
        return max(cell_len(text) for text in (header, *cells))

    columns = _number_columns(summary, compact=False)
    full_width = _table_width(
        [
            natural("route", [*names, "total"]),
            natural("model", models),
            *(natural(header, cells) for header, cells in columns),
        ]
    )
    compact = width is not None and full_width > width
    if compact:
        columns = _number_columns(summary, compact=True)
        droppable = list(_DROPPABLE)
        while droppable and width is not None:
            widths = [natural(header, cells) for header, cells in columns]
            if _table_width([_ROUTE_MIN_WIDTH, *widths]) <= width:
                break
            dropped = droppable.pop(0)
            columns = [column for column in columns if column[0] != dropped]

    table = Table(title=title, show_footer=True, header_style="bold")
    table.add_column("route", footer="total", overflow="fold", min_width=_ROUTE_MIN_WIDTH)
    if not compact:
        table.add_column("model", overflow="fold", min_width=5)
    for header, cells in columns:
        table.add_column(header, footer=cells[-1], justify="right", no_wrap=compact)
    for index, name in enumerate(names):
        model = [] if compact else [data_text(models[index])]
        table.add_row(
            data_text(name, one_line=True), *model, *(cells[index] for _, cells in columns)
        )

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
    caption = "; ".join(lines)
    if compact:
        left_out = [
            f"{count:,} {kind} call{'' if count == 1 else 's'}"
            for count, kind in (
                (summary.unpriced_calls if summary.cost is not None else 0, "unpriced"),
                (summary.unmeasured_calls, "unmeasured"),
            )
            if count
        ]
        if left_out:
            caption += f"\n* leaves out {' and '.join(left_out)}"
        listed = "; ".join(f"{name}: {model}" for name, model in zip(names, models, strict=True))
        if listed:
            caption += f"\nmodels: {listed}"
        dropped_columns = [header for header in _DROPPABLE if header not in dict(columns)]
        if dropped_columns:
            caption += f"\nleft out to fit {width} columns: {', '.join(dropped_columns)}"
    table.caption = Text(printable(caption), justify="left" if compact else "center")
    return table


def report_json(summary: LedgerSummary) -> str:
    """The summary as indented JSON (``langroute report --json``), ASCII only.

    Example:
        >>> json.loads(report_json(CostLedger().summary()))["calls"]
        0
    """
    return json.dumps(summary.model_dump(mode="json"), indent=2)


CSV_COLUMNS = [
    "row",
    "route",
    "models",
    "calls",
    "errors",
    "escalations",
    "escalation_rate",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cost",
    "unpriced_calls",
    "unmeasured_calls",
    "latency_p50_ms",
    "latency_p95_ms",
    "baseline_cost",
    "savings",
    "savings_pct",
]
"""Columns of :func:`report_csv`; ``row`` is ``route`` or ``total`` (``labelling_route``
and ``labelling_total`` for the calls of ``langroute label``, reported apart)."""


def report_csv(summary: LedgerSummary) -> str:
    r"""The summary as CSV (``langroute report --csv``): a row per route, then a total row.

    Costs are US dollars, unrounded; an unknown value is an empty cell. Baseline cost
    and savings are totals, so only the total row has them. Control characters in route
    and model names are written as escapes (``\x1b``), and a name a spreadsheet would
    run as a formula (starting with ``=``, ``+``, ``-``, ``@``) gets a leading ``'``.

    Example:
        >>> print(report_csv(CostLedger().summary()).splitlines()[-1])
        total,,,0,0,0,0.0,0,0,0,,0,0,,,,,
    """

    def number(value: float | int | None) -> str:
        return "" if value is None else str(value)

    def text(value: str) -> str:
        cell = printable(value, one_line=True)
        return f"'{cell}" if cell[:1] in ("=", "+", "-", "@") else cell

    def row(kind: str, item: Item) -> list[str]:
        route, models = ("", []) if isinstance(item, LedgerSummary) else (item.route, item.models)
        return [
            kind,
            text(route or ""),
            text(";".join(models)),
            *(
                number(value)
                for value in (
                    item.calls,
                    item.errors,
                    _escalations(item),
                    item.escalation_rate,
                    item.input_tokens,
                    item.cached_tokens,
                    item.output_tokens,
                    item.cost,
                    item.unpriced_calls,
                    item.unmeasured_calls,
                    item.latency_p50_ms,
                    item.latency_p95_ms,
                )
            ),
        ]

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    parts = [("", summary)]
    if summary.labelling is not None:
        parts.append(("labelling_", summary.labelling))
    for prefix, part in parts:
        for item in part.routes:
            writer.writerow([*row(f"{prefix}route", item), "", "", ""])
        writer.writerow(
            [
                *row(f"{prefix}total", part),
                number(part.baseline_cost),
                number(part.savings),
                number(part.savings_pct),
            ]
        )
    return buffer.getvalue()


def print_report(
    source: CostLedger | LedgerSummary | str | Path,
    *,
    console: Console | None = None,
    order: Sequence[str] | None = None,
) -> LedgerSummary:
    """Print the cost report of a ledger (the ``langroute report LEDGER`` command).

    The table fits the console: see ``width`` in :func:`render_report` (every cost
    stays visible at 80 columns).

    Args:
        source: A ledger, a summary, or the path of a JSONL / SQLite ledger file.
        console: Where to print (default: a new ``rich`` console on stdout).
        order: Route names to list first.

    A JSONL ledger's torn lines (records cut short by a killed writer) are skipped and
    noted below the table with their file and line. Labelling calls (``langroute label``)
    get a table of their own, below the serving one.

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
        ledger = (
            source
            if isinstance(source, CostLedger)
            else CostLedger.open(source, validate=False)  # the summary reads it once
        )
        summary = ledger.summary(order=order)
    if console is None:
        from rich.console import Console

        console = Console()
    if summary.calls or summary.labelling is None:
        console.print(render_report(summary, width=console.width))
    if summary.labelling is not None:
        title = "labelling spend (langroute label; not in the serving figures)"
        console.print(render_report(summary.labelling, title=title, width=console.width))
    if ledger is not None and ledger.torn_lines:
        from rich.text import Text

        console.print(Text(printable(_torn_note(ledger)), style="yellow"))
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
