"""Evaluation and calibration: measure a router, set its dial, draw the curve.

Names load on first use, so ``import langroute.evaluation`` stays light.

Example:
    >>> from langroute.evaluation import evaluate, calibrate  # doctest: +SKIP
    >>> report = evaluate(router, "heldout.jsonl")  # doctest: +SKIP
    >>> calibrate(router, "heldout.jsonl", target_strong_share=0.3)  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langroute.evaluation.harness import (
        CalibrationResult,
        EvalReport,
        TuningReport,
        assign_folds,
        calibrate,
        cross_validate,
        evaluate,
        load_eval_set,
        tune,
    )
    from langroute.evaluation.metrics import (
        CostQualityCurve,
        cost_quality_curve,
        label_metrics,
        routellm_protocol,
    )
    from langroute.evaluation.plot import plot_report

_EXPORTS = {
    "CalibrationResult": "langroute.evaluation.harness",
    "EvalReport": "langroute.evaluation.harness",
    "TuningReport": "langroute.evaluation.harness",
    "assign_folds": "langroute.evaluation.harness",
    "calibrate": "langroute.evaluation.harness",
    "cross_validate": "langroute.evaluation.harness",
    "evaluate": "langroute.evaluation.harness",
    "load_eval_set": "langroute.evaluation.harness",
    "tune": "langroute.evaluation.harness",
    "CostQualityCurve": "langroute.evaluation.metrics",
    "cost_quality_curve": "langroute.evaluation.metrics",
    "label_metrics": "langroute.evaluation.metrics",
    "routellm_protocol": "langroute.evaluation.metrics",
    "plot_report": "langroute.evaluation.plot",
}

__all__ = [
    "CalibrationResult",
    "CostQualityCurve",
    "EvalReport",
    "TuningReport",
    "assign_folds",
    "calibrate",
    "cost_quality_curve",
    "cross_validate",
    "evaluate",
    "label_metrics",
    "load_eval_set",
    "plot_report",
    "routellm_protocol",
    "tune",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'langroute.evaluation' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
