"""Prometheus metrics of ``langroute serve``, written in the text exposition format.

No client library is needed: counters and one latency histogram, kept under a lock and
rendered on ``GET /metrics``.

Example:
    >>> metrics = ServeMetrics()
    >>> metrics.request(route="small", status=200, stream=False, seconds=0.12, escalated_from=None)
    >>> 'langroute_requests_total{route="small",status="200",stream="false"} 1' in metrics.render()
    True
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

__all__ = ["LATENCY_BUCKETS", "ServeMetrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the request latency histogram."""

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Sequence[tuple[str, str]] = ()) -> str:
    pairs = [*labels, *extra]
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs) + "}"


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class ServeMetrics:
    """Counters and the latency histogram of one server process (thread-safe)."""

    def __init__(self, gauges: Callable[[], Mapping[str, tuple[str, float]]] | None = None) -> None:
        """Create empty metrics; ``gauges`` returns name -> (help, value) at each render."""
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self._buckets: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = defaultdict(float)
        self._counts: dict[Labels, int] = defaultdict(int)
        self._gauges = gauges

    _HELP: ClassVar[dict[str, str]] = {
        "langroute_requests_total": "Chat completion requests by the route that answered.",
        "langroute_escalations_total": "Requests answered by a stronger route after an error.",
        "langroute_spend_usd_total": "Spend in US dollars by route and API key (priced calls).",
        "langroute_unpriced_calls_total": "Calls whose cost is unknown (no usage or no price).",
        "langroute_budget_total": "Requests of keys past their budget, by what they got.",
        "langroute_feedback_total": "Verdicts posted to /v1/feedback.",
    }

    def _add(self, name: str, labels: Labels, amount: float = 1.0) -> None:
        with self._lock:
            self._counters[name][labels] += amount

    def request(
        self,
        *,
        route: str | None,
        status: int,
        stream: bool,
        seconds: float,
        escalated_from: str | None,
    ) -> None:
        """Count one finished request and its latency."""
        labels: Labels = (
            ("route", route or "none"),
            ("status", str(status)),
            ("stream", "true" if stream else "false"),
        )
        self._add("langroute_requests_total", labels)
        if escalated_from is not None and route is not None:
            self._add("langroute_escalations_total", (("from", escalated_from), ("to", route)))
        key: Labels = (("stream", "true" if stream else "false"),)
        with self._lock:
            buckets = self._buckets.setdefault(key, [0] * len(LATENCY_BUCKETS))
            for index, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    buckets[index] += 1
            self._sums[key] += seconds
            self._counts[key] += 1

    def spend(self, *, route: str | None, key: str | None, cost: float | None) -> None:
        """Add a call's cost (``None``: unknown, counted as unpriced).

        ``key``: the API key's name, or ``None`` to leave tenants out of the labels.
        """
        labels: Labels = (("route", route or "none"),) + ((("key", key),) if key else ())
        if cost is None:
            self._add("langroute_unpriced_calls_total", labels)
        else:
            self._add("langroute_spend_usd_total", labels, cost)

    def budget(self, *, key: str | None, action: str) -> None:
        """Count a request of a key past its budget (``degraded`` or ``rejected``).

        ``key``: the API key's name, or ``None`` to leave tenants out of the labels.
        """
        labels: Labels = ((("key", key),) if key else ()) + (("action", action),)
        self._add("langroute_budget_total", labels)

    def feedback(self, *, verdict: str) -> None:
        """Count a verdict."""
        self._add("langroute_feedback_total", (("verdict", verdict),))

    def render(self) -> str:
        """The metrics in the Prometheus text format (version 0.0.4)."""
        lines: list[str] = []
        with self._lock:
            for name, help_text in self._HELP.items():
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
                for labels, value in sorted(self._counters.get(name, {}).items()):
                    lines.append(f"{name}{_labels(labels)} {_number(value)}")
            name = "langroute_request_duration_seconds"
            lines += [
                f"# HELP {name} Time from request to the last byte of the answer.",
                f"# TYPE {name} histogram",
            ]
            for labels, buckets in sorted(self._buckets.items()):
                for bound, count in zip(LATENCY_BUCKETS, buckets, strict=True):
                    lines.append(f"{name}_bucket{_labels(labels, [('le', repr(bound))])} {count}")
                count = self._counts[labels]
                lines.append(f"{name}_bucket{_labels(labels, [('le', '+Inf')])} {count}")
                lines.append(f"{name}_sum{_labels(labels)} {self._sums[labels]!r}")
                lines.append(f"{name}_count{_labels(labels)} {count}")
        for name, (help_text, value) in (self._gauges() if self._gauges else {}).items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            lines.append(f"{name} {_number(value)}")
        return "\n".join(lines) + "\n"
