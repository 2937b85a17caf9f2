"""Evaluation, tuning, calibration, comparison: measure a router, tune it, set its dial.

Names load on first use, so ``import langroute.evaluation`` stays light.

Example:
    >>> from langroute.evaluation import evaluate, calibrate  # doctest: +SKIP
    >>> report = evaluate(router, "heldout.jsonl")  # doctest: +SKIP
    >>> calibrate(router, "heldout.jsonl", target_strong_share=0.3)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langroute.exports import lazy_exports

if TYPE_CHECKING:
    from langroute.evaluation.calibration import CalibrationResult, calibrate
    from langroute.evaluation.comparison import Comparison, compare
    from langroute.evaluation.datasets import assign_folds, load_eval_set
    from langroute.evaluation.evaluator import cross_validate, evaluate
    from langroute.evaluation.metrics import (
        CostQualityCurve,
        cost_quality_curve,
        label_metrics,
        routellm_protocol,
    )
    from langroute.evaluation.plot import plot_report
    from langroute.evaluation.reports import EvalReport
    from langroute.evaluation.tuning import (
        TuningRecord,
        TuningReport,
        build_router,
        tune,
        tune_router,
    )

_EXPORTS = {
    "CalibrationResult": "langroute.evaluation.calibration",
    "EvalReport": "langroute.evaluation.reports",
    "TuningRecord": "langroute.evaluation.tuning",
    "TuningReport": "langroute.evaluation.tuning",
    "build_router": "langroute.evaluation.tuning",
    "tune_router": "langroute.evaluation.tuning",
    "assign_folds": "langroute.evaluation.datasets",
    "calibrate": "langroute.evaluation.calibration",
    "Comparison": "langroute.evaluation.comparison",
    "compare": "langroute.evaluation.comparison",
    "cross_validate": "langroute.evaluation.evaluator",
    "evaluate": "langroute.evaluation.evaluator",
    "load_eval_set": "langroute.evaluation.datasets",
    "tune": "langroute.evaluation.tuning",
    "CostQualityCurve": "langroute.evaluation.metrics",
    "cost_quality_curve": "langroute.evaluation.metrics",
    "label_metrics": "langroute.evaluation.metrics",
    "routellm_protocol": "langroute.evaluation.metrics",
    "plot_report": "langroute.evaluation.plot",
}

__all__ = [
    "CalibrationResult",
    "Comparison",
    "CostQualityCurve",
    "EvalReport",
    "TuningRecord",
    "TuningReport",
    "assign_folds",
    "build_router",
    "calibrate",
    "compare",
    "cost_quality_curve",
    "cross_validate",
    "evaluate",
    "label_metrics",
    "load_eval_set",
    "plot_report",
    "routellm_protocol",
    "tune",
    "tune_router",
]


__getattr__, __dir__ = lazy_exports("langroute.evaluation", _EXPORTS, __all__, globals())
