"""Threshold choice with a false-accept bound, and a policy's `calibration:` applied by the router."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smallfirst.calibration import CALIBRATION_FORMAT, choose_threshold, clopper_pearson_upper
from smallfirst.policy import PolicyError, load_policy
from smallfirst.reasons import FallbackReason
from smallfirst.router import Router
from smallfirst.tasks import Task

from conftest import MINIMAL_POLICY
from test_router import ROUTINE, StubLocal


def test_zero_errors_in_299_cases_bounds_the_rate_under_one_percent():
    assert clopper_pearson_upper(0, 299) < 0.01 < clopper_pearson_upper(0, 298)


def test_threshold_stops_where_the_bound_breaks_and_keeps_the_most_traffic_below_it():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 4000)
    wrong = rng.uniform(0, 1, 4000) < 0.3 * (1 - conf) ** 2  # error rate falls as confidence rises
    choice = choose_threshold(conf, wrong, np.ones(4000, bool), max_false_accept=0.05)
    assert choice.threshold is not None and choice.upper_bound <= 0.05
    accepted = conf >= choice.threshold
    assert wrong[accepted].mean() <= 0.05 and accepted.sum() == choice.accepted
    # The next candidate below (the one that failed) broke the bound.
    assert choice.steps[-1].upper_bound > 0.05


def test_no_threshold_when_too_few_cases_could_ever_meet_the_bound():
    choice = choose_threshold(np.linspace(0.9, 1, 50), np.zeros(50, bool), np.ones(50, bool), max_false_accept=0.01)
    assert choice.threshold is None


def _policy_with_calibration(write_policy, tmp_path, threshold: float, local: bool = True):
    cal = {"format": CALIBRATION_FORMAT, "task": "classify_issue", "local": local, "threshold": threshold,
           "calibrator": {"kind": "temperature", "t": 2.0}}
    (tmp_path / "cal.json").write_text(json.dumps(cal))
    text = MINIMAL_POLICY.replace("    min_confidence: 0.72\n", "    min_confidence: 0.72\n    calibration: cal.json\n", 1)
    return load_policy(write_policy(text))


def test_policy_calibration_replaces_min_confidence_and_calibrates_the_raw_score(write_policy, tmp_path):
    policy = _policy_with_calibration(write_policy, tmp_path, threshold=0.8)
    # raw 0.9 -> temperature 2 -> ~0.75: under the file's 0.8 though above the policy's 0.72.
    router = Router(policy, backends={"local_classifier": StubLocal(label="build", confidence=0.9)})
    r = router.route(Task(ROUTINE, "classify_issue"))
    assert r.reason is FallbackReason.CONFIDENCE_LOW and r.confidence == pytest.approx(0.75, abs=0.01)
    router = Router(policy, backends={"local_classifier": StubLocal(label="build", confidence=0.99)})
    assert router.route(Task(ROUTINE, "classify_issue")).route == "local"


def test_policy_rejects_a_calibration_that_advises_the_frontier(write_policy, tmp_path):
    with pytest.raises(PolicyError, match="calibration"):
        _policy_with_calibration(write_policy, tmp_path, threshold=0.9, local=False)


def test_calibrate_on_held_out_data_writes_threshold_and_provenance(tmp_path):
    from smallfirst.evals import calibrate_task, raw_scores, read_cases
    from smallfirst.policy import parse_policy

    policy = parse_policy(MINIMAL_POLICY)
    rows = [{"id": str(i), "text": f"{ROUTINE} case {i}", "label": "build"} for i in range(400)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cases = read_cases(data, policy.tasks["classify_issue"].labels)
    scores = raw_scores(policy, policy.tasks["classify_issue"], cases, "0" * 64, backend=StubLocal(label="build", confidence=0.9))
    cal, choice, kind = calibrate_task(scores, max_false_accept=0.01, confidence_level=0.95)
    assert kind == "identity" and choice.threshold == pytest.approx(0.9) and choice.accepted == 400
    assert choice.upper_bound < 0.01
