"""Model rotation: a candidate in shadow, compare, promote past the release gate, rollback."""

from __future__ import annotations

import json
import sqlite3

import pytest

from smallfirst.audit import AuditLog, read_recent
from smallfirst.cli import main
from smallfirst.evals import EvalCase
from smallfirst.policy import load_policy, parse_policy
from smallfirst.rotation import RotationError, compare_audit, promote, rollback
from smallfirst.router import Router
from smallfirst.tasks import Task

from conftest import MINIMAL_POLICY
from test_router import ROUTINE, StubLocal

ROTATION_POLICY = MINIMAL_POLICY.replace(
    "  local_default: {provider: llamacpp}\n",
    "  local_default: {provider: llamacpp}\n  classifier_v2: {provider: embedding, name: classifier-v2}\n",
).replace(
    "    model: local_classifier\n",
    "    model: local_classifier   # the model in production\n    candidate: classifier_v2\n",
)


def stub(name: str, sha: str, label: str, confidence: float = 0.95) -> StubLocal:
    s = StubLocal(label=label, confidence=confidence)
    s.name, s.sha256 = name, sha
    return s


def shadow_router(audit: AuditLog, candidate_label: str = "build") -> Router:
    policy = parse_policy(ROTATION_POLICY.replace("rollout: {mode: live", "rollout: {mode: shadow"))
    return Router(policy, audit=audit, backends={
        "local_classifier": stub("classifier-v1", "1" * 64, "build"),
        "classifier_v2": stub("classifier-v2", "2" * 64, candidate_label),
    })


def test_shadow_runs_the_candidate_and_audits_both_models_with_their_hashes(tmp_path):
    audit = AuditLog.sqlite(tmp_path / "a.db")
    router = shadow_router(audit, candidate_label="test")
    r = router.route(Task(ROUTINE, "classify_issue"))
    router.close()
    audit.close()
    assert r.label == "build" and r.model != "classifier-v2"  # the candidate never answers
    row = read_recent(tmp_path / "a.db")[0]
    assert (row["local_model"], row["local_model_sha256"]) == ("classifier-v1", "1" * 64)
    assert (row["candidate_model"], row["candidate_model_sha256"]) == ("classifier-v2", "2" * 64)
    assert (row["candidate_label"], row["candidate_route"]) == ("test", "local")
    assert row["candidate_latency_ms"] is not None


def test_live_mode_does_not_run_the_candidate(tmp_path):
    policy = parse_policy(ROTATION_POLICY)
    candidate = stub("classifier-v2", "2" * 64, "build")
    router = Router(policy, backends={"local_classifier": stub("classifier-v1", "1" * 64, "build"), "classifier_v2": candidate})
    router.route(Task(ROUTINE, "classify_issue"))
    router.close()
    assert candidate.calls == 0


def test_compare_reports_agreement_and_accuracy_on_reviewed_decisions(tmp_path):
    db = tmp_path / "a.db"
    audit = AuditLog.sqlite(db)
    router = shadow_router(audit, candidate_label="build")
    ids = [router.route(Task(ROUTINE, "classify_issue")).decision_id for _ in range(3)]
    router.close()
    router = shadow_router(audit, candidate_label="test")
    ids.append(router.route(Task(ROUTINE, "classify_issue")).decision_id)
    router.close()
    audit.close()
    with sqlite3.connect(db) as conn:
        conn.executemany("UPDATE decisions SET review_label = 'accept' WHERE decision_id = ?", [(i,) for i in ids])
    report = compare_audit(db, "classify_issue", usd_per_hour=0.05)
    assert report["n"] == 4
    assert report["route_agreement"] == 1.0 and report["label_agreement"] == 0.75
    assert report["reviewed_accuracy"] == {"primary": 1.0, "candidate": 0.75}
    assert (report["primary_model"], report["candidate_model"]) == ("classifier-v1", "classifier-v2")


def cases(n: int = 6) -> list[EvalCase]:
    return [EvalCase(f"c{i}", ROUTINE, "build") for i in range(n)]


def test_promote_switches_a_candidate_that_passes_the_gate_and_keeps_comments(write_policy):
    path = write_policy(ROTATION_POLICY)
    good = {"local_classifier": stub("classifier-v1", "1" * 64, "test"), "classifier_v2": stub("classifier-v2", "2" * 64, "build")}
    promoted, report = promote(path, "classify_issue", cases(), backends=good)
    assert promoted and report["gate"]["passed"]
    spec = load_policy(path).tasks["classify_issue"]
    assert (spec.model, spec.previous_model, spec.candidate) == ("classifier_v2", "local_classifier", None)
    assert "# the model in production" in path.read_text()
    assert path.with_name(path.name + ".bak").read_text() == ROTATION_POLICY


def test_promote_refuses_a_candidate_that_fails_the_gate_and_changes_nothing(write_policy):
    path = write_policy(ROTATION_POLICY)
    wrong = {"local_classifier": stub("classifier-v1", "1" * 64, "build"), "classifier_v2": stub("classifier-v2", "2" * 64, "test")}
    promoted, report = promote(path, "classify_issue", cases(), backends=wrong)
    assert not promoted and not report["gate"]["passed"]
    assert path.read_text() == ROTATION_POLICY


def test_rollback_restores_the_previous_model_and_keeps_the_other_as_candidate(write_policy, tmp_path):
    path = write_policy(ROTATION_POLICY)
    good = {"classifier_v2": stub("classifier-v2", "2" * 64, "build")}
    assert promote(path, "classify_issue", cases(), backends=good)[0]
    assert main(["rollback", "--task", "classify_issue", "--policy", str(path), "--audit", str(tmp_path / "a.db")]) == 0
    spec = load_policy(path).tasks["classify_issue"]
    assert (spec.model, spec.candidate, spec.previous_model) == ("local_classifier", "classifier_v2", None)
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert conn.execute("SELECT action FROM admin_events").fetchall() == [("rollback",)]
    with pytest.raises(RotationError, match="nothing to roll back"):
        rollback(path, "classify_issue")


def test_rotation_refuses_to_edit_the_bundled_policy():
    from smallfirst.policy import DEFAULT_POLICY_PATH

    with pytest.raises(RotationError, match="bundled"):
        rollback(DEFAULT_POLICY_PATH, "classify_issue")


def test_candidate_must_name_a_model_with_file_and_line(write_policy):
    from smallfirst.policy import PolicyError

    path = write_policy(ROTATION_POLICY.replace("candidate: classifier_v2", "candidate: no_such_model"))
    with pytest.raises(PolicyError, match=r"policy.yaml:\d+: tasks.classify_issue.candidate: 'no_such_model'"):
        load_policy(path)


@pytest.mark.slow
def test_compare_on_labelled_data_runs_both_real_models_through_the_gate(tmp_path, capsys):
    # The bundled trained head against a zero-shot candidate on the same embedding model,
    # on the 21 demo logs the head never saw.
    from smallfirst.cli import DEMO_LOGS, main
    from smallfirst.policy import DEFAULT_POLICY_PATH

    head = DEFAULT_POLICY_PATH.parent / "heads" / "classify_issue.json"
    text = DEFAULT_POLICY_PATH.read_text().replace("head: heads/classify_issue.json", f"head: '{head}'\n    candidate: local_zero_shot")
    text = text.replace("  local_classifier: {provider: embedding, timeout_s: 10}    # bundled all-MiniLM-L6-v2",
                        "  local_classifier: {provider: embedding, timeout_s: 10}\n  local_zero_shot: {provider: embedding, timeout_s: 10}")
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    label_map = DEFAULT_POLICY_PATH.parent / "label_maps" / "bump.json"
    rc = main(["compare", "--task", "classify_issue", "--policy", str(policy), "--audit", str(tmp_path / "a.db"),
               "--data", str(DEMO_LOGS), "--label-map", str(label_map), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)["labelled"]
    assert out["primary"]["model"] == "local_classifier" and out["candidate"]["model"] == "local_zero_shot"
    assert out["primary"]["n"] == out["candidate"]["n"] == 21
    assert out["primary"]["label_accuracy"] > out["candidate"]["label_accuracy"]
    assert out["primary"]["gate_passed"]
