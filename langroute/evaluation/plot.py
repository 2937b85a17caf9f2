"""Plot a router's cost-quality curve beside random and oracle routing (PNG, matplotlib Agg).

Example:
    >>> from langroute.evaluation.plot import plot_report
    >>> plot_report(report, "curve.png")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from langroute.evaluation.reports import EvalReport

__all__ = ["plot_curves", "plot_report"]


def plot_curves(
    path: str | Path,
    share: np.ndarray,
    quality: np.ndarray,
    *,
    weak_quality: float,
    strong_quality: float,
    oracle: tuple[np.ndarray, np.ndarray] | None = None,
    marker: tuple[float, float] | None = None,
    marker_label: str = "calibrated",
    title: str = "Cost-quality curve",
    y: Literal["quality", "pgr"] = "quality",
    label: str = "router",
) -> Path:
    """Draw quality (or PGR) against strong-call share and write a PNG.

    Args:
        path: where the PNG goes (parent folders are created).
        share: the router's strong-call shares, increasing.
        quality: routed quality at each share.
        weak_quality: all-weak quality (random routing starts here).
        strong_quality: all-strong quality (random routing ends here).
        oracle: the oracle's (share, quality), if known.
        marker: a point to mark, (share, quality), e.g. the calibrated dial.
        marker_label: legend text of the marker.
        title: plot title.
        y: ``quality`` or ``pgr`` on the vertical axis.
        label: legend text of the router's curve.

    Returns:
        The written path.

    Example:
        >>> plot_curves("c.png", np.array([0, 1]), np.array([0.6, 0.8]),
        ...             weak_quality=0.6, strong_quality=0.8)  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    gap = strong_quality - weak_quality

    def ys(values: np.ndarray) -> np.ndarray:
        if y == "pgr":
            return (values - weak_quality) / gap if gap else np.full_like(values, np.nan)
        return values

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(share * 100, ys(quality), label=label, color="tab:blue", linewidth=2)
    ax.plot(
        [0, 100],
        ys(np.array([weak_quality, strong_quality])),
        label="random",
        color="grey",
        linestyle="--",
    )
    if oracle is not None:
        ax.plot(oracle[0] * 100, ys(oracle[1]), label="oracle", color="tab:green", linewidth=1)
    ax.axhline(
        ys(np.array([weak_quality]))[0],
        color="tab:orange",
        linestyle=":",
        linewidth=1,
        label="weak model only",
    )
    ax.axhline(
        ys(np.array([strong_quality]))[0],
        color="tab:red",
        linestyle=":",
        linewidth=1,
        label="strong model only",
    )
    if marker is not None:
        ax.plot(
            [marker[0] * 100],
            ys(np.array([marker[1]])),
            marker="o",
            markersize=9,
            color="black",
            linestyle="none",
            label=marker_label,
        )
    ax.set_xlabel("strong-model calls (%)")
    ax.set_ylabel("PGR" if y == "pgr" else "quality")
    ax.set_xlim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


def plot_report(
    report: EvalReport,
    path: str | Path,
    *,
    y: Literal["quality", "pgr"] = "quality",
    title: str | None = None,
) -> Path:
    """Plot an evaluation report's curve (scored data) with random, oracle and the dial.

    The marked point is the router's own threshold: the calibrated point when the
    router was calibrated. Labelled reports get a bar chart of per-route recall.

    Example:
        >>> plot_report(evaluate(router, "heldout.jsonl"), "curve.png")  # doctest: +SKIP
    """
    if report.scores is None:
        return _plot_labels(report, path, title)
    scores = report.scores
    share = np.asarray(scores.curve.share)
    quality = np.asarray(scores.curve.quality)
    oracle = None
    if scores.oracle_curve is not None:
        oracle = (np.asarray(scores.oracle_curve.share), np.asarray(scores.oracle_curve.quality))
    label = "calibrated" if report.calibration else f"threshold {report.threshold:.3g}"
    return plot_curves(
        path,
        share,
        quality,
        weak_quality=scores.weak_quality,
        strong_quality=scores.strong_quality,
        oracle=oracle,
        marker=(scores.strong_share, scores.quality),
        marker_label=label,
        title=title or f"{scores.weak} vs {scores.strong}: APGR {scores.apgr:.3f}",
        y=y,
    )


def _plot_labels(report: EvalReport, path: str | Path, title: str | None) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels = report.labels
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    if labels is not None:
        routes = labels.routes[:40]
        recall = [labels.recall.get(r) or 0.0 for r in routes]
        ax.bar(range(len(routes)), recall, color="tab:blue")
        ax.set_xticks(range(len(routes)))
        ax.set_xticklabels(routes, rotation=90, fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_ylabel("recall")
        ax.set_title(title or f"accuracy {labels.accuracy:.3f}")
    fig.tight_layout()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out
