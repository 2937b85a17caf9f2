"""Recipe 8: evaluate on your own graded data, draw the cost-quality curve, calibrate the dial.

What it shows:
    * Your evaluation data: held-out requests with the quality each model achieved
      (``{"text": ..., "scores": {"small": 0..1, "large": 0..1}}`` per line; e.g. you
      ran both models on last month's requests and graded the answers).
    * ``evaluate``: the cost-quality curve as the dial moves (APGR, CPT(50%), CPT(80%):
      the share of strong calls needed for 50% / 80% of the quality gap) and the
      router's own point; ``plot_report`` draws it next to random routing and the oracle.
    * ``calibrate(router, data, target_strong_share=0.5)``: the dial that sends about
      half of the requests to the strong model; ``router.save`` keeps it.

Run it:
    python cookbook/08_evaluate_and_calibrate.py
    python cookbook/08_evaluate_and_calibrate.py --target 0.5 --data my_graded.jsonl

Real providers:
    No LLM is called: grade your models' answers once (by hand, tests or an LLM judge),
    store the grades as "scores", and evaluate any router against them offline.
    Calibrate on one split and report on another when you have enough rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from langroute import ExemplarRouter
from langroute.evaluation import calibrate, evaluate, plot_report

DATA = Path(__file__).parent / "data"
OUTPUT = Path(__file__).parent / "output"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exemplars", type=Path, default=DATA / "helpdesk_exemplars.jsonl")
    parser.add_argument("--data", type=Path, default=DATA / "helpdesk_scored.jsonl")
    parser.add_argument("--target", type=float, default=0.5, help="target strong-call share")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    # A small exemplar set covers less ground: lower the out-of-distribution floor a little
    # (queries below it always go to the strong route, whatever the dial).
    router = ExemplarRouter.from_file(args.exemplars, routes=["small", "large"], min_similarity=0.2)

    # 1. Evaluate: the whole curve, and where the current dial sits on it.
    report = evaluate(router, args.data)
    scores = report.scores
    assert scores is not None  # graded ("scores") data
    print(
        f"rows: {report.n}; APGR {report.apgr:.3f}; CPT(50%) {report.cpt50:.3f}; "
        f"CPT(80%) {report.cpt80:.3f}"
    )
    print(
        f"dial {report.threshold:.2f}: {scores.strong_share:.0%} strong calls, "
        f"quality {scores.quality:.3f}"
    )
    for baseline in report.baselines:
        figures = baseline.model_dump(exclude_none=True)
        shown = ", ".join(
            f"{key} {value:.3f}"
            for key, value in figures.items()
            if key in ("apgr", "cpt50", "strong_share", "quality")
        )
        print(f"  baseline {figures['name']}: {shown}")
    before_png = plot_report(report, args.output / "curve_before.png", title="before calibration")

    # 2. Calibrate: pick the dial for the target share of strong calls.
    result = calibrate(router, args.data, target_strong_share=args.target)
    print(
        f"CALIBRATED dial {result.previous_threshold:.3f} -> {result.threshold:.3f}: "
        f"{result.strong_share:.0%} strong calls (target {args.target:.0%}), "
        f"quality {result.quality:.3f} ({result.quality_fraction_of_strong or 0:.0%} of "
        f"always-strong), reached: {result.reached}"
    )

    # 3. Re-evaluate at the new dial and keep it: the calibration is saved with the router.
    after = evaluate(router, args.data)
    assert after.scores is not None
    print(
        f"after: {after.scores.strong_share:.0%} strong calls, quality {after.scores.quality:.3f}"
    )
    after_png = plot_report(after, args.output / "curve_calibrated.png", title="calibrated")
    saved = router.save(args.output / "helpdesk-router-calibrated")
    reloaded = ExemplarRouter.load(saved)
    print(f"saved to {saved}; reloaded dial {reloaded.threshold:.3f}")
    print(f"wrote {before_png} and {after_png}")


if __name__ == "__main__":
    main()
