"""Operator review: labels stored in a real audit file, answers piped on stdin, the weekly drift
queue, and the export that turns reviewed decisions into the next eval set."""

from __future__ import annotations

import io
import json
import sqlite3
import sys

import pytest

from smallfirst.audit import AuditLog, read_recent
from smallfirst.cli import main
from smallfirst.review import load_inputs, next_for_review, sample_drift, set_review_label
from smallfirst.tasks import Task

from test_router import ROUTINE, make_router

SECRET = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"


def record(db, texts, task="classify_issue", **stub):
    """Route each text through a real Router (local stub, no frontier) into the audit file."""
    audit = AuditLog.sqlite(db)
    router, _ = make_router(audit=audit, **stub)
    ids = [router.route(Task(t, task)).decision_id for t in texts]
    router.close(); audit.close()
    return ids


def inputs(n):
    return [f"{ROUTINE}[ERROR] module m{i} failed\n" for i in range(n)]


def test_set_review_label_stores_the_label_and_who_gave_it(tmp_path):
    db = tmp_path / "a.db"
    (d,) = record(db, inputs(1), label="build", confidence=0.95)
    assert set_review_label(db, d, "escalate", reviewer="ana") is True
    assert read_recent(db)[0]["review_label"] == "escalate"
    log = sqlite3.connect(db).execute("SELECT decision_id, label, reviewer FROM review_log").fetchall()
    assert log == [(d, "escalate", "ana")]


def test_set_review_label_rejects_other_labels_and_reports_unknown_ids(tmp_path):
    db = tmp_path / "a.db"
    (d,) = record(db, inputs(1))
    with pytest.raises(ValueError, match="accept"):
        set_review_label(db, d, "maybe")  # type: ignore[arg-type]
    assert set_review_label(db, "no-such-decision", "accept") is False
    with pytest.raises(FileNotFoundError):
        set_review_label(tmp_path / "missing.db", d, "accept")


def test_piped_answers_label_decisions_and_the_masked_preview_never_shows_the_secret(tmp_path, monkeypatch, capsys):
    db = tmp_path / "a.db"
    texts = inputs(3)
    texts[0] += f"export GITHUB_TOKEN={SECRET}\n"
    record(db, texts, label="build", confidence=0.95)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a\nwhat\ne\ns\n"))
    assert main(["review", "--audit", str(db), "--n", "3", "--reviewer", "ops"]) == 0
    out = capsys.readouterr().out
    assert "accept / escalate / label [l build|test|" in out and "/ skip / quit [a/e/l/s/q]" in out and "please answer" in out
    assert "label build" in out and "checks " in out and SECRET not in out
    assert "reviewed: 1 accept, 1 escalate, 0 labelled, 1 skipped" in out
    labels = sorted((r["review_label"] or "-") for r in read_recent(db))
    assert labels == ["-", "accept", "escalate"]


def test_end_of_input_quits_the_session_without_labelling(tmp_path, monkeypatch, capsys):
    db = tmp_path / "a.db"
    record(db, inputs(2))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["review", "--audit", str(db)]) == 0
    assert all(r["review_label"] is None for r in read_recent(db))


def test_drift_sample_queues_local_accepts_once_per_week_and_is_served_first(tmp_path):
    db = tmp_path / "a.db"
    local = record(db, inputs(6), label="build", confidence=0.95)
    escalated = record(db, inputs(2), label="build", confidence=0.2)  # not accepts: never sampled
    first = sample_drift(db, per_task=3, seed=7)
    again = sample_drift(db, per_task=3, seed=7)
    assert first == {"classify_issue": 3} and again == {}  # idempotent within the week
    queued = [r[0] for r in sqlite3.connect(db).execute("SELECT decision_id FROM review_queue WHERE reason = 'drift'")]
    assert set(queued) <= set(local) and not set(queued) & set(escalated)
    served = next_for_review(db, n=5)
    assert {d["decision_id"] for d in served[:3]} == set(queued) and all(d["queued_reason"] == "drift" for d in served[:3])
    assert all(d["queued_reason"] is None for d in served[3:])


def test_drift_sample_is_reproducible_with_a_seed(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    ids = record(a, inputs(10), label="build", confidence=0.95)
    b.write_bytes(a.read_bytes())
    sample_drift(a, per_task=4, seed=1)
    sample_drift(b, per_task=4, seed=1)
    pick = lambda db: sorted(r[0] for r in sqlite3.connect(db).execute("SELECT decision_id FROM review_queue"))  # noqa: E731
    assert pick(a) == pick(b) and set(pick(a)) <= set(ids)


def test_sample_drift_command_reports_what_it_queued(tmp_path, capsys):
    db = tmp_path / "a.db"
    record(db, inputs(2), label="build", confidence=0.95)
    assert main(["review", "--audit", str(db), "--sample-drift", "--per-task", "5", "--seed", "3"]) == 0
    assert "classify_issue: queued 2" in capsys.readouterr().out


def test_export_turns_reviews_into_eval_cases_keyed_by_input_hash(tmp_path, capsys):
    db = tmp_path / "a.db"
    texts = inputs(3)
    ids = record(db, texts, label="build", confidence=0.95)
    set_review_label(db, ids[0], "accept")
    set_review_label(db, ids[1], "escalate")
    out = tmp_path / "reviewed.jsonl"
    assert main(["review", "--audit", str(db), "--export", str(out)]) == 0
    assert "input_sha256" in capsys.readouterr().out  # the note on joining with your own inputs
    cases = {c["id"]: c for c in map(json.loads, out.read_text().splitlines())}
    assert set(cases) == {ids[0], ids[1]}
    assert cases[ids[0]]["label"] == "build" and "must_escalate" not in cases[ids[0]]
    assert cases[ids[1]]["must_escalate"] is True and "label" not in cases[ids[1]]
    assert all("text" not in c and len(c["input_sha256"]) == 64 and c["task_type"] == "classify_issue" for c in cases.values())


def test_export_with_the_operators_inputs_adds_text_and_runs_through_the_eval_reader(tmp_path, capsys):
    from smallfirst.evals import read_cases

    db = tmp_path / "a.db"
    texts = inputs(3)
    ids = record(db, texts, label="build", confidence=0.95)
    for d in ids:
        set_review_label(db, d, "accept")
    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:2]))  # the third input is lost
    assert len(load_inputs(mine)) == 2
    out = tmp_path / "reviewed.jsonl"
    assert main(["review", "--audit", str(db), "--export", str(out), "--inputs", str(mine)]) == 0
    assert "1 reviewed decisions left out" in capsys.readouterr().out
    cases = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(c["text"] for c in cases) == sorted(texts[:2])
    assert len(read_cases(out)) == 2
