"""The learn store: examples kept from escalations, written off the hot path.

When a task with `learn:` in its policy leaves the local path and the frontier answers, the router
hands a `LearnCapture` to `LearnLog.submit()`, which only enqueues it. A writer thread parses the
frontier's answer as one of the task's labels (`parse_label`: strict), finds the input's
embedding (the one the local model already computed, or computes it), masks the text when the
task keeps inputs, and writes one row per decision.

What a row holds, and why that is enough: the embedding the head reads (384 floats) with its
label is all a logistic-regression head trains on, so learning works without keeping any text.
Beside it: the label's source, the decision id, the input's sha256, the encoder identity (which
model and window produced the vector: a vector from another encoder is never mixed in), the
frontier model, timestamps and an expiry. The input text is kept only with
`learn: {keep_inputs: true}`, masked by the audit's redaction, so `smallfirst learn` can re-embed
it when the encoder changes. `retention_days` deletes whole rows, text or not.

A frontier answer that is not one of the task's labels is stored with label NULL: never learned
from, counted (`smallfirst learn --status`, `smallfirst_learn_examples_total`), and a reviewer can
still give it the right label. The store is its own SQLite file beside the audit, never the audit
itself. If it cannot be written, rows are retried, then spilled to `<db>.spill.jsonl` and replayed
when it is back; requests never wait for it and never fail because of it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

log = logging.getLogger("smallfirst.learn")

DAY_S = 86400.0
_STOP = object()
_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.S)
# What may surround a label in a strict answer: quotes, markdown emphasis or code marks, and a
# final full stop. Anything else (a sentence, a second word) is not a label.
_WRAP = "\"'`*_ \t\r\n"


def learn_store_path(audit_path: str | Path) -> Path:
    """Where the learn store sits by default: beside the audit database, in its own file."""
    p = Path(audit_path)
    return p.with_name(p.stem + ".learn" + (p.suffix or ".db"))


# ---------------------------------------------------------------------- the frontier's label


def parse_label(answer: str, labels: Sequence[str]) -> str | None:
    """The task label `answer` names, or None. Strict: the whole answer is one label, compared
    without case, optionally quoted, emphasised, ending in a full stop, fenced, or given as JSON
    `{"label": ...}` or a JSON string. "build failure" or "It's a build error." is not a label."""
    s = answer.strip()
    fenced = _FENCE.match(s)
    if fenced:
        s = fenced.group(1).strip()
    if s[:1] in "{\"":
        try:
            value = json.loads(s)
        except ValueError:
            value = None
        if isinstance(value, dict):
            value = value.get("label")
        if isinstance(value, str):
            s = value
        elif value is not None or s.startswith("{"):
            return None
    s = s.strip(_WRAP)
    if s.endswith("."):
        s = s[:-1].strip(_WRAP)
    by_fold = {lbl.casefold(): lbl for lbl in labels}
    return by_fold.get(s.casefold())


# ---------------------------------------------------------------------- what the router hands over


@dataclass
class LearnCapture:
    """One frontier answer to a learning task, as the router saw it. `text` is the raw input:
    it lives only in memory until the writer thread has embedded (and, when kept, masked) it."""

    decision_id: str
    ts: float
    task_type: str
    labels: tuple[str, ...]
    frontier_text: str
    frontier_model: str | None
    reason: str | None
    hard_stop: str | None  # the hard-stop category that fired, if any
    local_label: str | None
    keep_inputs: bool
    retention_days: float
    text: str = field(repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)  # computed by the local model already
    embedding_identity: str | None = None
    # Computes (embedding, identity) when the local model did not; runs on the writer thread.
    embed: Callable[[], tuple[np.ndarray, str] | None] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class StoredExample:
    decision_id: str
    task_type: str
    ts: float
    label: str | None
    source: str
    reason: str | None
    hard_stop: str | None
    local_label: str | None
    input_sha256: str
    embedding_identity: str | None
    embedding: np.ndarray | None
    text: str | None


# ---------------------------------------------------------------------- the store

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS examples (
  decision_id TEXT PRIMARY KEY,
  task_type TEXT NOT NULL,
  ts REAL NOT NULL,              -- when the decision was made
  expires REAL NOT NULL,         -- ts + retention_days: the row is deleted after this
  label TEXT,                    -- the frontier's answer as a task label; NULL: it named none
  source TEXT NOT NULL,          -- frontier
  frontier_model TEXT,
  frontier_answer_sha256 TEXT,
  reason TEXT,                   -- why the decision left the local path
  hard_stop TEXT,                -- the hard-stop category that fired, if any
  local_label TEXT,
  input_sha256 TEXT NOT NULL,
  embedding_identity TEXT,       -- encoder and window that produced the embedding
  embedding BLOB,                -- 384 float32, little-endian
  text TEXT                      -- the masked input, only when the task keeps inputs
)""",
    "CREATE INDEX IF NOT EXISTS examples_task_ts ON examples (task_type, ts)",
    """CREATE TABLE IF NOT EXISTS learn_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts REAL NOT NULL,
  task_type TEXT NOT NULL,
  outcome TEXT NOT NULL,         -- promoted | candidate | rejected | too_little_data | failed
  head TEXT,                     -- the candidate head written, if any
  head_sha256 TEXT,
  message TEXT,
  detail TEXT                    -- JSON: the numbers
)""",
)
_COLUMNS = ("decision_id", "task_type", "ts", "expires", "label", "source", "frontier_model", "frontier_answer_sha256",
            "reason", "hard_stop", "local_label", "input_sha256", "embedding_identity", "embedding", "text")


class LearnStore(Protocol):
    """What learning needs from a store; SQLite here, another database behind the same methods."""

    def write(self, rows: list[dict[str, Any]]) -> None: ...
    def purge(self, task_type: str, now: float, retention_days: float) -> int: ...
    def examples(self, task_type: str) -> list[StoredExample]: ...
    def counts(self, task_type: str) -> dict[str, Any]: ...
    def labelled_since(self, task_type: str, ts: float) -> int: ...
    def record_run(self, task_type: str, outcome: str, *, head: str | None, head_sha256: str | None,
                   message: str, detail: Mapping[str, Any], ts: float | None = None) -> int: ...
    def runs(self, task_type: str, limit: int = 10) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


class SQLiteLearnStore:
    """One SQLite file in WAL mode: the service's writer thread and a `smallfirst learn` run in
    another process use it at the same time."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise FileNotFoundError(f"learn store {self.path} does not exist (nothing was kept yet, or another --learn-db)")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for stmt in SCHEMA:
                conn.execute(stmt)
            conn.commit()
            self._conn = conn
        return self._conn

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            try:
                return fn(self._connect())
            except sqlite3.Error:
                self._close()  # reopen next time: the file may have moved or come back
                raise

    def write(self, rows: list[dict[str, Any]]) -> None:
        sql = f"INSERT OR IGNORE INTO examples ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"

        def go(conn: sqlite3.Connection) -> None:
            with conn:
                conn.executemany(sql, [tuple(_sql_value(r.get(c)) for c in _COLUMNS) for r in rows])

        self._run(go)

    def purge(self, task_type: str, now: float, retention_days: float) -> int:
        """Delete the task's rows past their own expiry or older than the policy's retention now
        (a shortened retention applies to rows kept before it changed)."""

        def go(conn: sqlite3.Connection) -> int:
            with conn:
                cur = conn.execute("DELETE FROM examples WHERE task_type = ? AND (expires < ? OR ts < ?)",
                                   (task_type, now, now - retention_days * DAY_S))
            return cur.rowcount

        return int(self._run(go))

    def purge_all(self, now: float) -> int:
        def go(conn: sqlite3.Connection) -> int:
            with conn:
                return conn.execute("DELETE FROM examples WHERE expires < ?", (now,)).rowcount

        return int(self._run(go))

    def examples(self, task_type: str) -> list[StoredExample]:
        def go(conn: sqlite3.Connection) -> list[StoredExample]:
            rows = conn.execute(
                "SELECT decision_id, task_type, ts, label, source, reason, hard_stop, local_label, input_sha256,"
                " embedding_identity, embedding, text FROM examples WHERE task_type = ? ORDER BY ts, decision_id",
                (task_type,),
            ).fetchall()
            return [StoredExample(*r[:10], _vector(r[10]), r[11]) for r in rows]

        return list(self._run(go))

    def counts(self, task_type: str) -> dict[str, Any]:
        def go(conn: sqlite3.Connection) -> dict[str, Any]:
            row = conn.execute(
                "SELECT COUNT(*), SUM(label IS NOT NULL), SUM(label IS NULL), SUM(text IS NOT NULL),"
                " SUM(embedding IS NULL), MIN(ts), MAX(ts) FROM examples WHERE task_type = ?", (task_type,),
            ).fetchone()
            by_label = dict(conn.execute(
                "SELECT label, COUNT(*) FROM examples WHERE task_type = ? AND label IS NOT NULL GROUP BY label"
                " ORDER BY COUNT(*) DESC", (task_type,)).fetchall())
            return {"examples": row[0], "labelled": row[1] or 0, "invalid_label": row[2] or 0,
                    "with_text": row[3] or 0, "without_embedding": row[4] or 0, "oldest": row[5], "newest": row[6],
                    "by_label": by_label}

        return dict(self._run(go))

    def labelled_since(self, task_type: str, ts: float) -> int:
        def go(conn: sqlite3.Connection) -> int:
            return conn.execute("SELECT COUNT(*) FROM examples WHERE task_type = ? AND label IS NOT NULL AND ts > ?",
                                (task_type, ts)).fetchone()[0]

        return int(self._run(go))

    def record_run(self, task_type: str, outcome: str, *, head: str | None, head_sha256: str | None,
                   message: str, detail: Mapping[str, Any], ts: float | None = None) -> int:
        def go(conn: sqlite3.Connection) -> int:
            with conn:
                cur = conn.execute(
                    "INSERT INTO learn_runs (ts, task_type, outcome, head, head_sha256, message, detail)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (time.time() if ts is None else ts, task_type, outcome, head, head_sha256, message,
                     json.dumps(detail, separators=(",", ":"), default=str)),
                )
            return int(cur.lastrowid or 0)

        return int(self._run(go))

    def runs(self, task_type: str, limit: int = 10) -> list[dict[str, Any]]:
        def go(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = conn.execute("SELECT id, ts, task_type, outcome, head, head_sha256, message, detail FROM learn_runs"
                               " WHERE task_type = ? ORDER BY id DESC LIMIT ?", (task_type, limit))
            names = [c[0] for c in cur.description]
            out = [dict(zip(names, r)) for r in cur.fetchall()]
            for r in out:
                r["detail"] = json.loads(r["detail"]) if r["detail"] else {}
            return out

        return list(self._run(go))

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _sql_value(v: Any) -> Any:
    return v.astype("<f4").tobytes() if isinstance(v, np.ndarray) else v


def _vector(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype="<f4").astype(np.float32)


# ---------------------------------------------------------------------- the writer


@dataclass
class LearnStats:
    submitted: int = 0
    written: int = 0
    write_errors: int = 0
    spilled: int = 0
    replayed: int = 0
    lost: int = 0
    last_error: str | None = None
    # (task_type, state) -> count; state: kept (a label), invalid_label, no_embedding, failed
    examples: Counter[tuple[str, str]] = field(default_factory=Counter)


class LearnLog:
    """Asynchronous writer in front of a LearnStore: `submit()` is a queue put. The writer thread
    does the work a request must not wait for (label parsing, embedding, masking) and writes in
    batches; a failing store is retried, then spilled, never allowed to fail or slow a request.

    `on_written(task_types)` is called on the writer thread after rows of those tasks were
    stored with a label (the service's learn schedule listens)."""

    def __init__(
        self,
        store: LearnStore,
        *,
        spill_path: str | Path | None = None,
        batch_size: int = 64,
        flush_interval_s: float = 0.1,
        max_pending: int = 5000,
        on_written: Callable[[set[str]], None] | None = None,
    ):
        self.store = store
        self.spill_path = Path(spill_path) if spill_path else None
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.on_written = on_written
        self.stats = LearnStats()
        self._q: queue.Queue[Any] = queue.Queue()
        self._pending: list[dict[str, Any]] = []
        self._idle = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="smallfirst-learn", daemon=True)
        self._thread.start()

    @classmethod
    def sqlite(cls, path: str | Path, **kw: Any) -> "LearnLog":
        p = Path(path)
        return cls(SQLiteLearnStore(p), spill_path=p.with_name(p.name + ".spill.jsonl"), **kw)

    def submit(self, capture: LearnCapture) -> None:
        if self._closed:
            raise RuntimeError("learn log is closed")
        with self._idle:
            self._in_flight += 1
            self.stats.submitted += 1
        self._q.put(capture)

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until everything submitted so far is written (or spilled). True if it was."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 30.0) -> None:
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._q.put(_STOP)
        self._thread.join(timeout)
        if self._pending:
            n = len(self._pending)
            self._spill(self._pending)
            self._pending = []
            self._done(n)
        self.store.close()

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        backoff = 0.05
        self._replay_spill()
        while True:
            try:
                first = self._q.get(timeout=backoff if self._pending else None)
            except queue.Empty:
                first = None
            if first is _STOP:
                return
            batch = [] if first is None else [first]
            deadline = time.monotonic() + self.flush_interval_s
            while batch and len(batch) < self.batch_size:
                left = deadline - time.monotonic()
                try:
                    item = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._q.put(_STOP)
                    break
                batch.append(item)
            for cap in batch:
                try:
                    self._pending.append(self._row(cap))
                except Exception:  # a bug in preparing one row must not stop the writer
                    log.exception("learn: could not prepare decision %s", cap.decision_id)
                    self.stats.examples[(cap.task_type, "failed")] += 1
                    self._done(1)
            n = len(self._pending)
            tasks = {r["task_type"] for r in self._pending if r["label"] is not None}
            if self._write_pending():
                backoff = 0.05
                if tasks and self.on_written is not None:
                    try:  # before _done: whoever flushed sees a run this batch started
                        self.on_written(tasks)
                    except Exception:  # the schedule's problem must not stop the writer
                        log.exception("learn schedule callback failed")
                self._done(n)
            elif n > self.max_pending:
                self._spill(self._pending)
                self._pending = []
                self._done(n)
            else:
                backoff = min(backoff * 2, 2.0)

    def _row(self, cap: LearnCapture) -> dict[str, Any]:
        from smallfirst.redact import mask_secrets, sha256_text

        label = parse_label(cap.frontier_text, cap.labels)
        vec, identity = cap.embedding, cap.embedding_identity
        if vec is None and cap.embed is not None:
            try:
                got = cap.embed()
            except Exception as exc:  # kept without a vector; counted
                log.warning("learn: could not embed decision %s: %s", cap.decision_id, exc)
                got = None
            if got is not None:
                vec, identity = got
        state = "kept" if label is not None else "invalid_label"
        if label is not None and vec is None and not cap.keep_inputs:
            state = "no_embedding"  # nothing a head could be trained on; still counted and stored
        self.stats.examples[(cap.task_type, state)] += 1
        row = {
            "decision_id": cap.decision_id,
            "task_type": cap.task_type,
            "ts": cap.ts,
            "expires": cap.ts + cap.retention_days * DAY_S,
            "label": label,
            "source": "frontier",
            "frontier_model": cap.frontier_model,
            "frontier_answer_sha256": sha256_text(cap.frontier_text),
            "reason": cap.reason,
            "hard_stop": cap.hard_stop,
            "local_label": cap.local_label,
            "input_sha256": sha256_text(cap.text),
            "embedding_identity": identity if vec is not None else None,
            "embedding": None if vec is None else np.asarray(vec, dtype=np.float32),
            "text": mask_secrets(cap.text) if cap.keep_inputs else None,
        }
        cap.text = ""  # the raw input leaves memory with the capture
        return row

    def _write_pending(self) -> bool:
        try:
            self.store.write(self._pending)
        except Exception as exc:
            self.stats.write_errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.error("learn store write failed (%d examples kept for retry): %s", len(self._pending), exc)
            return False
        self.stats.written += len(self._pending)
        self._pending = []
        if self.spill_path and self.spill_path.exists():
            self._replay_spill()
        return True

    def _done(self, n: int) -> None:
        with self._idle:
            self._in_flight -= n
            self._idle.notify_all()

    def _spill(self, rows: list[dict[str, Any]]) -> None:
        import tempfile

        fallback = Path(tempfile.gettempdir()) / f"smallfirst-learn-spill-{os.getpid()}.jsonl"
        for target in (p for p in (self.spill_path, fallback) if p is not None):
            try:
                with open(target, "a", encoding="utf-8") as f:
                    for r in rows:
                        f.write(json.dumps(_spill_row(r), separators=(",", ":")) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                log.error("cannot spill learn examples to %s: %s", target, exc)
                continue
            self.stats.spilled += len(rows)
            log.error("learn store unreachable: %d examples spilled to %s", len(rows), target)
            return
        log.critical("learn store and spill files unreachable: %d examples lost", len(rows))
        self.stats.lost += len(rows)

    def _replay_spill(self) -> None:
        if not self.spill_path or not self.spill_path.exists():
            return
        try:
            rows = [_unspill_row(json.loads(line)) for line in self.spill_path.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
        except (OSError, ValueError) as exc:
            log.error("learn spill file %s unreadable: %s", self.spill_path, exc)
            return
        if rows:
            try:
                self.store.write(rows)  # INSERT OR IGNORE: replaying twice is harmless
            except Exception as exc:
                log.warning("spilled learn examples not replayed yet: %s", exc)
                return
            self.stats.replayed += len(rows)
            self.stats.written += len(rows)
        self.spill_path.unlink(missing_ok=True)


def _spill_row(r: dict[str, Any]) -> dict[str, Any]:
    v = r.get("embedding")
    return {**r, "embedding": None if v is None else base64.b64encode(np.asarray(v, "<f4").tobytes()).decode()}


def _unspill_row(r: dict[str, Any]) -> dict[str, Any]:
    v = r.get("embedding")
    return {**r, "embedding": None if v is None else np.frombuffer(base64.b64decode(v), dtype="<f4").copy()}


# ---------------------------------------------------------------------- metrics


class LearnCollector:
    """Prometheus view of a LearnLog: what became of each frontier answer, and the writer's health."""

    def __init__(self, learn: LearnLog, runs: Callable[[], Iterable[tuple[str, str, int]]] | None = None,
                 running: Callable[[], Iterable[str]] | None = None):
        self.learn = learn
        self.runs = runs
        self.running = running

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.learn.stats
        ex = CounterMetricFamily("smallfirst_learn_examples", "Frontier answers to learning tasks by what became of "
                                 "them: kept (a label), invalid_label (not one of the task's labels), no_embedding.",
                                 labels=["task_type", "state"])
        for (task, state), n in sorted(s.examples.items()):
            ex.add_metric([task, state], n)
        yield ex
        st = CounterMetricFamily("smallfirst_learn_store_records", "Learn store rows by what became of them.",
                                 labels=["state"])
        for state in ("submitted", "written", "spilled", "replayed", "lost"):
            st.add_metric([state], getattr(s, state))
        yield st
        err = CounterMetricFamily("smallfirst_learn_store_write_errors", "Failed learn store writes (retried).")
        err.add_metric([], s.write_errors)
        yield err
        if self.runs is not None:
            runs = CounterMetricFamily("smallfirst_learn_runs", "Learn runs by outcome.", labels=["task_type", "outcome"])
            for task, outcome, n in self.runs():
                runs.add_metric([task, outcome], n)
            yield runs
        if self.running is not None:
            g = GaugeMetricFamily("smallfirst_learn_running", "1 while a learn run for the task is in progress.",
                                  labels=["task_type"])
            for task in self.running():
                g.add_metric([task], 1)
            yield g

    def describe(self) -> Any:
        return iter(())
