from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from smallfirst.audit import AuditLog, AuditRecord, SQLiteSink, read_recent

# Planted secrets of every kind the issue names. None of them may reach the database.
SECRETS = {
    "aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "github_token": "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "github_pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX",
    "url_password": "hunter2-Sup3rS3cret",
    "bearer": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "private_key_body": "MIIEowIBAAKCAQEA7bq98mJbX1g0K4rVq9m3Lkz2pQ8Xw7YtR5uIoP1aSdFgHjKl",
}
PLANTED = f"""npm ERR! build failed
aws_access_key_id = {SECRETS['aws_access_key']}
aws_secret_access_key = {SECRETS['aws_secret_key']}
export GITHUB_TOKEN={SECRETS['github_token']}
token: {SECRETS['github_pat']}
git clone https://deploy:{SECRETS['url_password']}@git.example.com/org/repo.git
Authorization: Bearer {SECRETS['bearer']}
-----BEGIN RSA PRIVATE KEY-----
{SECRETS['private_key_body']}
-----END RSA PRIVATE KEY-----
"""


def record(i: int = 0, **kw) -> AuditRecord:
    base = dict(decision_id=f"d{i:06d}", ts=time.time(), task_type="classify_issue", mode="live", route="local",
                route_candidate="local", reason=None, preview_source="build failed")
    base.update(kw)
    return AuditRecord(**base)


def all_bytes(db: Path) -> bytes:
    # The database file, its WAL and anything beside it: secrets must be nowhere.
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


def test_records_are_written_in_batches_to_sqlite_in_wal_mode(tmp_path):
    db = tmp_path / "audit.db"
    log = AuditLog.sqlite(db)
    for i in range(500):
        log.submit(record(i))
    log.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM decisions").fetchone()[0] == 500
    assert log.stats.written == 500


def test_no_planted_secret_reaches_the_database(tmp_path):
    db = tmp_path / "audit.db"
    log = AuditLog.sqlite(db)
    log.submit(record(1, preview_source=PLANTED, error=None))
    # A secret a little way into the input, past where a naive 240-char cut would end.
    log.submit(record(2, preview_source="x" * 230 + PLANTED))
    log.close()
    blob = all_bytes(db)
    for kind, secret in SECRETS.items():
        for start in range(0, len(secret) - 12, 4):  # not even a 12-character piece of it
            assert secret[start : start + 12].encode() not in blob, kind
    rows = read_recent(db)
    assert all(len(r["preview"]) <= 240 for r in rows)
    assert any("REDACTED" in r["preview"] for r in rows)


def test_preview_is_at_most_240_characters(tmp_path):
    db = tmp_path / "audit.db"
    log = AuditLog.sqlite(db)
    log.submit(record(preview_source="word " * 10_000))
    log.close()
    assert len(read_recent(db)[0]["preview"]) <= 240


class FlakySink:
    """A store that is down for the first `down` attempts, then comes back."""

    def __init__(self, inner: SQLiteSink, down: int):
        self.inner, self.down, self.attempts = inner, down, 0

    def write_batch(self, rows):
        self.attempts += 1
        if self.attempts <= self.down:
            raise sqlite3.OperationalError("database is locked")
        self.inner.write_batch(rows)

    def close(self):
        self.inner.close()


def test_store_outage_is_retried_without_losing_records(tmp_path):
    db = tmp_path / "audit.db"
    sink = FlakySink(SQLiteSink(db), down=3)
    log = AuditLog(sink, flush_interval_s=0.001)
    for i in range(50):
        log.submit(record(i))
    assert log.flush(timeout=30)
    log.close()
    assert sink.attempts > 3 and log.stats.write_errors == 3
    assert len(read_recent(db, limit=100)) == 50


class HeldSink(SQLiteSink):
    """A SQLite sink whose first write waits until the test lets it go."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.entered, self.release = threading.Event(), threading.Event()

    def write_batch(self, rows):
        self.entered.set()
        assert self.release.wait(10)
        return super().write_batch(rows)


def test_full_batches_waiting_in_the_queue_are_written_without_the_flush_interval(tmp_path):
    sink = HeldSink(tmp_path / "audit.db")
    log = AuditLog(sink, batch_size=10, flush_interval_s=0.001)
    log.submit(record(0))
    assert sink.entered.wait(10)  # the writer is busy with the first record
    log.flush_interval_s = 60.0  # a writer that slept this long per batch would fail the flush below
    for i in range(1, 21):
        log.submit(record(i))
    sink.release.set()
    assert log.flush(timeout=10)
    assert log.stats.written == 21
    log.close()


def test_unreachable_store_spills_records_to_a_file_and_replays_them(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database folder should be")
    spill = tmp_path / "spill.jsonl"
    log = AuditLog(SQLiteSink(blocker / "audit.db"), max_pending=5, spill_path=spill, flush_interval_s=0.001)
    for i in range(20):
        log.submit(record(i))
    log.close(timeout=5)
    spilled = [json.loads(line) for line in spill.read_text().splitlines()]
    assert sorted(r["decision_id"] for r in spilled) == [f"d{i:06d}" for i in range(20)]
    assert log.stats.lost == 0

    # The store comes back: the next writer replays the spill file first.
    db = tmp_path / "audit.db"
    log2 = AuditLog(SQLiteSink(db), spill_path=spill)
    log2.submit(record(99))
    log2.close()
    assert len(read_recent(db, limit=100)) == 21
    assert not spill.exists()


def test_every_free_text_field_is_masked_by_the_writer_not_only_the_preview(tmp_path):
    token = SECRETS["github_token"]
    key_id = "4f0e" * 10  # a private_key_id: no shape of its own, known only from the input
    source = f'{{"private_key_id": "{key_id}", "token": "{token}"}}'
    db = tmp_path / "audit.db"
    log = AuditLog.sqlite(db)
    log.submit(record(
        1, preview_source=source, task_id=f"job-{token}", label=f"label {token}",
        error=f"local model failed: could not parse {key_id[:20]}",  # a quote of a fragment
        checks=[{"name": "labels", "ok": False, "detail": f"label {key_id[4:30]!r} is not one of [...]"}],
        hard_stop={"category": "security", "rule": "security.secret", "excerpt": f'"{key_id}", "token"'}))
    log.close()
    stored = all_bytes(db)
    for fragment in (token[4:20], key_id[:16], key_id[4:20], key_id[10:26]):
        assert fragment.encode() not in stored
    (row,) = read_recent(db)
    assert row["task_id"] == "job-[REDACTED:github_token]" and "[REDACTED:" in row["error"]
    assert row["checks"][0]["detail"].startswith("label '[REDACTED:")


def test_the_preview_window_never_ends_inside_a_token(tmp_path):
    from smallfirst.audit import PREVIEW_WINDOW, preview_window

    token = SECRETS["github_token"]
    text = "x " * ((PREVIEW_WINDOW - 10) // 2) + token + " after"
    window = preview_window(text)
    assert window.endswith(token) and len(window) > PREVIEW_WINDOW
    blob = "{" + "a" * (3 * PREVIEW_WINDOW)  # no blank near: cut back to the last delimiter
    assert preview_window(blob) == "{"


def test_every_field_of_an_audit_record_has_a_column_in_the_decisions_table():
    # The table is defined in smallfirst.schema, the record here: a field added to one only would
    # be dropped on write without a word.
    from dataclasses import fields

    from smallfirst.schema import COLUMNS

    stored = [f.name for f in fields(AuditRecord) if f.name != "preview_source"]
    assert sorted(stored) == sorted(name for name, _ in COLUMNS)
