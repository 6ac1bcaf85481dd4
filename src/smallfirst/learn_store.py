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
still give it the right label.

Where it is (`learn_store_target`): the learn_ tables of the PostgreSQL database that holds the
audit, or with a SQLite audit file a SQLite file of its own beside it; the same tables, migrations
(schema.py) and queries either way. If it cannot be written, rows are retried, then spilled
(audit.SpillFile) and replayed when it is back; requests never wait for it and never fail
because of it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from smallfirst.audit import InFlight, SpillFile, spill_rows

log = logging.getLogger("smallfirst.learn")

DAY_S = 86400.0
_STOP = object()
_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.S)
# What may surround a label in a strict answer: quotes, markdown emphasis or code marks, and a
# final full stop. Anything else (a sentence, a second word) is not a label.
_WRAP = "\"'`*_ \t\r\n"


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
    # The input's hashed word counts (lexical.py), for heads that read words; computed on the
    # writer thread when the local model did not.
    words: Mapping[int, float] | None = field(default=None, repr=False)
    count_words: Callable[[], Mapping[int, float]] | None = field(default=None, repr=False)


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
    words: dict[int, float] | None = None


# ---------------------------------------------------------------------- the store

_COLUMNS = ("decision_id", "task_type", "ts", "expires", "label", "source", "frontier_model", "frontier_answer_sha256",
            "reason", "hard_stop", "local_label", "input_sha256", "embedding_identity", "embedding", "text", "words")
# Idempotent by decision id, as the audit: a batch retried after a lost commit answer, or a spill
# file replayed twice, never keeps an example twice.
_INSERT = (f"INSERT INTO learn_examples ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
           " ON CONFLICT (decision_id) DO NOTHING")


def learn_store_target(audit: str | Path | None, learn_db: str | Path | None = None) -> str | None:
    """Where the learn store is: `learn_db` when one is named (a SQLite file or a postgresql://
    URL); with a PostgreSQL audit store, that database (its learn_ tables, beside the decisions,
    admin events and reviews every replica shares); with a SQLite audit file, a file of its own
    beside it, `<audit>.learn.db`, so the audit file, which is copied around for dashboards and
    reviews, holds no kept inputs or embeddings."""
    from smallfirst.store import is_postgres

    if learn_db:
        return str(learn_db)
    if audit is None or is_postgres(audit):
        return audit  # type: ignore[return-value]
    p = Path(audit)
    return str(p.with_name(p.stem + ".learn" + (p.suffix or ".db")))


class LearnStore:
    """The learn store's tables (schema migration 3) in a store target, SQLite or PostgreSQL,
    through the same queries: each method is one short transaction on a connection from
    schema.open_for_writing. The service's writer thread and a `smallfirst learn` run in another
    process use it at the same time (SQLite: WAL; PostgreSQL: a pool per process).

    A SQLite file is created and migrated on first use, unless `create` is off (a typo'd
    `--learn-db` is then an error, not a new empty store). A PostgreSQL store behind the code is
    refused with the `smallfirst migrate` command to run, as the audit writer refuses it."""

    def __init__(self, target: str | Path, *, create: bool = True):
        from smallfirst.store import is_postgres

        self.target = str(target)
        self.postgres = is_postgres(self.target)
        if not create and not self.postgres and not Path(self.target).exists():
            raise FileNotFoundError(f"learn store {self.target} does not exist (nothing was kept yet, or another --learn-db)")
        self._checked = not self.postgres

    def _tx(self, fn: Callable[[Any], Any]) -> Any:
        from smallfirst.schema import open_for_writing, require_current

        conn = open_for_writing(self.target)
        try:
            if not self._checked:
                require_current(conn, self.target)
                self._checked = True
            with conn:
                return fn(conn)
        finally:
            conn.close()

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._tx(lambda conn: conn.executemany(_INSERT, [tuple(_sql_value(r.get(c)) for c in _COLUMNS) for r in rows]))

    def purge(self, task_type: str, now: float, retention_days: float) -> int:
        """Delete the task's rows past their own expiry or older than the policy's retention now
        (a shortened retention applies to rows kept before it changed)."""
        return int(self._tx(lambda conn: conn.execute(
            "DELETE FROM learn_examples WHERE task_type = ? AND (expires < ? OR ts < ?)",
            (task_type, now, now - retention_days * DAY_S)).rowcount))

    def examples(self, task_type: str) -> list[StoredExample]:
        rows = self._tx(lambda conn: conn.execute(
            "SELECT decision_id, task_type, ts, label, source, reason, hard_stop, local_label, input_sha256,"
            " embedding_identity, embedding, text, words FROM learn_examples WHERE task_type = ?"
            " ORDER BY ts, decision_id", (task_type,)).fetchall())
        return [StoredExample(*r[:10], _vector(r[10]), r[11], _words(r[12])) for r in rows]

    def counts(self, task_type: str) -> dict[str, Any]:
        def go(conn: Any) -> dict[str, Any]:
            row = conn.execute(
                "SELECT COUNT(*), COUNT(label), COUNT(*) FILTER (WHERE label IS NULL), COUNT(text),"
                " COUNT(*) FILTER (WHERE embedding IS NULL), MIN(ts), MAX(ts) FROM learn_examples WHERE task_type = ?",
                (task_type,)).fetchone()
            by_label = {r[0]: r[1] for r in conn.execute(
                "SELECT label, COUNT(*) FROM learn_examples WHERE task_type = ? AND label IS NOT NULL GROUP BY label"
                " ORDER BY COUNT(*) DESC, label", (task_type,))}
            return {"examples": row[0], "labelled": row[1], "invalid_label": row[2], "with_text": row[3],
                    "without_embedding": row[4], "oldest": row[5], "newest": row[6], "by_label": by_label}

        return dict(self._tx(go))

    def labelled_since(self, task_type: str, ts: float) -> int:
        return int(self._tx(lambda conn: conn.execute(
            "SELECT COUNT(*) FROM learn_examples WHERE task_type = ? AND label IS NOT NULL AND ts > ?",
            (task_type, ts)).fetchone()[0]))

    def record_run(self, task_type: str, outcome: str, *, head: str | None, head_sha256: str | None,
                   message: str, detail: Mapping[str, Any], ts: float | None = None) -> int:
        """One learn run, whatever its outcome. Its message and numbers are masked as the audit
        masks free text: they may quote a path, an error, or the command line that ran it."""
        from smallfirst.redact import mask_secrets, mask_strings

        return int(self._tx(lambda conn: conn.execute(
            "INSERT INTO learn_runs (ts, task_type, outcome, head, head_sha256, message, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (time.time() if ts is None else ts, task_type, outcome, head, head_sha256, mask_secrets(message),
             json.dumps(mask_strings(detail), separators=(",", ":"), default=str))).fetchone()[0]))

    def runs(self, task_type: str, limit: int = 10) -> list[dict[str, Any]]:
        rows = self._tx(lambda conn: conn.execute(
            "SELECT id, ts, task_type, outcome, head, head_sha256, message, detail FROM learn_runs"
            " WHERE task_type = ? ORDER BY id DESC LIMIT ?", (task_type, limit)).fetchall())
        return [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else {}} for r in rows]

    def close(self) -> None:
        """Nothing held between calls; PostgreSQL's pool closes with the process."""


def _sql_value(v: Any) -> Any:
    return v.astype("<f4").tobytes() if isinstance(v, np.ndarray) else v


def _vector(blob: bytes | memoryview | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32)


def _words(text: str | None) -> dict[int, float] | None:
    return None if text is None else {int(k): float(v) for k, v in json.loads(text).items()}


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
        self._in_flight = InFlight()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="smallfirst-learn", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, target: str | Path, *, spill_path: str | Path | None = None, **kw: Any) -> "LearnLog":
        """The writer for a store target (a SQLite path or a postgresql:// URL). Spilled rows go
        to `spill_path`, by default `<file>.spill.jsonl` beside a SQLite store and
        ./smallfirst-learn.spill.jsonl for PostgreSQL (replicas on one host may share it)."""
        from smallfirst.store import is_postgres

        if spill_path is None:
            spill_path = ("smallfirst-learn.spill.jsonl" if is_postgres(target)
                          else Path(target).with_name(Path(target).name + ".spill.jsonl"))
        return cls(LearnStore(target), spill_path=Path(spill_path).absolute(), **kw)

    @property
    def target(self) -> str | None:
        return getattr(self.store, "target", None)

    def submit(self, capture: LearnCapture) -> None:
        if self._closed:
            raise RuntimeError("learn log is closed")
        self._in_flight.add(self.stats)
        self._q.put(capture)

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until everything submitted so far is written (or spilled). True if it was."""
        return self._in_flight.wait(timeout)

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
        """The capture as it may be stored: every free-text field masked as the audit masks it.
        The input's secrets also mask their fragments in the local label, which is model output
        and may quote the input as the model saw it (compressed, lines cut)."""
        from smallfirst.redact import mask_collect, mask_secrets, sha256_text

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
        words = cap.words
        if words is None and cap.count_words is not None:
            try:
                words = cap.count_words()
            except Exception as exc:  # kept without them; a head that reads words cannot use it
                log.warning("learn: could not count the words of decision %s: %s", cap.decision_id, exc)
        state = "kept" if label is not None else "invalid_label"
        if label is not None and vec is None and not cap.keep_inputs:
            state = "no_embedding"  # nothing a head could be trained on; still counted and stored
        self.stats.examples[(cap.task_type, state)] += 1
        masked, secrets = mask_collect(cap.text) if cap.keep_inputs or cap.local_label else (None, ())
        row = {
            "decision_id": cap.decision_id,
            "task_type": cap.task_type,
            "ts": cap.ts,
            "expires": cap.ts + cap.retention_days * DAY_S,
            "label": label,
            "source": "frontier",
            "frontier_model": mask_secrets(cap.frontier_model) if cap.frontier_model else None,
            "frontier_answer_sha256": sha256_text(cap.frontier_text),
            "reason": cap.reason,
            "hard_stop": cap.hard_stop,
            "local_label": mask_secrets(cap.local_label, also=secrets) if cap.local_label else None,
            "input_sha256": sha256_text(cap.text),
            "embedding_identity": identity if vec is not None else None,
            "embedding": None if vec is None else np.asarray(vec, dtype=np.float32),
            "text": masked if cap.keep_inputs else None,
            "words": None if words is None else json.dumps({str(k): round(float(v), 4) for k, v in words.items()},
                                                           separators=(",", ":")),
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
        self._in_flight.done(n)

    def _spill(self, rows: list[dict[str, Any]]) -> None:
        # Beside the store, as the audit's; if that folder is the problem, the temp dir.
        target = spill_rows([_spill_row(r) for r in rows], self.spill_path,
                            f"smallfirst-learn-spill-{os.getpid()}.jsonl", "examples", "learn store", log)
        if target is None:
            self.stats.lost += len(rows)
        else:
            self.stats.spilled += len(rows)

    def _replay_spill(self) -> None:
        if not self.spill_path or not self.spill_path.exists():
            return
        try:
            # ON CONFLICT DO NOTHING: rows written before a failed chunk are skipped next time.
            n = SpillFile(self.spill_path).replay(lambda rows: self.store.write([_unspill_row(r) for r in rows]),
                                                  self.batch_size)
        except Exception as exc:
            log.warning("spilled learn examples not replayed yet: %s", exc)
            return
        self.stats.replayed += n
        self.stats.written += n


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
