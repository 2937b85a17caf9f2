"""Labelling: make scored exemplars from unlabelled queries with your own models.

``langroute label QUERIES --models models.toml -o scored.jsonl`` (or :func:`label` /
:func:`alabel`) asks every route's model each query, grades the answers and writes one
exemplar per query with a score per route, ready for ``langroute build``:

* :mod:`~langroute.labels.graders`: reference matchers, an LLM judge, validators;
* :mod:`~langroute.labels.calls`: the paid calls (cache, budget, retries, ledger);
* :mod:`~langroute.labels.runner`: the run (concurrent, resumable, with progress);
* :mod:`~langroute.files.journal`: the crash-safe files a run keeps.

Names load on first use, so ``import langroute.labels`` stays light.

Example:
    >>> from langroute.labels import label  # doctest: +SKIP
    >>> report = label("queries.jsonl", "models.toml", "scored.jsonl", budget=5.0)  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langroute.exports import lazy_exports

if TYPE_CHECKING:
    from langroute.errors import BudgetExhausted, GradingError
    from langroute.labels.calls import ModelCaller
    from langroute.labels.graders import (
        Grade,
        Grader,
        JudgeGrader,
        LabelQuery,
        ReferenceGrader,
        ValidatorGrader,
        grader_from_name,
    )
    from langroute.labels.runner import FailedQuery, LabelReport, alabel, label, load_queries

_EXPORTS = {
    "BudgetExhausted": "langroute.errors",
    "ModelCaller": "langroute.labels.calls",
    "Grade": "langroute.labels.graders",
    "Grader": "langroute.labels.graders",
    "GradingError": "langroute.errors",
    "JudgeGrader": "langroute.labels.graders",
    "LabelQuery": "langroute.labels.graders",
    "ReferenceGrader": "langroute.labels.graders",
    "ValidatorGrader": "langroute.labels.graders",
    "grader_from_name": "langroute.labels.graders",
    "FailedQuery": "langroute.labels.runner",
    "LabelReport": "langroute.labels.runner",
    "alabel": "langroute.labels.runner",
    "label": "langroute.labels.runner",
    "load_queries": "langroute.labels.runner",
}

__all__ = [
    "BudgetExhausted",
    "FailedQuery",
    "Grade",
    "Grader",
    "GradingError",
    "JudgeGrader",
    "LabelQuery",
    "LabelReport",
    "ModelCaller",
    "ReferenceGrader",
    "ValidatorGrader",
    "alabel",
    "grader_from_name",
    "label",
    "load_queries",
]


__getattr__, __dir__ = lazy_exports("langroute.labels", _EXPORTS, __all__, globals())
