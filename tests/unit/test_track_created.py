"""handlers/track.created: a job whose Job exists reports Created=True, also when the status this pass holds still
says Created=False (Forbidden) from before the creation handler's retry made the Job (the real plane's
denied-then-granted test ended Succeeded with Created=False when the pass wrote that older list back)."""

from __future__ import annotations

from align_operator.handlers.track import created
from align_operator.status.conditions import get_condition, set_condition

NOW = "2026-12-08T01:00:00Z"


def _forbidden() -> dict:
    conds = set_condition([], "Created", "False", "Forbidden", "RBAC denies create jobs", 1, NOW)
    conds = set_condition(conds, "Running", "True", "TrainingStarted", "training", 1, NOW)
    return {"phase": "Running", "conditions": conds,
            "lastError": {"reason": "Forbidden", "message": "RBAC denies create jobs", "time": NOW}}


def test_a_stale_forbidden_created_becomes_true_and_its_error_goes() -> None:
    before = _forbidden()
    after = created(before, "denied-trainer", 1, NOW)
    cond = get_condition(after["conditions"], "Created")
    assert (cond["status"], cond["reason"], cond["message"]) == ("True", "JobCreated", "Job denied-trainer created")
    assert "lastError" not in after
    assert get_condition(after["conditions"], "Running")["status"] == "True"  # the other conditions kept
    assert get_condition(before["conditions"], "Created")["status"] == "False"  # the input is not changed


def test_another_error_stays_and_a_true_created_is_left_alone() -> None:
    other = {**_forbidden(), "lastError": {"reason": "ImagePullBackOff", "message": "no image", "time": NOW}}
    assert created(other, "j-trainer", 1, NOW)["lastError"]["reason"] == "ImagePullBackOff"
    done = created({"phase": "Pending"}, "j-trainer", 2, NOW)
    assert get_condition(done["conditions"], "Created")["status"] == "True"
    assert created(done, "other-name", 3, "later") is done
