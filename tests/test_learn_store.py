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
from smallfirst.learn_store import LearnCollector, LearnLog, SQLiteLearnStore, learn_store_path, parse_label
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
        return [dict(r) for r in conn.execute("SELECT * FROM examples ORDER BY ts")]
    finally:
        conn.close()


# ---------------------------------------------------------------------- the frontier's label


@pytest.mark.parametrize("case", [json.loads(line) for line in ANSWERS.read_text().splitlines() if line.strip()],
                         ids=lambda c: c["why"])
def test_frontier_answers_count_as_a_label_only_when_they_are_exactly_one(case):
    assert parse_label(case["answer"], LABELS) == case["label"]


def test_the_escalation_packet_asks_a_labelled_task_for_one_label(frontier, tmp_path):
    learn = LearnLog.sqlite(tmp_path / "learn.db")
    router = learning_router(frontier, learn)
    router.route(Task(ROUTINE, "classify_issue"))
    router.close()
    learn.close()
    sent = json.dumps(frontier.requests[-1].json)
    assert "Answer with exactly one of these labels and nothing else: build, test, dependency, security, access, unknown" in sent


# ---------------------------------------------------------------------- what is kept


def test_without_keep_inputs_an_escalation_keeps_its_label_and_embedding_and_no_text(frontier, tmp_path):
    db = tmp_path / "learn.db"
    learn = LearnLog.sqlite(db)
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
    learn = LearnLog.sqlite(db)
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
    learn = LearnLog.sqlite(db)
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
    store = SQLiteLearnStore(db)
    assert store.counts("classify_issue")["invalid_label"] == 1
    store.close()
    assert main(["learn", "--task", "classify_issue", "--status", "--learn-db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "1 frontier answers that were not one of the task's labels" in out and "by label: test 1" in out


def test_local_answers_and_tasks_without_learn_keep_nothing(frontier, tmp_path):
    db = tmp_path / "learn.db"
    learn = LearnLog.sqlite(db)
    router = learning_router(frontier, learn, confidence=0.97)  # confident: answered locally
    assert router.route(Task(ROUTINE, "classify_issue")).route == "local"
    frontier.enqueue(Reply("build"))
    assert router.route(Task(ROUTINE, "propose_code_change")).outcome == "answered_frontier"  # no learn: block
    router.close()
    learn.close()
    assert learn.stats.submitted == 0 and SQLiteLearnStore(db).examples("classify_issue") == []


def test_retention_deletes_rows_past_their_expiry_or_the_policys_retention(tmp_path):
    store = SQLiteLearnStore(tmp_path / "learn.db")
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
    learn = LearnLog.sqlite(db, max_pending=1)
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


def test_the_learn_store_sits_beside_the_audit_in_its_own_file():
    assert learn_store_path("/var/lib/smallfirst/audit.db") == Path("/var/lib/smallfirst/audit.learn.db")
    assert learn_store_path("smallfirst-audit.db") == Path("smallfirst-audit.learn.db")


def test_learn_status_without_a_store_says_so(tmp_path, capsys):
    assert main(["learn", "--task", "classify_issue", "--status", "--learn-db", str(tmp_path / "none.db")]) == 2
    assert "does not exist" in capsys.readouterr().err
    shutil.rmtree(tmp_path, ignore_errors=True)
