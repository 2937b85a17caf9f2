from __future__ import annotations

import pytest

from langroute.dispatch.cascade import CascadeResult, error_text, failed_attempt, judge_attempt
from langroute.scorers import ScoreResult


@pytest.mark.parametrize(
    ("score", "passed", "last", "accepted", "reason_start"),
    [
        (0.9, None, False, True, "accepted: score 0.9 >= 0.5"),
        (0.5, None, False, True, "accepted"),  # the threshold itself is enough
        (0.49, None, False, False, "rejected: score 0.49 < 0.5"),
        (0.9, False, False, False, "rejected"),  # a failed validator vetoes a high score
        (0.1, None, True, True, "last tier: returned although score 0.1 < 0.5"),
    ],
)
def test_acceptance_rule(score, passed, last, accepted, reason_start):
    result = ScoreResult(score=score, passed=passed, reason="why")
    attempt = judge_attempt(1, "medium", "m", result, threshold=0.5, last=last)
    assert attempt.accepted is accepted
    assert attempt.reason.startswith(reason_start) and attempt.reason.endswith("(why)")
    assert (attempt.score, attempt.passed) == (score, passed)


def test_unscored_last_tier_and_errors():
    attempt = judge_attempt(2, "large", "big", None, threshold=0.5, last=True)
    assert attempt.accepted and attempt.score is None
    failed = failed_attempt(0, "small", "tiny", TimeoutError("took too long"))
    assert not failed.accepted
    assert failed.error == "TimeoutError: took too long"
    assert failed.reason == "error: TimeoutError: took too long"
    assert error_text(RuntimeError()) == "RuntimeError"


def test_result_reports_escalation_and_rejections():
    rejected = failed_attempt(0, "small", "tiny", RuntimeError("boom"))
    answered = judge_attempt(1, "large", "big", None, threshold=0.5, last=True)
    result = CascadeResult(
        tier=1,
        tier_name="large",
        model="big",
        reason=answered.reason,
        attempts=[rejected, answered],
    )
    assert result.escalated and result.rejected == [rejected]
    alone = CascadeResult(tier=0, tier_name="small", model="tiny", reason="ok", attempts=[answered])
    assert not alone.escalated
