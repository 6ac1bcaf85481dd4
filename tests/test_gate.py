from __future__ import annotations

import json

from smallfirst.gate import check_gate
from smallfirst.policy import parse_policy
from smallfirst.reasons import FallbackReason
from smallfirst.tasks import LocalOutput

from conftest import MINIMAL_POLICY

POLICY = parse_policy(MINIMAL_POLICY)
CLASSIFY = POLICY.tasks["classify_issue"]
SUMMARY = POLICY.tasks["summarize_log"]
SHAPE = POLICY.tasks["shape_json"]


def out(answer: str, *, label: str | None = None, confidence: float | None = 0.9, novel: bool = False) -> LocalOutput:
    return LocalOutput(answer=answer, model="fake", label=label, confidence=confidence, confidence_raw=confidence, novel=novel)


def names(result) -> list[str]:
    return [c.name for c in result.checks]


def test_confident_known_label_passes_every_check():
    r = check_gate(CLASSIFY, out("build", label="build", confidence=0.95), "log")
    assert r.ok and r.reason is None
    assert names(r) == ["novelty", "labels", "escalate_labels", "confidence", "length"]


def test_label_outside_the_task_labels_is_schema_invalid():
    r = check_gate(CLASSIFY, out("flaky", label="flaky", confidence=0.99), "log")
    assert not r.ok and r.reason is FallbackReason.SCHEMA_INVALID
    assert r.checks[-1].name == "labels"


def test_escalate_label_escalates_even_when_certain():
    r = check_gate(CLASSIFY, out("security", label="security", confidence=1.0), "log")
    assert r.reason is FallbackReason.LABEL_ESCALATES


def test_confidence_below_threshold_escalates():
    r = check_gate(CLASSIFY, out("build", label="build", confidence=0.71), "log")
    assert r.reason is FallbackReason.CONFIDENCE_LOW
    assert "0.710 < min_confidence 0.72" in r.checks[-1].detail


def test_missing_confidence_is_never_trusted():
    r = check_gate(CLASSIFY, out("build", label="build", confidence=None), "log")
    assert r.reason is FallbackReason.CONFIDENCE_LOW


def test_novel_input_is_a_hard_stop_before_any_other_check():
    r = check_gate(CLASSIFY, out("build", label="build", confidence=0.99, novel=True), "log")
    assert r.reason is FallbackReason.HARD_STOP_NOVEL and names(r) == ["novelty"]


def test_json_answer_must_match_the_schema():
    good = check_gate(SHAPE, out(json.dumps({"file": "a.py"})), "a.py broke")
    bad = check_gate(SHAPE, out(json.dumps({"path": "a.py"})), "a.py broke")
    broken = check_gate(SHAPE, out("{not json"), "a.py broke")
    assert good.ok
    assert bad.reason is FallbackReason.SCHEMA_INVALID and "'file' is a required property" in bad.checks[-1].detail
    assert broken.reason is FallbackReason.SCHEMA_INVALID and "not JSON" in broken.checks[-1].detail


def test_caller_schema_overrides_the_policy_schema():
    r = check_gate(SHAPE, out(json.dumps({"file": 3})), "x", schema={"type": "object", "required": ["file"]})
    assert r.ok


def test_refusal_marker_in_a_summary_escalates():
    r = check_gate(SUMMARY, out("I'm sorry, I cannot determine the failure."), "BUILD FAILED")
    assert r.reason is FallbackReason.CONFIDENCE_LOW and r.checks[-1].name == "refusal"


def test_policy_refusal_markers_are_added():
    r = check_gate(SUMMARY, out("Outside my remit."), "log", refusal_markers=["outside my remit"])
    assert r.checks[-1].name == "refusal"


def test_overlong_answer_is_schema_invalid():
    r = check_gate(SUMMARY, out("x " * 5000), "log")
    assert r.reason is FallbackReason.SCHEMA_INVALID and r.checks[-1].name == "length"


def test_summary_citing_a_file_not_in_the_input_is_ungrounded():
    log = "[ERROR] /app/src/main/java/Foo.java:[12,8] cannot find symbol\n[ERROR] BUILD FAILURE"
    grounded = check_gate(SUMMARY, out("Compilation failed in Foo.java: cannot find symbol."), log)
    invented = check_gate(SUMMARY, out("Compilation failed in Bar.java with error E0425."), log)
    assert grounded.ok, grounded.checks
    assert invented.reason is FallbackReason.CONFIDENCE_LOW
    assert invented.checks[-1].name == "grounding" and "Bar.java" in invented.checks[-1].detail


def test_normalised_error_codes_count_as_grounded():
    log = "npm ERR! 403 Forbidden - GET https://<registry-host>/pkg\nProcess exited with 1"
    r = check_gate(SUMMARY, out("The install got HTTP 403 from the registry."), log)
    assert r.ok, r.checks
