"""Where the audit trail, admin events, reviews and shared flags live, behind one small interface.

A *store target* is what `--audit` names: a SQLite file path (the embedded default) or a
`postgresql://` URL (the shared store for several replicas). `connect(target)` returns a
connection with the sqlite3 API the readers are written against, on either:

    conn.execute(sql, params)   `?` or `:name` placeholders; rows by index and by column name
    with conn: ...              one transaction, committed on success, rolled back on error
    conn.dialect                the few expressions the two databases spell differently

Queries are written once, in the SQL both databases share (COUNT(*) FILTER, ON CONFLICT DO
NOTHING, TRUE); the dialect covers the rest (JSON fields, flooring, temp tables, columns).

PostgreSQL connections come from one small psycopg pool per URL and process. The service never
waits on them on a request: decisions go through the audit writer thread (its own connection),
and admin calls, dashboard reads and the shared-flag poll run in worker threads.
"""

from __future__ import annotations

import atexit
import re
import sqlite3
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
INSTALL_HINT = "PostgreSQL support needs psycopg: pip install 'smallfirst[postgres]'"
# A dead server must not hold a worker thread for the TCP default (minutes).
CONNECT_TIMEOUT_S = 3


class StoreError(Exception):
    """The store cannot be used as asked (missing driver, schema behind the code, bad target)."""


def is_postgres(target: str | Path | None) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def describe(target: str | Path) -> str:
    """The target for logs and banners: a URL's password masked."""
    if not is_postgres(target):
        return str(target)
    parts = urlsplit(str(target))
    if parts.password is None:
        return str(target)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# ---------------------------------------------------------------------- dialects


@dataclass(frozen=True)
class Dialect:
    name: str  # sqlite | postgresql

    @property
    def postgres(self) -> bool:
        return self.name == "postgresql"

    def json_number(self, column: str, key: str) -> str:
        """A numeric field of a JSON object stored as text, NULL when absent."""
        if self.postgres:
            return f"(({column})::jsonb ->> '{key}')::double precision"
        return f"json_extract({column}, '$.{key}')"

    def floor(self, expr: str) -> str:
        # CAST AS INTEGER truncates in SQLite but rounds in PostgreSQL.
        return f"FLOOR({expr})" if self.postgres else f"CAST({expr} AS INTEGER)"

    def temp_table(self, name: str) -> str:
        return f"pg_temp.{name}" if self.postgres else f"temp.{name}"

    def sql_type(self, sqlite_type: str) -> str:
        """A column type as written for SQLite, in this dialect. SQLite's REAL is 8 bytes;
        PostgreSQL's is 4 (a Unix time in float4 is off by minutes). PostgreSQL has no BLOB."""
        if not self.postgres:
            return sqlite_type
        return re.sub(r"\bBLOB\b", "BYTEA", re.sub(r"\bREAL\b", "DOUBLE PRECISION", sqlite_type))

    def columns(self, conn: Any, table: str) -> set[str]:
        if self.postgres:
            rows = conn.execute("SELECT column_name FROM information_schema.columns"
                                " WHERE table_schema = current_schema() AND table_name = ?", (table,))
            return {r[0] for r in rows}
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}

    def has_table(self, conn: Any, table: str) -> bool:
        if self.postgres:
            return conn.execute("SELECT to_regclass(?) IS NOT NULL", (table,)).fetchone()[0]
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None


SQLITE = Dialect("sqlite")
POSTGRES = Dialect("postgresql")


def dialect_of(conn: Any) -> Dialect:
    return getattr(conn, "dialect", SQLITE)


# ---------------------------------------------------------------------- connecting


class SQLiteConnection(sqlite3.Connection):
    """sqlite3's own connection, which already has the interface; it only names its dialect."""

    dialect = SQLITE


def connect(target: str | Path, *, write: bool = False) -> Any:
    """A connection to an existing store. SQLite: read-only unless `write`, so a typo'd path is
    an error rather than a new empty store. PostgreSQL: from the URL's pool."""
    if is_postgres(target):
        return _pool(str(target)).connection()
    p = Path(target)
    if not p.exists():
        raise FileNotFoundError(f"audit database {p} does not exist")
    uri = f"file:{p}" if write else f"file:{p}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=5.0, factory=SQLiteConnection)
    conn.row_factory = sqlite3.Row
    return conn


def connect_sqlite_for_writing(path: str | Path) -> SQLiteConnection:
    """Open (creating it) the embedded store in WAL mode: readers never block the writer."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(p, timeout=5.0, check_same_thread=False, factory=SQLiteConnection)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
    conn.row_factory = sqlite3.Row
    return conn  # type: ignore[return-value]


def psycopg_module() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError(INSTALL_HINT) from None
    return psycopg


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """The failures that mean the store cannot be reached now (server down, restarting, network,
    no pooled connection in time), not that a query is wrong: PostgreSQL's only."""
    try:
        import psycopg
    except ImportError:
        return ()
    return (psycopg.OperationalError, psycopg.InterfaceError)  # the pool's PoolTimeout is an OperationalError


def connect_postgres(url: str, *, autocommit: bool = False) -> "PgConnection":
    """One connection of its own, outside any pool (the audit writer thread holds one)."""
    psycopg = psycopg_module()
    raw = psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)
    _configure(raw)
    return PgConnection(raw, release=raw.close)


def _configure(raw: Any) -> None:
    from psycopg.types.numeric import FloatLoader

    # AVG and SUM of integers are NUMERIC in PostgreSQL; the readers expect floats, as SQLite gives.
    raw.adapters.register_loader("numeric", FloatLoader)
    raw.row_factory = _row_factory


@lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type:
    index = {n: i for i, n in enumerate(names)}

    class Row(tuple):  # like sqlite3.Row: r[0], r["name"], dict(r), unpacking
        __slots__ = ()

        def __getitem__(self, key: Any) -> Any:
            return tuple.__getitem__(self, index[key] if isinstance(key, str) else key)

        def keys(self) -> list[str]:
            return list(names)

    return Row


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    return _row_class(tuple(c.name for c in cursor.description or ()))


@lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """sqlite3 placeholders (`?`, `:name`) as psycopg's (`%s`, `%(name)s`); literal `%` doubled.
    Quoted strings and `::` casts are left alone."""
    out: list[str] = []
    for m in re.finditer(r"'(?:[^']|'')*'|\"[^\"]*\"|::|\?|(?<![:\w]):([A-Za-z_]\w*)|%|[^'\"?:%]+|.", sql, re.S):
        tok = m.group(0)
        if tok.startswith(("'", '"')):
            out.append(tok.replace("%", "%%"))
        elif tok == "?":
            out.append("%s")
        elif m.group(1):
            out.append(f"%({m.group(1)})s")
        elif tok == "%":
            out.append("%%")
        else:
            out.append(tok)
    return "".join(out)


class PgConnection:
    """A psycopg connection behind the sqlite3 interface (see the module docstring)."""

    dialect = POSTGRES

    def __init__(self, raw: Any, release: Callable[[], None]):
        self.raw = raw
        self._release = release
        self._closed = False

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        # Always pass params, even empty: psycopg then un-doubles the `%%` translate() wrote.
        return self.raw.cursor().execute(translate(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cur = self.raw.cursor()
        cur.executemany(translate(sql), rows)
        return cur

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        self.raw.rollback()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if not self.raw.closed and self.raw.info.transaction_status != 0:  # not IDLE
                self.raw.rollback()  # as sqlite3's close(): what was not committed is dropped
        except Exception:  # a broken connection: the pool or the caller discards it
            pass
        self._release()

    def __enter__(self) -> "PgConnection":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        # As sqlite3's `with conn`: the transaction ends here; the connection stays open.
        if exc_type is None:
            self.raw.commit()
        else:
            self.raw.rollback()


class _Pool:
    """A small psycopg pool per URL; a connection is health-checked when taken, so one broken
    by a server restart is replaced rather than handed out."""

    def __init__(self, url: str):
        psycopg_module()
        from psycopg_pool import ConnectionPool

        self.pool = ConnectionPool(
            url, min_size=1, max_size=4, timeout=CONNECT_TIMEOUT_S + 2, open=True,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S}, configure=_configure,
            check=ConnectionPool.check_connection, name="smallfirst-store",
            # Try again soon after an outage; the default backoff waits minutes.
            reconnect_timeout=0,
        )

    def connection(self) -> PgConnection:
        raw = self.pool.getconn()
        return PgConnection(raw, release=lambda: self.pool.putconn(raw))

    def close(self) -> None:
        self.pool.close(timeout=2)


_pools: dict[str, _Pool] = {}
_pools_lock = threading.Lock()


def _pool(url: str) -> _Pool:
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None:
            pool = _pools[url] = _Pool(url)
        return pool


@atexit.register
def close_pools() -> None:
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for p in pools:
        p.close()
