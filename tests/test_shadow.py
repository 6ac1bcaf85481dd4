"""Shadow mode: agreement between the local and frontier answers, recorded by a real Router
against the wire-faked frontier, and read back by `smallfirst shadow-report`."""

from __future__ import annotations

import json
import sqlite3

import pytest

from fakes import FakeAnthropic, Reply
from smallfirst.audit import AuditLog, read_recent
from smallfirst.cli import main
from smallfirst.policy import parse_policy
from smallfirst.router import Router
from smallfirst.shadow import agreement, parse_since, shadow_report
from smallfirst.tasks import Task

from conftest import MINIMAL_POLICY
from test_router import REGISTRY_403, ROUTINE, StubLocal

KEY_ENV = "SMALLFIRST_TEST_FRONTIER_KEY"
LABELS = ["build", "test", "dependency", "security", "access", "unknown"]


@pytest.fixture
def frontier(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-ant-test-key-0123456789")
    with FakeAnthropic.start_in_thread(api_key="sk-ant-test-key-0123456789") as srv:
        yield srv


def policy_text(srv, mode="shadow"):
    return MINIMAL_POLICY.replace(
        "frontier_default: {provider: anthropic, name: claude-sonnet-4-6, api_key_env: SMALLFIRST_TEST_NO_SUCH_KEY}",
        f"frontier_default: {{provider: anthropic, name: claude-sonnet-4-6, api_key_env: {KEY_ENV}, "
        f"base_url: '{srv.base_url}', retries: 0, timeout_s: 2}}",
    ).replace("mode: live", f"mode: {mode}")


def shadow_router(srv, audit, mode="shadow", **stub):
    local = StubLocal(**stub)
    return Router(parse_policy(policy_text(srv, mode)), audit=audit,
                  backends={"local_classifier": local, "local_default": local})


# ---------------------------------------------------------------------- agreement rules


def test_frontier_answer_leading_with_the_local_label_agrees():
    assert agreement("classify", LABELS, "build", "build", "Build: the compiler cannot find symbol App")
    assert agreement("classify", LABELS, "build", "build", "**build**")


def test_frontier_naming_only_the_local_label_agrees_and_naming_another_disagrees():
    assert agreement("classify", LABELS, "build", "build", "This is a build failure in javac.")
    assert not agreement("classify", LABELS, "build", "build", "test: a unit test failed")
    assert not agreement("classify", LABELS, "build", "build", "Either build or dependency, hard to say")
    assert not agreement("classify", LABELS, "build", "build", "rebuilding would not help")  # whole words only


def test_json_answers_agree_on_equal_shared_keys_even_when_fenced():
    assert agreement("json", [], '{"file": "App.java", "line": 10}', None, '```json\n{"file": "App.java"}\n```')
    assert not agreement("json", [], '{"file": "App.java"}', None, '{"file": "Main.java"}')
    assert not agreement("json", [], '{"file": "App.java"}', None, "not json at all")


def test_text_answers_agree_at_half_word_overlap():
    assert agreement("text", [], "javac cannot find symbol App", None, "javac: cannot find symbol App in module")
    assert not agreement("text", [], "javac cannot find symbol", None, "the npm registry refused the token")


def test_since_accepts_days_hours_and_weeks_and_rejects_nonsense():
    assert parse_since("7d") == 7 * 86400 and parse_since("24h") == 86400 and parse_since("2w") == 14 * 86400
    with pytest.raises(ValueError, match="7d"):
        parse_since("lately")


# ---------------------------------------------------------------------- the router records it


def test_shadow_decision_records_agreement_while_the_caller_gets_the_frontier_answer(frontier, tmp_path):
    frontier.enqueue(Reply("build: cannot find symbol"), Reply("test: a test failed"))
    audit = AuditLog.sqlite(tmp_path / "a.db")
    router = shadow_router(frontier, audit, label="build", confidence=0.95)
    agree = router.route(Task(ROUTINE, "classify_issue", task_id="step-1"))
    disagree = router.route(Task(ROUTINE, "classify_issue", task_id="step-2"))
    router.close(); audit.close()
    assert agree.answer == "build: cannot find symbol" and agree.route_candidate == "local" and agree.shadow_agree is True
    assert disagree.shadow_agree is False
    rows = {r["task_id"]: r for r in read_recent(tmp_path / "a.db")}
    assert rows["step-1"]["shadow_agree"] == 1 and rows["step-2"]["shadow_agree"] == 0
    assert rows["step-1"]["label"] == "build" and rows["step-1"]["local_model"] == "stub-model"
    assert rows["step-1"]["frontier_answer_sha256"] and rows["step-1"]["mode"] == "shadow"


def test_live_decisions_and_hard_stops_leave_shadow_agree_empty(frontier, tmp_path):
    frontier.enqueue(Reply("build"), Reply("access"))
    audit = AuditLog.sqlite(tmp_path / "a.db")
    live = shadow_router(frontier, audit, mode="live", label="test", confidence=0.3)
    live_r = live.route(Task(ROUTINE, "classify_issue"))
    shadow = shadow_router(frontier, audit, label="dependency", confidence=0.99)
    stop_r = shadow.route(Task(REGISTRY_403, "classify_issue"))  # decided before any local answer
    live.close(); shadow.close(); audit.close()
    assert live_r.outcome == "answered_frontier" and live_r.shadow_agree is None
    assert stop_r.route_candidate == "frontier" and stop_r.shadow_agree is None
    assert [r["shadow_agree"] for r in read_recent(tmp_path / "a.db")] == [None, None]


def test_an_audit_file_from_before_shadow_agree_gains_the_column_and_keeps_its_rows(tmp_path):
    from smallfirst.audit import AuditRecord
    from smallfirst.schema import COLUMNS

    db = tmp_path / "old.db"
    old_cols = [(n, t) for n, t in COLUMNS if n != "shadow_agree"]
    conn = sqlite3.connect(db)
    conn.execute(f"CREATE TABLE decisions ({', '.join(f'{n} {t}' for n, t in old_cols)})")
    conn.execute("INSERT INTO decisions (decision_id, ts, mode, route) VALUES ('old-1', 1.0, 'live', 'local')")
    conn.commit(); conn.close()
    audit = AuditLog.sqlite(db)
    audit.submit(AuditRecord(decision_id="new-1", ts=2.0, task_type="classify_issue", mode="shadow", route="frontier",
                             route_candidate="local", reason=None, shadow_agree=True))
    audit.close()
    rows = {r["decision_id"]: r for r in read_recent(db)}
    assert rows["old-1"]["shadow_agree"] is None and rows["new-1"]["shadow_agree"] == 1


# ---------------------------------------------------------------------- shadow-report


def _record_shadow_traffic(frontier, db):
    """Three would-be-local answers (one the frontier contradicts), one low-confidence escalation
    and one hard stop, all in shadow mode through the real router."""
    frontier.enqueue(*(Reply(t, prompt_tokens=400) for t in
                       ("build", "build failure", "test: unit test failed", "build", "access")))
    audit = AuditLog.sqlite(db)
    confident = shadow_router(frontier, audit, label="build", confidence=0.95)
    ids = [confident.route(Task(ROUTINE, "classify_issue")).decision_id for _ in range(3)]
    unsure = shadow_router(frontier, audit, label="build", confidence=0.3)
    unsure.route(Task(ROUTINE, "classify_issue"))
    confident.route(Task(REGISTRY_403, "classify_issue"))
    confident.close(); unsure.close(); audit.close()
    return ids


def test_shadow_report_lists_the_would_be_false_accept_and_counts_what_live_would_have_done(frontier, tmp_path):
    db = tmp_path / "a.db"
    ids = _record_shadow_traffic(frontier, db)
    report = shadow_report(db, since_s=7 * 86400, usd_per_hour=0.05)
    assert [f["decision_id"] for f in report["would_be_false_accepts"]] == [ids[2]]
    (t,) = report["tasks"]
    assert (t["task_type"], t["n"], t["would_be_local"], t["compared"]) == ("classify_issue", 5, 3, 4)
    assert t["would_be_local_rate"] == pytest.approx(0.6)
    assert t["agreement_rate"] == pytest.approx(3 / 4)  # the unsure one agreed too; the hard stop was never compared
    assert t["reasons"] == {"confidence_low": 1, "hard_stop_access": 1}
    # Saved: per would-be-local decision, the frontier's bill (cost_usd less local machine time) less
    # that machine time; 400 input tokens at $3/M dominate.
    rows = [r for r in read_recent(db) if r["route_candidate"] == "local"]
    local_cost = [r["latency_ms"]["local"] / 3_600_000 * 0.05 for r in rows]
    expected = sum(r["cost_usd"] - 2 * c for r, c in zip(rows, local_cost))
    assert t["cost_saved_usd"] == pytest.approx(expected) and t["cost_saved_usd"] > 3 * 400 * 3.00 / 1e6


def test_a_reviewer_escalation_makes_a_would_be_local_decision_a_false_accept(frontier, tmp_path):
    from smallfirst.review import set_review_label

    db = tmp_path / "a.db"
    ids = _record_shadow_traffic(frontier, db)
    assert set_review_label(db, ids[0], "escalate", reviewer="ops")
    fa = shadow_report(db, since_s=86400, usd_per_hour=0.05)["would_be_false_accepts"]
    assert sorted(f["decision_id"] for f in fa) == sorted([ids[0], ids[2]])


def test_shadow_report_command_prints_false_accepts_first_and_json_on_request(frontier, tmp_path, capsys):
    db = tmp_path / "a.db"
    ids = _record_shadow_traffic(frontier, db)
    assert main(["shadow-report", "--audit", str(db), "--since", "7d"]) == 0
    out = capsys.readouterr().out
    assert out.index("would-be false accepts") < out.index("classify_issue  ") and ids[2] in out
    assert main(["shadow-report", "--audit", str(db), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tasks"][0]["false_accept_ids"] == [ids[2]]
    assert main(["shadow-report", "--audit", str(tmp_path / "missing.db")]) == 2
    assert main(["shadow-report", "--audit", str(db), "--since", "soon"]) == 2
