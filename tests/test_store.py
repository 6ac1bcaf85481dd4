"""The store layer: the same records written to a real SQLite file and a real PostgreSQL database
(started by the tests, tests/pgserver.py) read back identically by every reader; migrations;
idempotent inserts; the spill file shared by several writers."""

from __future__ import annotations

import json
import math
import threading
import time

import pytest

from smallfirst import dashboard as dash
from smallfirst import review
from smallfirst.audit import AuditLog, AuditRecord, PostgresSink, SpillFile, SQLiteSink, read_recent
from smallfirst.cli import main
from smallfirst.rotation import compare_audit
from smallfirst.schema import LATEST, check_store, migrate, version
from smallfirst.server.admin import read_admin_events, record_admin_event
from smallfirst.shadow import shadow_report
from smallfirst.store import StoreError, connect, connect_postgres, describe, translate

from test_dashboard import NOW, rec

pytestmark = pytest.mark.postgres


def shadow_rec(i: int, *, agree: bool | None, candidate_route: str = "local", review_label: str | None = None,
               route_candidate: str = "local") -> AuditRecord:
    return AuditRecord(
        decision_id=f"s{i:06d}", ts=NOW - 120 - i, task_type="classify_issue", mode="shadow", route="frontier",
        route_candidate=route_candidate, reason=None if route_candidate == "local" else "confidence_low",
        label="build", latency_ms={"total": 50.0, "local": 30.0, "frontier": 40.0}, cost_usd=0.003,
        frontier_only_cost_usd=0.003, shadow_agree=agree, review_label=review_label, local_model="v1",
        local_model_sha256="1" * 64, candidate_model="v2", candidate_model_sha256="2" * 64, candidate_label="build",
        candidate_confidence=0.9, candidate_route=candidate_route, candidate_latency_ms=20.0 + i,
        outcome="answered_frontier", preview="shadow preview", input_sha256=f"{i:064x}",
    )


def records() -> list[AuditRecord]:
    rs = [rec(i) for i in range(6)]
    rs[0] = rec(0, review="escalate")
    rs += [rec(6 + i, route="frontier", reason="confidence_low", frontier_ms=ms, cost=0.002)
           for i, ms in enumerate((100.0, 200.0, 300.0))]
    rs.append(rec(9, route="rejected", reason="input_too_large", outcome="rejected", fo_cost=0.0))
    rs.append(rec(10, task="summarize_log", ts=NOW - 20 * 3600, route="frontier", reason="hard_stop_access",
                  frontier_ms=50.0, cost=0.01, fo_cost=0.01, group="nightly"))
    rs.append(rec(11, task=None, ts=NOW - 30 * 86400, route="frontier", reason="unknown_task", frontier_ms=999.0))
    rs += [shadow_rec(20, agree=True), shadow_rec(21, agree=False), shadow_rec(22, agree=None, review_label="escalate"),
           shadow_rec(23, agree=True, candidate_route="frontier", route_candidate="frontier")]
    return rs


def write(target, rs: list[AuditRecord], tmp_path) -> None:
    audit = AuditLog.open(target, spill_path=tmp_path / f"spill-{abs(hash(str(target)))}.jsonl")
    for r in rs:
        audit.submit(r)
    audit.close()
    assert audit.stats.written == len(rs) and audit.stats.spilled == 0, audit.stats


@pytest.fixture
def both(tmp_path, pg_url):
    """The same decisions in a SQLite file and in PostgreSQL."""
    db = tmp_path / "a.db"
    for target in (db, pg_url):
        write(target, records(), tmp_path)
    return {"sqlite": str(db), "postgresql": pg_url}


def rounded(x):
    """Float sums may differ in the last bit between the two databases' summation orders."""
    if isinstance(x, float):
        return float(f"{x:.12g}") if math.isfinite(x) else x
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v) for v in x]
    return x


def on_both(both, fn):
    out = {}
    for name, target in both.items():
        conn = connect(target)
        try:
            out[name] = rounded(fn(conn))
        finally:
            conn.close()
    assert out["sqlite"] == out["postgresql"]
    return out["postgresql"]


# ---------------------------------------------------------------------- one dialect layer, both databases


def test_dashboard_numbers_are_the_same_on_sqlite_and_postgresql(both):
    for window in dash.WINDOWS:
        s = on_both(both, lambda c: dash.summary(c, window, now=NOW).to_dict())
        if window == "hour":
            total = s["total"]
            assert (total["decisions"], total["rejected"], total["escalated"]) == (13, 1, 4)
            assert (total["frontier_p50_ms"], total["frontier_p95_ms"]) == (40.0, 300.0)
    assert on_both(both, lambda c: dash.summary(c, "all", now=NOW).to_dict())["total"]["decisions"] == 15


def test_explorer_filters_and_review_queue_are_the_same_on_both(both):
    assert len(on_both(both, lambda c: dash.decisions(c, dash.Filters(), now=NOW))) == 16
    on_both(both, lambda c: dash.decisions(c, dash.Filters(task="unknown", window="all"), now=NOW))
    on_both(both, lambda c: dash.decisions(c, dash.Filters(model="claude-sonnet-4-6", user_group="nightly"), now=NOW))
    choices = on_both(both, dash.filter_choices)
    assert choices["user_group"] == ["default", "nightly"]
    assert [d["decision_id"] for d in on_both(both, dash.review_queue)] == [
        "d000001", "d000002", "d000003", "d000004", "d000005"]


def test_shadow_report_and_candidate_comparison_are_the_same_on_both(both):
    reports = {n: rounded(shadow_report(t, 7 * 86400, 0.05, now=NOW)) for n, t in both.items()}
    assert reports["sqlite"] == reports["postgresql"]
    (task,) = reports["postgresql"]["tasks"]
    assert (task["n"], task["would_be_local"], task["would_be_false_accepts"], task["compared"]) == (4, 3, 2, 3)
    assert task["reasons"] == {"confidence_low": 1}
    compared = {n: compare_audit(t, "classify_issue", usd_per_hour=0.05) for n, t in both.items()}
    assert compared["sqlite"] == compared["postgresql"] and compared["postgresql"]["n"] == 4


def test_audit_tail_and_reviews_work_the_same_on_both(both):
    tails = {n: read_recent(t, limit=50) for n, t in both.items()}
    assert tails["sqlite"] == tails["postgresql"] and tails["postgresql"][0]["shadow_agree"] is None
    assert {r["decision_id"]: r["shadow_agree"] for r in tails["postgresql"]}["s000020"] == 1
    for target in both.values():
        assert review.set_review_label(target, "d000003", "accept", reviewer="ana") is True
        assert review.set_review_label(target, "nope", "accept") is False
    queued = {n: review.sample_drift(t, per_task=2, seed=7, now=NOW) for n, t in both.items()}
    assert queued["sqlite"] == queued["postgresql"] == {"classify_issue": 2}
    assert review.sample_drift(both["postgresql"], per_task=2, seed=7, now=NOW) == {}  # once per ISO week
    nexts = {n: [r["decision_id"] for r in review.next_for_review(t, now=NOW)] for n, t in both.items()}
    assert nexts["sqlite"] == nexts["postgresql"]
    done = {n: review.reviewed(t) for n, t in both.items()}
    assert done["sqlite"] == done["postgresql"]


def test_admin_events_are_written_and_read_the_same_on_both(both):
    event = {"ts": NOW, "action": "promote", "allowed": True, "status": 0, "remote": "cli", "detail": {"task": "t"},
             "policy_before": "a", "policy_after": "b", "actor": "ana", "reason": "weekly rotation"}
    for target in both.values():
        record_admin_event(target, event)
    events = {n: read_admin_events(t) for n, t in both.items()}
    assert events["sqlite"] == events["postgresql"]
    assert events["postgresql"][0]["detail"] == {"task": "t"} and events["postgresql"][0]["actor"] == "ana"


def test_an_admin_event_stores_what_an_operator_typed_masked(both):
    token = "ghp_" + "Zx81kQ" * 6
    event = {"ts": NOW, "action": "kill_switch", "allowed": True, "status": 0, "remote": "cli",
             "detail": {"note": f"rotated after {token} leaked", "n": 2}, "actor": "ana",
             "reason": f"token {token} was pasted in chat"}
    for target in both.values():
        record_admin_event(target, event)
        (stored,) = read_admin_events(target)
        assert token not in json.dumps(stored) and stored["detail"]["n"] == 2
        assert "pasted in chat" in stored["reason"] and "leaked" in stored["detail"]["note"]


# ---------------------------------------------------------------------- writing


def test_a_batch_written_twice_never_duplicates_a_decision(tmp_path, pg_url):
    rows = [r.to_row() for r in records()]
    for sink in (SQLiteSink(tmp_path / "a.db"), PostgresSink(pg_url)):
        assert sink.write_batch(rows) == len(rows)
        assert sink.write_batch(rows[:5] + rows) == 0  # a retry after a lost commit answer
        sink.close()
    for target in (tmp_path / "a.db", pg_url):
        conn = connect(target)
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT decision_id) FROM decisions").fetchone()[:] == (16, 16)
        conn.close()


def test_migrate_creates_the_schema_once_and_says_so(tmp_path, pg_server, capsys):
    url = pg_server.create_database()
    assert main(["migrate", "--audit", url]) == 0
    assert f"migrated from schema version 0 to schema version {LATEST}" in capsys.readouterr().out
    assert main(["migrate", "--audit", url]) == 0
    assert f"already at schema version {LATEST}" in capsys.readouterr().out
    conn = connect_postgres(url)
    assert version(conn) == LATEST
    assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")] == list(range(1, LATEST + 1))
    assert conn.execute("SELECT version, overrides FROM flags").fetchall() == [(0, "{}")]
    conn.close()
    assert main(["migrate", "--audit", str(tmp_path / "new.db")]) == 0  # SQLite: the same migrations
    assert "to schema version" in capsys.readouterr().out


def test_an_unmigrated_postgresql_store_is_refused_with_the_command_to_run(tmp_path, pg_server):
    url = pg_server.create_database()
    with pytest.raises(StoreError, match="smallfirst migrate --audit"):
        check_store(url)
    audit = AuditLog.open(url, spill_path=tmp_path / "spill.jsonl", spill_after_s=0.0)
    audit.submit(rec(1))
    audit.close()
    assert "smallfirst migrate" in audit.stats.last_error and audit.stats.spilled == 1  # kept, not lost
    assert check_store("postgresql://smallfirst@127.0.0.1:1/nowhere").startswith("the store")  # unreachable: served anyway


def test_an_older_sqlite_store_gains_the_new_tables_and_columns(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    old = sqlite3.connect(db)
    old.execute("CREATE TABLE decisions (decision_id TEXT PRIMARY KEY, ts REAL NOT NULL, mode TEXT NOT NULL,"
                " route TEXT NOT NULL, task_type TEXT)")
    old.execute("INSERT INTO decisions VALUES ('old1', 1.0, 'live', 'local', 'classify_issue')")
    old.commit()
    old.close()
    write(db, [rec(1)], tmp_path)
    conn = connect(db)
    assert version(conn) == LATEST
    assert [r["decision_id"] for r in conn.execute("SELECT decision_id FROM decisions ORDER BY ts")] == ["old1", "d000001"]
    conn.close()


def test_a_spill_file_shared_by_several_writers_loses_and_repeats_nothing(tmp_path):
    spill = tmp_path / "shared.spill.jsonl"
    replayed: list[str] = []

    def appender(k: int) -> None:
        for i in range(50):
            SpillFile(spill).append([{"decision_id": f"w{k}-{i}"}])

    def replayer() -> None:
        for _ in range(30):
            SpillFile(spill).replay(lambda rows: replayed.extend(r["decision_id"] for r in rows), chunk=7)
            time.sleep(0.001)

    threads = [threading.Thread(target=appender, args=(k,)) for k in range(3)] + [threading.Thread(target=replayer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    SpillFile(spill).replay(lambda rows: replayed.extend(r["decision_id"] for r in rows), chunk=7)
    assert sorted(replayed) == sorted(f"w{k}-{i}" for k in range(3) for i in range(50))
    assert not spill.exists()


def test_a_torn_spill_line_is_set_aside_and_the_rest_replayed(tmp_path):
    spill = tmp_path / "s.jsonl"
    spill.write_text(json.dumps({"decision_id": "a"}) + "\n" + '{"decision_id": "b", "ts"' + "\n")
    got: list[str] = []
    assert SpillFile(spill).replay(lambda rows: got.extend(r["decision_id"] for r in rows), chunk=10) == 1
    assert got == ["a"] and (tmp_path / "s.jsonl.rejected").read_text().startswith('{"decision_id": "b"')


# ---------------------------------------------------------------------- small parts


def test_placeholders_are_translated_outside_quotes_and_casts():
    sql = "SELECT x::jsonb ->> 'a?b:c' FROM t WHERE a = ? AND b = :name AND c LIKE '5%'"
    assert translate(sql) == "SELECT x::jsonb ->> 'a?b:c' FROM t WHERE a = %s AND b = %(name)s AND c LIKE '5%%'"


def test_a_url_password_is_never_printed():
    assert describe("postgresql://app:s3cret@db:5432/smallfirst") == "postgresql://app:***@db:5432/smallfirst"
    assert describe("audit.db") == "audit.db"


def test_migrating_twice_at_once_is_safe(pg_server):
    url = pg_server.create_database()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            conn = connect_postgres(url)
            migrate(conn)
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = connect_postgres(url)
    assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == LATEST
    conn.close()


def test_audit_tail_and_the_dashboard_take_a_postgresql_url(both, capsys):
    assert main(["audit", "tail", "--audit", both["postgresql"], "-n", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["decision_id"] for r in rows] == [r["decision_id"] for r in read_recent(both["sqlite"], limit=3)]
