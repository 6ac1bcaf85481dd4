"""The audit trail: one record per decision, written off the hot path, never raw secrets.

The router hands a record to `AuditLog.submit()`, which only enqueues it. A writer thread masks
every free-text field (`stored_row`: the preview, made from the raw input here, the hard-stop
excerpt, the checks' details, the error, the caller's task id), batches records and writes them
with one transaction per batch: to a SQLite file in WAL mode (the embedded default) or to
PostgreSQL shared by several replicas (`AuditLog.open("postgresql://...")`). If the store cannot
be written (disk full, file locked, server restarted or unreachable), records are kept and
retried; after a few seconds they are appended to a local spill file and replayed when the store
comes back. Inserts are idempotent by decision id, so a retried batch or a replayed spill never
duplicates a decision, and an unreachable store never silently drops one.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

from smallfirst.schema import COLUMNS, migrate, require_current

log = logging.getLogger("smallfirst.audit")

PREVIEW_CHARS = 240
_RETRY = object()
_CHUNK = 16  # rows per INSERT statement, between which the writer yields the GIL


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
    review_gold: str | None = None  # the task label a reviewer says is right (smallfirst.review)
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
        # Shallow, and one C-level copy: the nested values are fresh per record, so asdict's deep
        # copy (or a getattr per field) is wasted work on the writer thread.
        row = dict(self.__dict__)
        del row["preview_source"]
        return row


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
    target: str  # the store's path or URL

    def write_batch(self, rows: list[dict[str, Any]]) -> int | None: ...  # rows new to the store
    def close(self) -> None: ...


# Idempotent by decision id, in both databases: a batch retried after a commit whose answer was
# lost, or a spill file replayed twice, never duplicates a decision.
_INSERT = (f"INSERT INTO decisions ({', '.join(c for c, _ in COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
           " ON CONFLICT (decision_id) DO NOTHING")


@functools.lru_cache(maxsize=_CHUNK)
def _insert_rows(n: int) -> str:
    """One SQLite INSERT of n rows. sqlite3 releases the GIL around every statement it steps:
    executemany stepped (and gave the GIL away) once per row, this once per chunk, and costs a
    microsecond less a row on its own."""
    row = f"({', '.join('?' * len(COLUMNS))})"
    return (f"INSERT INTO decisions ({', '.join(_NAMES)}) VALUES {', '.join([row] * n)}"
            " ON CONFLICT (decision_id) DO NOTHING")


class SQLiteSink:
    """One SQLite file in WAL mode: readers (the CLI, the dashboard) never block the writer."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.target = str(self.path)
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            from smallfirst.store import connect_sqlite_for_writing

            conn = connect_sqlite_for_writing(self.path)
            ensure_schema(conn)
            self._conn = conn
        return self._conn

    def write_batch(self, rows: list[dict[str, Any]]) -> int:
        try:
            conn = self._connect()
            new = 0
            with conn:  # one transaction for the batch
                for i in range(0, len(rows), _CHUNK):
                    chunk = rows[i : i + _CHUNK]
                    new += conn.execute(_insert_rows(len(chunk)), [v for r in chunk for v in _encode(r)]).rowcount
                    _yield_gil()
            return new
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


class PostgresSink:
    """A PostgreSQL database shared by several replicas. The writer thread holds one connection
    of its own (not the pool's: a batch is one long transaction, and it reconnects on its own
    schedule after an outage)."""

    def __init__(self, url: str):
        from smallfirst.store import psycopg_module

        psycopg_module()  # a missing driver is an error now, not at the first decision
        self.target = url
        self._conn: Any = None

    def _connect(self) -> Any:
        if self._conn is None:
            from smallfirst.store import connect_postgres

            conn = connect_postgres(self.target)
            try:
                require_current(conn, self.target)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def write_batch(self, rows: list[dict[str, Any]]) -> int:
        try:
            conn = self._connect()
            encoded = []
            for i in range(0, len(rows), _CHUNK):
                encoded += [_encode(r) for r in rows[i : i + _CHUNK]]
                _yield_gil()
            with conn:
                return conn.executemany(_INSERT, encoded).rowcount  # one pipelined round trip
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already broken: nothing to release
                pass
            finally:
                self._conn = None


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the store's tables (smallfirst.schema)."""
    migrate(conn)


_JSON_AT = tuple(i for i, n in enumerate(_NAMES) if n in _JSON_COLUMNS)
_INTEGER_AT = tuple(i for i, (_, kind) in enumerate(COLUMNS) if kind.startswith("INTEGER"))
# One encoder for every row: json.dumps builds a new one per call when given any option.
_to_json = json.JSONEncoder(separators=(",", ":")).encode


def _encode(row: dict[str, Any]) -> tuple[Any, ...]:
    out = list(map(row.get, _NAMES))  # .get: a spill file written before a column existed replays NULL there
    for i in _JSON_AT:
        if out[i] is not None:
            out[i] = _to_json(out[i])
    for i in _INTEGER_AT:
        if out[i].__class__ is bool:
            out[i] = int(out[i])  # PostgreSQL, unlike SQLite, takes no boolean in an INTEGER column
    return tuple(out)


def decode_row(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    d = dict(row)
    for n in _JSON_COLUMNS:
        if isinstance(d.get(n), str):
            d[n] = json.loads(d[n])
    return d


class InFlight:
    """What a writer thread holds and `flush()` waits for: submitted, not yet written or spilled.
    The audit log and the learn log count the same way."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._n = 0

    def add(self, stats: Any) -> None:
        """One more in flight, counted in `stats.submitted` under the same lock."""
        with self._cond:
            self._n += 1
            stats.submitted += 1

    def done(self, n: int) -> None:
        with self._cond:
            self._n -= n
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Block until nothing is in flight; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._n > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


def spill_rows(rows: list[dict[str, Any]], path: Path | None, fallback_name: str, what: str, store: str,
               logger: logging.Logger = log) -> Path | None:
    """Append `rows` to the spill file at `path`; if that folder is the problem, to `fallback_name`
    in the temp dir. The file written, or None when neither could be (logged as lost)."""
    import tempfile

    fallback = Path(tempfile.gettempdir()) / fallback_name
    for target in (p for p in (path, fallback) if p is not None):
        try:
            SpillFile(target).append(rows)
        except OSError as exc:
            logger.error("cannot spill %s to %s: %s", what, target, exc)
            continue
        logger.error("%s unreachable: %d %s spilled to %s", store, len(rows), what, target)
        return target
    logger.critical("%s and spill files unreachable: %d %s lost", store, len(rows), what)
    return None


class SpillFile:
    """Records the store could not take, one JSON line each, fsynced. Several processes may
    share one file (replicas on one host): appends and the replay take an exclusive flock, and
    an appender that waited while the file was replayed and removed writes to a new one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists()

    def append(self, rows: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
        while True:
            with open(self.path, "a", encoding="utf-8") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                if not self._current(f):
                    continue
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                return

    def replay(self, write: Any, chunk: int) -> int:
        """Hand the spilled rows to `write` in chunks, then remove the file; the number replayed.
        If `write` raises, the file stays for the next try (rows already written are skipped
        then by the store's ON CONFLICT)."""
        try:
            f = open(self.path, "r", encoding="utf-8")
        except FileNotFoundError:
            return 0
        with f:
            fcntl.flock(f, fcntl.LOCK_EX)
            if not self._current(f):
                return 0  # another process replayed it while this one waited
            n, rows = 0, []
            for no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    self._reject(no, line)
                    continue
                if len(rows) >= chunk:
                    write(rows)
                    n, rows = n + len(rows), []
            if rows:
                write(rows)
                n += len(rows)
            self.path.unlink()
            return n

    def _current(self, f: Any) -> bool:
        try:
            return os.fstat(f.fileno()).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _reject(self, no: int, line: str) -> None:
        # A line torn by a crash mid-write: kept aside for a person, never silently dropped.
        bad = self.path.with_name(self.path.name + ".rejected")
        log.error("%s:%d: not a JSON record (a write cut short?); moved to %s", self.path, no, bad)
        with open(bad, "a", encoding="utf-8") as out:
            out.write(line if line.endswith("\n") else line + "\n")


@dataclass
class AuditStats:
    submitted: int = 0
    written: int = 0
    write_errors: int = 0
    spilled: int = 0
    replayed: int = 0
    lost: int = 0
    duplicates_ignored: int = 0  # rows the store already had (a retried or replayed batch)
    last_error: str | None = None
    spill_file: str | None = None


class AuditLog:
    """Asynchronous, batched, loss-averse writer in front of a sink.

    `submit()` costs a queue put. The writer thread wakes on the first record, gathers up to
    `batch_size` more for at most `flush_interval_s`, and writes them in one transaction. While
    the store fails, rows wait in memory and are retried with backoff; once they have waited
    `spill_after_s` (or more than `max_pending` wait) they go to the spill file, which is
    replayed as soon as the store answers again.
    """

    def __init__(
        self,
        sink: AuditSink,
        *,
        batch_size: int = 256,
        flush_interval_s: float = 0.05,
        max_pending: int = 10_000,
        spill_after_s: float = 5.0,
        spill_path: str | Path | None = None,
    ):
        self.sink = sink
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.spill_after_s = spill_after_s
        self.spill_path = Path(spill_path) if spill_path else None
        self._spill_file = SpillFile(self.spill_path) if self.spill_path else None
        self.stats = AuditStats()
        self._q: queue.SimpleQueue[AuditRecord | None] = queue.SimpleQueue()  # C, no Python-level locks
        self._pending: list[dict[str, Any]] = []  # rows that failed to write, retried first
        self._failing_since: float | None = None
        self._next_attempt = 0.0
        self._in_flight = InFlight()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="smallfirst-audit", daemon=True)
        self._thread.start()

    @classmethod
    def sqlite(cls, path: str | Path, **kw: Any) -> "AuditLog":
        p = Path(path)
        kw.setdefault("spill_path", p.with_name(p.name + ".spill.jsonl"))
        return cls(SQLiteSink(p), **kw)

    @classmethod
    def open(cls, target: str | Path, *, spill_path: str | Path | None = None, **kw: Any) -> "AuditLog":
        """The writer for a store target: a SQLite path, or a postgresql:// URL. A PostgreSQL
        store spills to `spill_path`, default $SMALLFIRST_SPILL or ./smallfirst-audit.spill.jsonl
        (replicas on one host may share it)."""
        from smallfirst.store import is_postgres

        if not is_postgres(target):
            return cls.sqlite(target, **({"spill_path": spill_path} if spill_path else {}), **kw)
        spill = spill_path or os.environ.get("SMALLFIRST_SPILL") or "smallfirst-audit.spill.jsonl"
        return cls(PostgresSink(str(target)), spill_path=Path(spill).absolute(), **kw)

    @property
    def target(self) -> str | None:
        return getattr(self.sink, "target", None)

    @property
    def failing(self) -> bool:
        """The store refused the last write; records wait in memory or in the spill file."""
        return self._failing_since is not None

    def submit(self, record: AuditRecord) -> None:
        if self._closed:
            raise RuntimeError("audit log is closed")
        self._in_flight.add(self.stats)
        self._q.put(record)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything submitted so far is written (or spilled). True if it was."""
        return self._in_flight.wait(timeout)

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
            # Rows waiting for a retry, or spilled rows to replay: wake up after the backoff
            # even if nothing new came.
            waiting = self._pending or (self._spill_file is not None and self._spill_file.exists())
            try:
                first = self._q.get(timeout=backoff if waiting else None)
            except queue.Empty:
                first = _RETRY
            if first is None:
                return
            batch = [] if first is _RETRY else [first]
            if batch:
                self._gather(batch)
            for i, rec in enumerate(batch, 1):
                self._pending.append(stored_row(rec))
                if i % _CHUNK == 0:
                    _yield_gil()
            now = time.monotonic()
            if now < self._next_attempt:
                pass  # the store failed a moment ago: gather rows, try again after the backoff
            elif not self._pending:
                backoff = 0.05 if self._replay_spill() else min(backoff * 2, 2.0)
                continue
            else:
                n = len(self._pending)
                if self._write_pending():
                    backoff = 0.05
                    self._done(n)
                    continue
                self._next_attempt = now + backoff
                backoff = min(backoff * 2, 2.0)
            if self._pending and (len(self._pending) > self.max_pending
                                  or now - (self._failing_since or now) >= self.spill_after_s):
                n = len(self._pending)
                self._spill(self._pending)
                self._pending = []
                self._done(n)

    def _gather(self, batch: list[AuditRecord]) -> None:
        """Add what arrives within flush_interval_s to `batch`, up to batch_size. The writer
        sleeps once, unless a full batch is already waiting, and then takes what came: a writer
        waiting on the queue is woken by every record, and one that looked every 5 ms took the
        GIL from the request thread 200 times a second, however few records came."""
        if self._q.qsize() < self.batch_size - len(batch):
            time.sleep(self.flush_interval_s)
        while len(batch) < self.batch_size:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._q.put(None)  # re-queue the stop marker for the outer loop
                return
            batch.append(item)

    def _write_pending(self) -> bool:
        try:
            new = self.sink.write_batch(self._pending)
        except Exception as exc:  # any sink failure: keep the rows, say so loudly
            self._failed(exc, f"audit store write failed ({len(self._pending)} records kept for retry)")
            return False
        n = len(self._pending)
        self.stats.written += n
        self.stats.duplicates_ignored += n - new if new is not None else 0
        self._pending = []
        self._failing_since = None
        self._replay_spill()
        return True

    def _failed(self, exc: Exception, what: str) -> None:
        self.stats.write_errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        log.error("%s: %s", what, str(exc).strip())

    def _done(self, n: int) -> None:
        self._in_flight.done(n)

    def _spill(self, rows: list[dict[str, Any]]) -> None:
        # The spill file sits beside the database; if that folder is the problem, the temp dir.
        target = spill_rows(rows, self.spill_path, f"smallfirst-audit-spill-{os.getpid()}.jsonl", "records", "audit store")
        if target is None:
            self.stats.lost += len(rows)
            return
        self.stats.spilled += len(rows)
        self.stats.spill_file = str(target)

    def _replay_spill(self) -> bool:
        """Replay the spill file if there is one; False when the store refused it."""
        if self._spill_file is None or not self._spill_file.exists():
            return True

        def write(rows: list[dict[str, Any]]) -> None:
            new = self.sink.write_batch(rows)
            self.stats.duplicates_ignored += len(rows) - new if new is not None else 0

        try:
            n = self._spill_file.replay(write, self.batch_size)
        except Exception as exc:
            self._failed(exc, "spilled audit records not replayed yet")
            return False
        self._failing_since = None
        if n:
            self.stats.replayed += n
            self.stats.written += n
            log.warning("replayed %d spilled audit records from %s", n, self._spill_file.path)
        return True


# ---------------------------------------------------------------------- reading


def open_readonly(target: str | Path) -> Any:
    """A reading connection to a store (smallfirst.store.connect): rows by column name. A SQLite
    path is opened read-only, so a typo'd path is an error rather than a new empty store."""
    from smallfirst.store import connect

    return connect(target)


def read_recent(path: str | Path, limit: int = 20, task_type: str | None = None) -> list[dict[str, Any]]:
    """Most recent decisions first."""
    conn = open_readonly(path)
    try:
        sql = "SELECT * FROM decisions"
        args: list[Any] = []
        if task_type:
            sql += " WHERE task_type = ?"
            args.append(task_type)
        sql += " ORDER BY ts DESC, decision_id DESC LIMIT ?"
        args.append(limit)
        return [decode_row(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


def iter_all(path: str | Path) -> Iterable[dict[str, Any]]:
    conn = open_readonly(path)
    try:
        for r in conn.execute("SELECT * FROM decisions ORDER BY ts, decision_id"):
            yield decode_row(r)
    finally:
        conn.close()
