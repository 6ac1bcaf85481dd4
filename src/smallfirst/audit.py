"""The audit trail: one record per decision, written off the hot path, never raw secrets.

The router hands a record to `AuditLog.submit()`, which only enqueues it. A writer thread masks
every free-text field (`stored_row`: the preview, made from the raw input here, the hard-stop
excerpt, the checks' details, the error, the caller's task id), batches records and writes them
with one transaction per batch (SQLite in WAL mode by default). If the store cannot be written (disk full, file locked, directory gone), records are
kept and retried; past a bound they are appended to a spill file beside the database and replayed
when the store comes back, so an unreachable store never silently drops a decision.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Protocol

log = logging.getLogger("smallfirst.audit")

PREVIEW_CHARS = 240
_RETRY = object()
_CHUNK = 16  # rows bound per executemany, between which the writer yields the GIL


def _yield_gil() -> None:
    """Let the request threads run. The writer's Python work (masking, encoding rows) holds the
    GIL; without this a waiting request can stall for the whole 5 ms switch interval, which
    showed up as a 5-10 ms p99 on an otherwise 0.3 ms decision (bench/overhead.py)."""
    time.sleep(0)
# How much of the input the writer thread reads to build the preview. Masking runs on this
# window, not on the full input, so a 1 MB input costs no more than a 1 kB one. The window never
# ends inside a token (preview_window), and a block that runs past it (a PEM key, a quoted value)
# is masked to the window's end.
PREVIEW_WINDOW = 1024


@dataclass
class AuditRecord:
    decision_id: str
    ts: float
    task_type: str | None
    mode: str  # live | shadow
    route: str  # local | frontier | rejected
    route_candidate: str | None
    reason: str | None  # a FallbackReason value
    task_id: str | None = None
    label: str | None = None
    hard_stop: dict[str, Any] | None = None  # {category, rule, excerpt (masked)}
    local_model: str | None = None
    local_model_sha256: str | None = None
    frontier_model: str | None = None
    confidence_raw: float | None = None
    confidence_calibrated: float | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)  # total, local, frontier
    tokens: dict[str, int] = field(default_factory=dict)  # local_in, local_out, frontier_in, frontier_out
    cost_usd: float = 0.0
    frontier_only_cost_usd: float = 0.0  # the counterfactual: what sending it to the frontier costs
    input_sha256: str = ""
    input_chars: int = 0
    preview: str = ""
    answer_sha256: str | None = None
    frontier_answer_sha256: str | None = None
    user_group: str | None = None
    policy_version: str | None = None
    outcome: str | None = None  # answered_local | answered_frontier | no_frontier | frontier_error | rejected
    error: str | None = None  # masked detail of a local or frontier failure
    review_label: str | None = None
    shadow_agree: bool | None = None  # shadow mode: local and frontier answers agree (smallfirst.shadow)
    # Shadow mode with a candidate local model (model rotation): what the candidate said and what
    # the gate would have done with it. It never changes what the caller gets.
    candidate_model: str | None = None
    candidate_model_sha256: str | None = None
    candidate_label: str | None = None
    candidate_confidence: float | None = None
    candidate_route: str | None = None  # local | frontier
    candidate_latency_ms: float | None = None
    # Raw text the writer thread turns into `preview`; never persisted.
    preview_source: str | None = field(default=None, repr=False)

    def to_row(self) -> dict[str, Any]:
        # Shallow: the nested values are fresh per record, so asdict's deep copy is wasted work.
        return {name: getattr(self, name) for name in _RECORD_FIELDS}


_RECORD_FIELDS = tuple(f.name for f in fields(AuditRecord) if f.name != "preview_source")

COLUMNS: tuple[tuple[str, str], ...] = (
    ("decision_id", "TEXT PRIMARY KEY"),
    ("ts", "REAL NOT NULL"),
    ("task_id", "TEXT"),
    ("task_type", "TEXT"),
    ("mode", "TEXT NOT NULL"),
    ("route", "TEXT NOT NULL"),
    ("route_candidate", "TEXT"),
    ("reason", "TEXT"),
    ("label", "TEXT"),
    ("hard_stop", "TEXT"),
    ("local_model", "TEXT"),
    ("local_model_sha256", "TEXT"),
    ("frontier_model", "TEXT"),
    ("confidence_raw", "REAL"),
    ("confidence_calibrated", "REAL"),
    ("checks", "TEXT"),
    ("latency_ms", "TEXT"),
    ("tokens", "TEXT"),
    ("cost_usd", "REAL"),
    ("frontier_only_cost_usd", "REAL"),
    ("input_sha256", "TEXT"),
    ("input_chars", "INTEGER"),
    ("preview", "TEXT"),
    ("answer_sha256", "TEXT"),
    ("frontier_answer_sha256", "TEXT"),
    ("user_group", "TEXT"),
    ("policy_version", "TEXT"),
    ("outcome", "TEXT"),
    ("error", "TEXT"),
    ("review_label", "TEXT"),
    ("shadow_agree", "INTEGER"),
    ("candidate_model", "TEXT"),
    ("candidate_model_sha256", "TEXT"),
    ("candidate_label", "TEXT"),
    ("candidate_confidence", "REAL"),
    ("candidate_route", "TEXT"),
    ("candidate_latency_ms", "REAL"),
)
_JSON_COLUMNS = {"hard_stop", "checks", "latency_ms", "tokens"}
_NAMES = [c for c, _ in COLUMNS]


def stored_row(rec: AuditRecord) -> dict[str, Any]:
    """The record as it may be stored: every free-text field masked, the preview made from the
    raw input. Secrets of the input also mask their fragments in an error message, which may
    quote the input as a model saw it (compressed, lines cut)."""
    from smallfirst.redact import mask_secrets, preview, secret_values

    row = rec.to_row()
    source, rec.preview_source = rec.preview_source, None
    if source is not None:
        row["preview"] = preview(preview_window(source), PREVIEW_CHARS)
    elif row["preview"]:
        row["preview"] = preview(row["preview"], PREVIEW_CHARS)
    # Fields cut from the input (the hard-stop excerpt) or quoting what the model saw of it are
    # masked against the input's secrets too: a window that starts mid-assignment shows a value
    # without its key, and a compressed line may end mid-token.
    quoting = rec.error or rec.hard_stop or any(not c.get("ok") and c.get("name") in _QUOTING_CHECKS for c in rec.checks)
    also = secret_values(source) if source and quoting else ()
    for name in ("error", "task_id", "label", "candidate_label"):  # labels are model output
        if row[name]:
            row[name] = mask_secrets(row[name], also=also)
    if row["checks"]:
        row["checks"] = [{**c, "detail": mask_secrets(c["detail"], also=also)} if c.get("detail") else c
                         for c in row["checks"]]
    if row["hard_stop"] and row["hard_stop"].get("excerpt"):
        row["hard_stop"] = {**row["hard_stop"], "excerpt": mask_secrets(row["hard_stop"]["excerpt"], also=also)}
    return row


# Checks whose detail may quote the local model's output (a label, a JSON value, a cited name),
# and so the input the model saw: their record is masked against the input's secrets too.
_QUOTING_CHECKS = frozenset(("local_call", "labels", "schema", "grounding"))
_DELIMITERS = " \t\r\n,;\"'<>(){}[]"
_BLANK = re.compile(r"\s")


def preview_window(text: str) -> str:
    """The start of `text` that the preview is made from: PREVIEW_WINDOW characters, moved to a
    blank or delimiter so the window never ends inside a token (a cut secret no longer looks
    like one): forward to the next blank if one is near, else back to the last delimiter."""
    if len(text) <= PREVIEW_WINDOW:
        return text
    blank = _BLANK.search(text, PREVIEW_WINDOW, 2 * PREVIEW_WINDOW)
    if blank is not None:
        return text[: blank.start()]
    cut = max(text.rfind(c, 0, PREVIEW_WINDOW) for c in _DELIMITERS)
    return text[: cut + 1] if cut >= 0 else text[:PREVIEW_WINDOW]


class AuditSink(Protocol):
    def write_batch(self, rows: list[dict[str, Any]]) -> None: ...
    def close(self) -> None: ...


class SQLiteSink:
    """One SQLite file in WAL mode: readers (the CLI, the dashboard) never block the writer."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
            ensure_schema(conn)
            self._conn = conn
        return self._conn

    def write_batch(self, rows: list[dict[str, Any]]) -> None:
        sql = f"INSERT OR IGNORE INTO decisions ({', '.join(_NAMES)}) VALUES ({', '.join('?' * len(_NAMES))})"
        try:
            conn = self._connect()
            with conn:  # one transaction for the batch
                for i in range(0, len(rows), _CHUNK):
                    conn.executemany(sql, [_encode(r) for r in rows[i : i + _CHUNK]])
                    _yield_gil()
        except sqlite3.Error:
            # Drop the connection so the next attempt reopens (the file may have moved or come back).
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def ensure_schema(conn: sqlite3.Connection) -> None:
    cols = ",\n  ".join(f"{n} {t}" for n, t in COLUMNS)
    conn.execute(f"CREATE TABLE IF NOT EXISTS decisions (\n  {cols}\n)")
    # Columns added since a database was created: old audit files keep working.
    have = {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
    for name, typ in COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE decisions ADD COLUMN {name} {typ}")
    conn.execute("CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts)")
    conn.execute("CREATE INDEX IF NOT EXISTS decisions_task ON decisions (task_type, ts)")
    conn.commit()


def _encode(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        # .get: a spill file written before a column existed replays with NULL there
        json.dumps(row[n], separators=(",", ":")) if n in _JSON_COLUMNS and row.get(n) is not None else row.get(n)
        for n in _NAMES
    )


def decode_row(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    d = dict(row)
    for n in _JSON_COLUMNS:
        if isinstance(d.get(n), str):
            d[n] = json.loads(d[n])
    return d


@dataclass
class AuditStats:
    submitted: int = 0
    written: int = 0
    write_errors: int = 0
    spilled: int = 0
    replayed: int = 0
    lost: int = 0
    last_error: str | None = None
    spill_file: str | None = None


class AuditLog:
    """Asynchronous, batched, loss-averse writer in front of a sink.

    `submit()` costs a queue put. The writer thread wakes on the first record, gathers up to
    `batch_size` more for at most `flush_interval_s`, and writes them in one transaction.
    """

    def __init__(
        self,
        sink: AuditSink,
        *,
        batch_size: int = 256,
        flush_interval_s: float = 0.05,
        max_pending: int = 10_000,
        spill_path: str | Path | None = None,
    ):
        self.sink = sink
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.spill_path = Path(spill_path) if spill_path else None
        self.stats = AuditStats()
        self._q: queue.Queue[AuditRecord | None] = queue.Queue()
        self._pending: list[dict[str, Any]] = []  # rows that failed to write, retried first
        self._idle = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="smallfirst-audit", daemon=True)
        self._thread.start()

    @classmethod
    def sqlite(cls, path: str | Path, **kw: Any) -> "AuditLog":
        p = Path(path)
        return cls(SQLiteSink(p), spill_path=p.with_name(p.name + ".spill.jsonl"), **kw)

    def submit(self, record: AuditRecord) -> None:
        if self._closed:
            raise RuntimeError("audit log is closed")
        with self._idle:
            self._in_flight += 1
            self.stats.submitted += 1
        self._q.put(record)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything submitted so far is written (or spilled). True if it was."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._q.put(None)
        self._thread.join(timeout)
        if self._pending:
            n = len(self._pending)
            self._spill(self._pending)
            self._pending = []
            self._done(n)
        self.sink.close()

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        backoff = 0.05
        self._replay_spill()
        while True:
            try:
                # With rows waiting for a retry, wake up after the backoff even if nothing new came.
                first = self._q.get(timeout=backoff if self._pending else None)
            except queue.Empty:
                first = _RETRY
            if first is None:
                return
            batch = [] if first is _RETRY else [first]
            deadline = time.monotonic() + self.flush_interval_s
            while batch and len(batch) < self.batch_size:
                left = deadline - time.monotonic()
                try:
                    item = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._q.put(None)  # re-queue the stop marker for the outer loop
                    break
                batch.append(item)
            for rec in batch:
                self._pending.append(stored_row(rec))
                _yield_gil()
            n = len(self._pending)
            if self._write_pending():
                backoff = 0.05
                self._done(n)
            elif n > self.max_pending:
                self._spill(self._pending)
                self._pending = []
                self._done(n)
            else:
                backoff = min(backoff * 2, 2.0)

    def _write_pending(self) -> bool:
        try:
            self.sink.write_batch(self._pending)
        except Exception as exc:  # any sink failure: keep the rows, say so loudly
            self.stats.write_errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.error("audit store write failed (%d records kept for retry): %s", len(self._pending), exc)
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

        # The spill file sits beside the database; if that folder is the problem, use the temp dir.
        fallback = Path(tempfile.gettempdir()) / f"smallfirst-audit-spill-{os.getpid()}.jsonl"
        for target in (p for p in (self.spill_path, fallback) if p is not None):
            try:
                with open(target, "a", encoding="utf-8") as f:
                    for r in rows:
                        f.write(json.dumps(r, separators=(",", ":")) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                log.error("cannot spill audit records to %s: %s", target, exc)
                continue
            self.stats.spilled += len(rows)
            self.stats.spill_file = str(target)
            log.error("audit store unreachable: %d records spilled to %s", len(rows), target)
            return
        log.critical("audit store and spill files unreachable: %d records lost", len(rows))
        self.stats.lost += len(rows)

    def _replay_spill(self) -> None:
        if not self.spill_path or not self.spill_path.exists():
            return
        rows = [json.loads(line) for line in self.spill_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not rows:
            self.spill_path.unlink(missing_ok=True)
            return
        try:
            self.sink.write_batch(rows)  # INSERT OR IGNORE: replaying twice is harmless
        except Exception as exc:
            log.warning("spilled audit records not replayed yet: %s", exc)
            return
        self.spill_path.unlink(missing_ok=True)
        self.stats.replayed += len(rows)
        self.stats.written += len(rows)


# ---------------------------------------------------------------------- reading


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection with rows by column name. Read-only, so a typo'd path is an error
    rather than a new empty store."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"audit database {p} does not exist")
    conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5.0)
    conn.row_factory = sqlite3.Row
    return conn


def read_recent(path: str | Path, limit: int = 20, task_type: str | None = None) -> list[dict[str, Any]]:
    """Most recent decisions first."""
    conn = open_readonly(path)
    try:
        sql = "SELECT * FROM decisions"
        args: list[Any] = []
        if task_type:
            sql += " WHERE task_type = ?"
            args.append(task_type)
        sql += " ORDER BY ts DESC LIMIT ?"
        args.append(limit)
        return [decode_row(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


def iter_all(path: str | Path) -> Iterable[dict[str, Any]]:
    conn = open_readonly(path)
    try:
        for r in conn.execute("SELECT * FROM decisions ORDER BY ts"):
            yield decode_row(r)
    finally:
        conn.close()
