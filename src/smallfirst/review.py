"""Operator review of decisions: labels in the audit, a drift-sampling queue, eval export.

A review label is `accept` (the local answer was fine) or `escalate` (it should have gone to the
frontier). It is stored in `decisions.review_label`; every labelling is also appended to
`review_log` (who, when) so a relabel is traceable. `set_review_label` is the one writer, shared by
the terminal review and the dashboard.

A reviewer of a labelled task can also say which label is right (`gold`, stored in
`decisions.review_gold`). It overrides the frontier's label when `smallfirst learn` trains on the
decision, and it implies the review label the other readers (compare, shadow-report, dashboard)
use: `accept` when it is the label the local model gave, `escalate` otherwise.

Drift sampling: each ISO week, a seeded random sample of the local path's accepts of the last
7 days (route_candidate 'local': live local answers and shadow would-be-local ones) is put in
`review_queue` per task type, so quality is re-checked on fresh traffic, not only on escalations.

The raw input is not in the audit by design, so an exported eval row carries `input_sha256` (the
SHA-256 of the UTF-8 input text as the router saw it) for joining with the operator's own inputs.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal

from smallfirst.audit import ensure_schema
from smallfirst.store import connect as _connect
from smallfirst.store import dialect_of

REVIEW_LABELS = ("accept", "escalate")
DRIFT_WINDOW_S = 7 * 86400


def connect(target: str | Path) -> Any:
    """Read-write connection to an existing audit store (a SQLite path or a postgresql:// URL),
    with the review tables in place."""
    conn = _connect(target, write=True)
    ensure_review_tables(conn)
    return conn


def ensure_review_tables(conn: Any) -> None:
    # The review tables are part of the store's schema (smallfirst.schema). The embedded store
    # migrates itself; a PostgreSQL store is migrated by `smallfirst migrate`.
    if not dialect_of(conn).postgres:
        ensure_schema(conn)


def set_review_label(
    db_path: str | Path,
    decision_id: str,
    label: Literal["accept", "escalate"] | None,
    reviewer: str | None = None,
    *,
    gold: str | None = None,
) -> bool:
    """Store an operator's label on one decision: accept | escalate, and/or the right task label
    (`gold`; with label None, accept | escalate follows from it). False when the decision id is
    unknown; ValueError for a label other than accept | escalate."""
    conn = connect(db_path)
    try:
        return label_decision(conn, decision_id, label, reviewer, gold=gold)
    finally:
        conn.close()


def label_decision(conn: Any, decision_id: str, label: str | None, reviewer: str | None = None,
                   *, gold: str | None = None) -> bool:
    """`set_review_label` on an open connection (the dashboard keeps one)."""
    if label is None and not gold:
        raise ValueError(f"give a review label ({' | '.join(REVIEW_LABELS)}) or the right task label")
    if label is not None and label not in REVIEW_LABELS:
        raise ValueError(f"review label must be one of {REVIEW_LABELS}, not {label!r}")
    ensure_review_tables(conn)
    with conn:
        row = conn.execute("SELECT label FROM decisions WHERE decision_id = ?", (decision_id,)).fetchone()
        if row is None:
            return False
        if label is None:
            label = "accept" if row[0] == gold else "escalate"
        conn.execute("UPDATE decisions SET review_label = ?, review_gold = COALESCE(?, review_gold) WHERE decision_id = ?",
                     (label, gold, decision_id))
        conn.execute(
            "INSERT INTO review_log (decision_id, ts, label, reviewer, gold) VALUES (?, ?, ?, ?, ?)",
            (decision_id, time.time(), label, reviewer, gold),
        )
    return True


def review_labels(db_path: str | Path, task: str) -> dict[str, str]:
    """decision id -> the task label reviewers say is right, for `smallfirst learn`: the gold
    label where one was given, else the local label of a decision reviewed `accept` (the local
    answer was right: as `eval_rows` reads it)."""
    conn = connect(db_path)
    try:
        rows = conn.execute(
            "SELECT decision_id, review_gold, review_label, label FROM decisions WHERE task_type = ?"
            " AND (review_gold IS NOT NULL OR (review_label = 'accept' AND label IS NOT NULL))", (task,)
        ).fetchall()
    finally:
        conn.close()
    return {r[0]: r[1] if r[1] is not None else r[3] for r in rows}


def iso_week(ts: float) -> str:
    y, w, _ = datetime.fromtimestamp(ts, timezone.utc).isocalendar()
    return f"{y}-W{w:02d}"


def sample_drift(
    db_path: str | Path, per_task: int = 20, seed: int | None = None, now: float | None = None
) -> dict[str, int]:
    """Queue a random sample of the last 7 days' local accepts per task type for review.
    Idempotent per ISO week: a task already sampled this week is left alone. Returns task type ->
    number queued now."""
    now = time.time() if now is None else now
    week = iso_week(now)
    rng = random.Random(seed)
    conn = connect(db_path)
    queued: dict[str, int] = {}
    try:
        with conn:
            tasks = [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT task_type FROM decisions WHERE route_candidate = 'local' AND ts >= ?"
                    " AND task_type IS NOT NULL ORDER BY task_type",
                    (now - DRIFT_WINDOW_S,),
                )
            ]
            for task in tasks:
                done = conn.execute(
                    "SELECT 1 FROM review_queue WHERE reason = 'drift' AND week = ? AND task_type = ? LIMIT 1",
                    (week, task),
                ).fetchone()
                if done:
                    continue
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT decision_id FROM decisions WHERE task_type = ? AND route_candidate = 'local'"
                        " AND ts >= ? AND review_label IS NULL"
                        " AND decision_id NOT IN (SELECT decision_id FROM review_queue) ORDER BY decision_id",
                        (task, now - DRIFT_WINDOW_S),
                    )
                ]
                pick = rng.sample(ids, min(per_task, len(ids)))
                conn.executemany(
                    "INSERT INTO review_queue (decision_id, queued_at, reason, week, task_type)"
                    " VALUES (?, ?, 'drift', ?, ?) ON CONFLICT (decision_id) DO NOTHING",
                    [(i, now, week, task) for i in pick],
                )
                queued[task] = len(pick)
    finally:
        conn.close()
    return queued


_REVIEW_COLUMNS = (
    "d.decision_id, d.ts, d.task_type, d.mode, d.route, d.route_candidate, d.reason, d.label,"
    " d.confidence_calibrated, d.checks, d.hard_stop, d.preview, d.shadow_agree, d.review_label"
)


def next_for_review(
    db_path: str | Path, task: str | None = None, n: int = 20, since_s: float = DRIFT_WINDOW_S, now: float | None = None
) -> list[dict[str, Any]]:
    """Unlabelled decisions to review: queued ones first (oldest queued first), then the most
    recent unreviewed ones of the window."""
    from smallfirst.audit import decode_row

    now = time.time() if now is None else now
    task_sql = " AND d.task_type = :task" if task else ""
    conn = connect(db_path)
    try:
        rows = conn.execute(
            f"""SELECT {_REVIEW_COLUMNS}, q.reason AS queued_reason FROM decisions d
            LEFT JOIN review_queue q ON q.decision_id = d.decision_id
            WHERE d.review_label IS NULL AND (q.decision_id IS NOT NULL OR d.ts >= :since){task_sql}
            ORDER BY q.decision_id IS NULL, q.queued_at, d.ts DESC, d.decision_id LIMIT :n""",
            {"task": task, "since": now - since_s, "n": n},
        ).fetchall()
    finally:
        conn.close()
    return [decode_row(r) for r in rows]


def reviewed(db_path: str | Path, task: str | None = None) -> list[dict[str, Any]]:
    conn = connect(db_path)
    try:
        sql = ("SELECT decision_id, task_type, label, review_label, review_gold, input_sha256, preview FROM decisions"
               " WHERE review_label IS NOT NULL")
        args: list[Any] = []
        if task:
            sql += " AND task_type = ?"
            args.append(task)
        return [dict(r) for r in conn.execute(sql + " ORDER BY ts, decision_id", args)]
    finally:
        conn.close()


def eval_rows(rows: Iterable[dict[str, Any]], texts: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Reviewed decisions as eval cases (ARCHITECTURE.md's format). An accept keeps the local
    label as the gold label; an escalate becomes must_escalate. With `texts` (input sha256 ->
    text), only rows whose input was found are returned, with their text, so `smallfirst eval`
    can run them."""
    out: list[dict[str, Any]] = []
    for r in rows:
        case: dict[str, Any] = {"id": r["decision_id"]}
        if texts is not None:
            if r["input_sha256"] not in texts:
                continue
            case["text"] = texts[r["input_sha256"]]
        if r.get("review_gold"):
            case["label"] = r["review_gold"]  # the reviewer named the right label
        elif r["review_label"] == "accept" and r["label"] is not None:
            case["label"] = r["label"]
        elif r["review_label"] == "escalate":
            case["must_escalate"] = True
        case.update(input_sha256=r["input_sha256"], preview=r["preview"], task_type=r["task_type"])
        out.append(case)
    return out


def input_sha256(text: str) -> str:
    # The router hashes the decoded input text this way (router._input_sha).
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def load_inputs(path: str | Path) -> dict[str, str]:
    """sha256 -> text, from a JSONL with a "text" field per line or a folder of text files
    (decoded as the router decodes them: UTF-8 with replacement characters)."""
    p = Path(path)
    texts: list[str] = []
    if p.is_dir():
        texts = [f.read_bytes().decode("utf-8", errors="replace") for f in sorted(p.rglob("*")) if f.is_file()]
    else:
        for no, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{p}:{no}: not JSON: {exc}") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError(f'{p}:{no}: expected an object with a "text" string')
            texts.append(obj["text"])
    return {input_sha256(t): t for t in texts}
