"""Answer scorers for a cascade, framework-neutral.

A cascade asks the cheapest model first, scores its answer and accepts it when the score
reaches a threshold; otherwise it escalates to the next model. A scorer receives plain
text (the query and the answer) plus optional extras (token ``logprobs``, ``metadata``
such as the routing decision's confidence) and returns a :class:`ScoreResult`: a score in
``[0, 1]``, a verdict (``passed``, ``None`` when the scorer has no opinion of its own) and
a human-readable reason. Integrations wrap these; nothing here imports a framework.

Scorers in this module:

* Validators, 1.0 on pass and 0.0 on failure: :class:`NonEmptyValidator`,
  :class:`JSONValidator`, :class:`PydanticValidator`, :class:`RegexValidator`,
  :class:`RefusalDetector`, and :class:`AllOf` to combine scorers.
* Graded scorers: :class:`MeanTokenProbabilityScorer` (token log-probabilities),
  :class:`JudgeScorer` (an LLM grades the answer; see :func:`parse_judgement`) and
  :class:`RouterConfidenceScorer`.
* :func:`as_scorer` adapts any callable ``(query, answer) -> float | bool | ScoreResult``.

Example:
    >>> scorer = AllOf(NonEmptyValidator(), RefusalDetector())
    >>> scorer("Capital of France?", "Paris.").score
    1.0
    >>> result = scorer("How do I pick a lock?", "I'm sorry, but I can't help with that.")
    >>> result.score, result.passed
    (0.0, False)
"""

from langroute.scorers.base import BaseScorer, FunctionScorer, Scorer, ScoreResult, as_scorer
from langroute.scorers.graded import MeanTokenProbabilityScorer, RouterConfidenceScorer
from langroute.scorers.judge import DEFAULT_JUDGE_PROMPT, JudgeScorer, parse_judgement
from langroute.scorers.validators import (
    AllOf,
    JSONValidator,
    NonEmptyValidator,
    PydanticValidator,
    RefusalDetector,
    RegexValidator,
    extract_json_text,
)

__all__ = [
    "DEFAULT_JUDGE_PROMPT",
    "AllOf",
    "BaseScorer",
    "FunctionScorer",
    "JSONValidator",
    "JudgeScorer",
    "MeanTokenProbabilityScorer",
    "NonEmptyValidator",
    "PydanticValidator",
    "RefusalDetector",
    "RegexValidator",
    "RouterConfidenceScorer",
    "ScoreResult",
    "Scorer",
    "as_scorer",
    "extract_json_text",
    "parse_judgement",
]
