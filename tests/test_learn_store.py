"""Keeping the frontier's answers to escalations: the learn store and its writer.

The frontier is faked at the wire (an Anthropic-protocol server on 127.0.0.1); the store is a real
SQLite file; the local model is an instant stub that also embeds (a fixed vector per text), so
these tests are about what is kept and what is not.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from fakes import FakeAnthropic, Reply
from smallfirst.cli import main
from smallfirst.learn_store import LearnCollector, LearnLog, LearnStore, learn_store_target, parse_label
from smallfirst.policy import parse_policy
from smallfirst.router import Router
from smallfirst.tasks import Task

from conftest import MINIMAL_POLICY
from test_router import ROUTINE, StubLocal

KEY_ENV = "SMALLFIRST_TEST_FRONTIER_KEY"
KEY = "sk-ant-test-key-0123456789"
ANSWERS = Path(__file__).parent / "data" / "frontier_label_answers.jsonl"
LABELS = ("build", "test", "dependency", "security", "access", "unknown")
MARKER = "quokka-7781-unique-marker"  # a word that appears in the input and nowhere else
TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"


class EmbeddingStub(StubLocal):
    """An instant local classifier that also embeds: a fixed unit vector per text."""

    def embed(self, text, spec):
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        v = np.random.default_rng(seed).normal(size=384).astype(np.float32)
        return v / np.linalg.norm(v), "stub-encoder/last"


@pytest.fixture
def frontier(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeAnthropic.start_in_thread(api_key=KEY) as srv:
        yield srv


def learning_router(srv, learn, *, learn_spec="{retention_days: 30}", **stub) -> Router:
    text = MINIMAL_POLICY.replace(
        "frontier_default: {provider: anthropic, name: claude-sonnet-4-6, api_key_env: SMALLFIRST_TEST_NO_SUCH_KEY}",
        f"frontier_default: {{provider: anthropic, name: claude-sonnet-4-6, api_key_env: {KEY_ENV}, "
        f"base_url: '{srv.base_url}', retries: 0, timeout_s: 5}}",
    ).replace("    max_input_chars: 6000\n", f"    max_input_chars: 6000\n    learn: {learn_spec}\n", 1)
    local = EmbeddingStub(**{"label": "build", "confidence": 0.4, **stub})  # below min_confidence: escalates
    return Router(parse_policy(text), backends={"local_classifier": local, "local_default": local}, learn=learn)


def stored_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


def rows(db: Path) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM learn_examples ORDER BY ts")]
    finally:
        conn.close()


# ---------------------------------------------------------------------- the frontier's label


@pytest.mark.parametrize("case", [json.loads(line) for line in ANSWERS.read_text().splitlines() if line.strip()],
                         ids=lambda c: c["why"])
def test_frontier_answers_count_as_a_label_only_when_they_are_exactly_one(case):
    assert parse_label(case["answer"], LABELS) == case["label"]


def test_the_escalation_packet_asks_a_labelled_task_for_one_label(frontier, tmp_path):
    learn = LearnLog.open(tmp_path / "learn.db")
    router = learning_router(frontier, learn)
    router.route(Task(ROUTINE, "classify_issue"))
    router.close()
    learn.close()
    sent = json.dumps(frontier.requests[-1].json)
    assert "Answer with exactly one of these labels and nothing else: build, test, dependency, security, access, unknown" in sent


# ---------------------------------------------------------------------- what is kept


def test_without_keep_inputs_an_escalation_keeps_its_label_and_embedding_and_no_text(frontier, tmp_path):
    db = tmp_path / "learn.db"
    learn = LearnLog.open(db)
    router = learning_router(frontier, learn)
    frontier.enqueue(Reply("build"))
    text = ROUTINE + f"[ERROR] module {MARKER} failed\n"
    r = router.route(Task(text, "classify_issue"))
    router.close()
    learn.close()
    assert r.outcome == "answered_frontier" and r.reason.value == "confidence_low"
    (row,) = rows(db)
    assert (row["decision_id"], row["label"], row["source"], row["reason"]) == (r.decision_id, "build", "frontier", "confidence_low")
    assert row["local_label"] == "build" and row["frontier_model"] == "claude-sonnet-4-6"
    assert row["input_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert row["embedding_identity"] == "stub-encoder/last" and len(row["embedding"]) == 384 * 4
    assert row["text"] is None
    assert row["expires"] == pytest.approx(row["ts"] + 30 * 86400)
    # Not in any file of the store: the database, its WAL, a spill file.
    assert MARKER.encode() not in stored_bytes(db)


def test_kept_inputs_are_masked_like_the_audit(frontier, tmp_path):
    db = tmp_path / "learn.db"
    learn = LearnLog.open(db)
    router = learning_router(frontier, learn, learn_spec="{keep_inputs: true, retention_days: 7}")
    frontier.enqueue(Reply("security"))
    r = router.route(Task(f"deploy failed\nexport GITHUB_TOKEN={TOKEN}\n", "classify_issue"))
    router.close()
    learn.close()
    assert r.reason.value == "hard_stop_security"  # the leaked token stops the local path first
    (row,) = rows(db)
    assert row["label"] == "security" and row["hard_stop"] == "security"
    assert "export GITHUB_TOKEN=" in row["text"] and "[REDACTED:" in row["text"]
    assert TOKEN.encode() not in stored_bytes(db)
    assert row["embedding"] is not None  # embedded on the writer thread: the local model never ran


def test_an_answer_that_is_not_a_label_is_stored_unlabelled_counted_and_shown(frontier, tmp_path, capsys):
    db = tmp_path / "learn.db"
    learn = LearnLog.open(db)
    router = learning_router(frontier, learn)
    frontier.enqueue(Reply("It's a build error: the compiler could not find a symbol."), Reply("test"))
    router.route(Task(ROUTINE, "classify_issue"))
    router.route(Task(ROUTINE + "again\n", "classify_issue"))
    router.close()
    learn.close()
    assert sorted((r["label"] or "-") for r in rows(db)) == ["-", "test"]
    assert learn.stats.examples[("classify_issue", "invalid_label")] == 1
    assert learn.stats.examples[("classify_issue", "kept")] == 1
    exposition = "\n".join(str(m) for m in LearnCollector(learn).collect())
    assert "invalid_label" in exposition
    store = LearnStore(db)
    assert store.counts("classify_issue")["invalid_label"] == 1
    store.close()
    assert main(["learn", "--task", "classify_issue", "--status", "--learn-db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "1 frontier answers that were not one of the task's labels" in out and "by label: test 1" in out


def test_local_answers_and_tasks_without_learn_keep_nothing(frontier, tmp_path):
    db = tmp_path / "learn.db"
    learn = LearnLog.open(db)
    router = learning_router(frontier, learn, confidence=0.97)  # confident: answered locally
    assert router.route(Task(ROUTINE, "classify_issue")).route == "local"
    frontier.enqueue(Reply("build"))
    assert router.route(Task(ROUTINE, "propose_code_change")).outcome == "answered_frontier"  # no learn: block
    router.close()
    learn.close()
    assert learn.stats.submitted == 0 and LearnStore(db).examples("classify_issue") == []


def test_retention_deletes_rows_past_their_expiry_or_the_policys_retention(tmp_path):
    store = LearnStore(tmp_path / "learn.db")
    now = time.time()
    base = {"task_type": "t", "label": "build", "source": "frontier", "input_sha256": "0" * 64}
    store.write([
        {**base, "decision_id": "old", "ts": now - 40 * 86400, "expires": now - 10 * 86400},
        {**base, "decision_id": "kept-under-90", "ts": now - 20 * 86400, "expires": now + 70 * 86400},
        {**base, "decision_id": "new", "ts": now - 86400, "expires": now + 89 * 86400},
    ])
    # The policy now says 14 days: rows kept under the old 90 go too.
    assert store.purge("t", now, retention_days=14) == 2
    assert [e.decision_id for e in store.examples("t")] == ["new"]
    store.close()


def test_a_store_that_cannot_be_written_fails_no_request_and_loses_no_example(frontier, tmp_path):
    db = tmp_path / "learn.db"
    db.mkdir()  # a directory where the database should be: every write fails
    learn = LearnLog.open(db, max_pending=1)
    router = learning_router(frontier, learn)
    results = []
    for i in range(3):
        frontier.enqueue(Reply("dependency"))
        results.append(router.route(Task(ROUTINE + f"run {i}\n", "classify_issue")))
    assert all(r.outcome == "answered_frontier" for r in results)
    assert learn.flush(timeout=20)
    assert learn.stats.write_errors >= 1 and learn.stats.spilled >= 1 and learn.stats.lost == 0
    spill = db.with_name(db.name + ".spill.jsonl")
    assert spill.exists()
    db.rmdir()  # the store comes back
    frontier.enqueue(Reply("build"))
    router.route(Task(ROUTINE + "after\n", "classify_issue"))
    router.close()
    learn.close()
    assert sorted(r["label"] for r in rows(db)) == ["build", "dependency", "dependency", "dependency"]
    assert all(r["embedding"] is not None for r in rows(db))  # vectors survive the spill file
    assert not spill.exists() and learn.stats.replayed >= 1


def test_the_learn_store_sits_beside_a_sqlite_audit_and_inside_a_postgresql_one():
    assert learn_store_target("/var/lib/smallfirst/audit.db") == "/var/lib/smallfirst/audit.learn.db"
    assert learn_store_target("smallfirst-audit.db") == "smallfirst-audit.learn.db"
    url = "postgresql://smallfirst@db/smallfirst"
    assert learn_store_target(url) == url  # its learn_ tables, beside the decisions every replica shares
    assert learn_store_target(url, "/data/learn.db") == "/data/learn.db"


def test_learn_status_without_a_store_says_so(tmp_path, capsys):
    assert main(["learn", "--task", "classify_issue", "--status", "--learn-db", str(tmp_path / "none.db")]) == 2
    assert "does not exist" in capsys.readouterr().err
    shutil.rmtree(tmp_path, ignore_errors=True)


# ---------------------------------------------------------------------- on PostgreSQL (tests/pgserver.py)


def example_rows(now: float) -> list[dict]:
    rng = np.random.default_rng(3)
    rows = []
    for i, label in enumerate(["build", "test", "test", None, "dependency"]):
        v = rng.normal(size=384).astype(np.float32)
        rows.append({"decision_id": f"e{i}", "task_type": "classify_issue", "ts": now - 100 + i, "expires": now + 86400,
                     "label": label, "source": "frontier", "frontier_model": "claude-sonnet-4-6", "reason": "confidence_low",
                     "input_sha256": f"{i:064x}", "embedding_identity": "stub-encoder/last",
                     "embedding": None if i == 2 else v / np.linalg.norm(v), "text": "kept text" if i == 1 else None})
    rows.append({**rows[0], "decision_id": "old", "ts": now - 40 * 86400, "expires": now - 10 * 86400})
    return rows


@pytest.mark.postgres
def test_the_learn_store_reads_back_the_same_on_sqlite_and_postgresql(tmp_path, pg_url):
    now = time.time()
    seen = {}
    for name, target in (("sqlite", str(tmp_path / "learn.db")), ("postgresql", pg_url)):
        store = LearnStore(target)
        store.write(example_rows(now))
        store.write(example_rows(now)[:3])  # a retried batch keeps nothing twice
        purged = store.purge("classify_issue", now, retention_days=30)
        first = store.record_run("classify_issue", "too_little_data", head=None, head_sha256=None,
                                 message="too little data", detail={"counts": {"stored": 5}}, ts=now)
        second = store.record_run("classify_issue", "rejected", head=None, head_sha256=None, message="failed", detail={}, ts=now + 1)
        seen[name] = {
            "purged": purged,
            "examples": [(e.decision_id, e.label, e.text, None if e.embedding is None else e.embedding.round(6).tolist())
                         for e in store.examples("classify_issue")],
            "counts": store.counts("classify_issue"),
            "since": store.labelled_since("classify_issue", now - 98),
            "runs": [(r["id"] - first, r["outcome"], r["detail"]) for r in store.runs("classify_issue")],
            "ids": second - first,
        }
    assert seen["sqlite"] == seen["postgresql"]
    got = seen["postgresql"]
    assert got["purged"] == 1 and [e[0] for e in got["examples"]] == ["e0", "e1", "e2", "e3", "e4"]
    assert got["counts"] == {"examples": 5, "labelled": 4, "invalid_label": 1, "with_text": 1, "without_embedding": 1,
                             "oldest": pytest.approx(now - 100), "newest": pytest.approx(now - 96),
                             "by_label": {"test": 2, "build": 1, "dependency": 1}}
    assert got["since"] == 1 and got["ids"] == 1  # labelled after now - 98: e4 (e3 has no label)
    assert got["runs"] == [(1, "rejected", {}), (0, "too_little_data", {"counts": {"stored": 5}})]


@pytest.mark.postgres
def test_escalations_are_kept_masked_in_the_audits_postgresql_database(frontier, tmp_path, pg_url):
    target = learn_store_target(pg_url)
    learn = LearnLog.open(target, spill_path=tmp_path / "learn.spill.jsonl")
    router = learning_router(frontier, learn, learn_spec="{keep_inputs: true}")
    frontier.enqueue(Reply("security"), Reply("build"))
    stopped = router.route(Task(f"deploy failed\nexport GITHUB_TOKEN={TOKEN}\n", "classify_issue"))
    low = router.route(Task(ROUTINE, "classify_issue"))
    router.close()
    learn.close()
    assert learn.stats.written == 2 and learn.stats.spilled == 0, learn.stats
    from smallfirst.store import connect

    conn = connect(pg_url)
    rows = {r["decision_id"]: dict(r) for r in conn.execute("SELECT * FROM learn_examples")}
    conn.close()
    assert rows[stopped.decision_id]["label"] == "security" and rows[low.decision_id]["label"] == "build"
    assert "[REDACTED:" in rows[stopped.decision_id]["text"] and TOKEN not in json.dumps(rows, default=str)
    assert len(rows[low.decision_id]["embedding"]) == 384 * 4  # bytea, as SQLite's BLOB


@pytest.mark.postgres
def test_a_postgresql_store_without_the_learn_tables_is_refused_with_the_command_to_run(pg_server, tmp_path, capsys,
                                                                                     monkeypatch):
    from smallfirst import schema
    from smallfirst.store import close_pools, connect_postgres

    url = pg_server.create_database()
    conn = connect_postgres(url)
    with monkeypatch.context() as m:  # a store migrated by the smallfirst before the learn store
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
        schema.migrate(conn)
    assert schema.version(conn) == 2 and not schema.dialect_of(conn).has_table(conn, "learn_examples")
    assert main(["learn", "--task", "classify_issue", "--status", "--audit", url]) == 2
    assert "smallfirst migrate --audit" in capsys.readouterr().err
    assert main(["migrate", "--audit", url]) == 0
    assert "migrated from schema version 2 to schema version 3" in capsys.readouterr().out
    assert {"gold"} <= schema.dialect_of(conn).columns(conn, "review_log")
    conn.close()
    assert main(["learn", "--task", "classify_issue", "--status", "--audit", url]) == 0
    out = capsys.readouterr().out
    assert "kept: 0" in out and url.split("@")[-1] in out
    close_pools()
