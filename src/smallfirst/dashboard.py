"""The operator dashboard's numbers, aggregated in SQL over the audit store.

Six metrics per task type over a window (last hour / day / week / all), in the words used
everywhere else (route_candidate, reason, review_label, outcome):

    local acceptance rate   decisions whose route_candidate is local, among those not rejected
                            (the same ratio as smallfirst_local_acceptance_ratio in /metrics)
    escalation rate         decisions whose route_candidate is frontier (a FallbackReason), same base
    failure reasons         decisions per FallbackReason
    local defect rate       review_label 'escalate' among reviewed locally answered decisions
    frontier latency        p50 / p95 of latency_ms.frontier over frontier-answered decisions
    cost per success        spend divided by decisions that got an answer, beside what the same
                            decisions would have cost sent to the frontier (frontier_only_cost_usd)

Everything is counted in SQL (GROUP BY, the same queries on SQLite and PostgreSQL); Python only
ranks percentiles and shapes the few result rows, so a page over 100,000 decisions costs a
handful of queries.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from smallfirst.audit import decode_row
from smallfirst.store import connect as _connect
from smallfirst.store import dialect_of

WINDOWS: dict[str, float | None] = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0, "all": None}
ALL = "*"  # the task_type key of the totals, as in /metrics
SUCCESS_OUTCOMES = ("answered_local", "answered_frontier")
# Time-series buckets per window; 'all' picks the smallest of these that gives at most MAX_BUCKETS.
_BUCKET_S = {"hour": 300, "day": 3600, "week": 86400}
_ALL_BUCKETS = (3600, 86400, 7 * 86400, 30 * 86400)
MAX_BUCKETS = 60
# A task type absent from the record is grouped under the name /metrics gives it.
_TASK = "COALESCE(task_type, 'unknown')"
EXPLORER_COLUMNS = ("decision_id", "ts", "task_type", "mode", "route", "route_candidate", "reason", "label",
                    "hard_stop", "local_model", "frontier_model", "confidence_calibrated", "checks", "latency_ms",
                    "cost_usd", "frontier_only_cost_usd", "preview", "user_group", "outcome", "review_label")


@dataclass(frozen=True)
class TaskMetrics:
    task_type: str
    decisions: int  # not rejected: the base of both rates
    rejected: int
    accepted_local: int
    escalated: int
    acceptance_rate: float | None
    escalation_rate: float | None
    reasons: dict[str, int]
    reviewed_local: int
    defects: int
    defect_rate: float | None  # None: no reviews yet
    frontier_answers: int
    frontier_p50_ms: float | None
    frontier_p95_ms: float | None
    successful: int
    cost_usd: float
    frontier_only_cost_usd: float
    cost_per_success_usd: float | None
    frontier_only_cost_per_success_usd: float | None


@dataclass(frozen=True)
class Bucket:
    start: float
    decisions: int
    accepted_local: int
    escalated: int
    cost_usd: float
    frontier_only_cost_usd: float


@dataclass(frozen=True)
class TierLatency:
    tier: str  # local | frontier
    count: int
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class Summary:
    window: str
    since: float | None
    now: float
    routes: dict[str, int]  # decisions by route, as smallfirst_requests_total counts them
    total: TaskMetrics
    tasks: list[TaskMetrics]
    bucket_s: int
    series: list[Bucket]
    latency: list[TierLatency]
    reasons: list[str] = field(default_factory=list)  # every reason seen, most frequent first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def connect(target: str | Path, *, write: bool = False) -> Any:
    """A SQLite path read-only unless `write`, so a typo'd path errors instead of creating an
    empty store; or a postgresql:// URL (smallfirst.store)."""
    return _connect(target, write=write)


def since_for(window: str, now: float) -> float | None:
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; one of {', '.join(WINDOWS)}")
    span = WINDOWS[window]
    return None if span is None else now - span


def summary(conn: Any, window: str = "day", now: float | None = None) -> Summary:
    now = time.time() if now is None else now
    since = since_for(window, now)
    _snapshot(conn, *(("ts >= ?", [since]) if since is not None else ("TRUE", [])))
    # Every query below reads the narrow snapshot `w`, not the wide decisions table.
    where, args = "TRUE", []
    per_task = {r["k"]: r for r in _counts(conn, _TASK, where, args)}
    # The totals are sums of the per-task counts: exact, and one scan fewer.
    total_row = {name: sum(r[name] or 0 for r in per_task.values()) for name in _COUNT_FIELDS} if per_task else None
    reasons = _reasons(conn, where, args)
    lat = _percentiles(conn, _TASK, "lat_frontier", f"{where} AND outcome = 'answered_frontier'", args, total=ALL)
    tasks = [_task_metrics(k, per_task[k], reasons.get(k, {}), lat.get(k)) for k in sorted(per_task)]
    total = _task_metrics(ALL, total_row, reasons.get(ALL, {}), lat.get(ALL))
    routes = {r["route"]: r["n"] for r in conn.execute(
        f"SELECT route, COUNT(*) AS n FROM w WHERE {where} GROUP BY route ORDER BY route", args)}
    bucket_s = _bucket_seconds(conn, window, where, args)
    series = [Bucket(r["b"], r["n"], r["acc"], r["esc"], r["cost"], r["fo_cost"]) for r in conn.execute(
        f"SELECT {dialect_of(conn).floor('ts / ?')} * ? AS b, {_NOT_REJECTED} AS n, {_ACC} AS acc, {_ESC} AS esc,"
        f" {_TOTAL('cost_usd')} AS cost, {_TOTAL('frontier_only_cost_usd')} AS fo_cost"
        f" FROM w WHERE {where} GROUP BY b ORDER BY b", [bucket_s, bucket_s, *args])]
    latency = []
    for tier, cond in (("local", "route = 'local'"), ("frontier", "outcome = 'answered_frontier'")):
        p = _percentiles(conn, f"'{tier}'", f"lat_{tier}", f"{where} AND {cond}", args)
        n, p50, p95 = p.get(tier, (0, None, None))
        latency.append(TierLatency(tier, n, p50, p95))
    seen = sorted(reasons.get(ALL, {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return Summary(window, since, now, routes, total, tasks, bucket_s, series, latency, [k for k, _ in seen])


def _snapshot(conn: Any, where: str, args: list[Any]) -> None:
    """Copy the window's decisions, only the columns the summary needs, into a temp table.

    One scan of the wide table (previews, checks, JSON) instead of one per aggregate: with
    100,000 decisions this and the changes below took the 'all' summary from 1.1 s to 0.6 s
    (bench/dashboard.py). The table
    lives in this connection only, and the dashboard opens one connection per request."""
    d = dialect_of(conn)
    conn.execute(f"DROP TABLE IF EXISTS {d.temp_table('w')}")
    conn.execute(
        "CREATE TEMP TABLE w AS SELECT ts, task_type, route, route_candidate, reason, outcome, review_label,"
        f" cost_usd, frontier_only_cost_usd, {d.json_number('latency_ms', 'local')} AS lat_local,"
        f" {d.json_number('latency_ms', 'frontier')} AS lat_frontier FROM decisions WHERE {where}",
        args,
    )


_COUNT_FIELDS = ("n", "rejected", "acc", "esc", "reviewed", "defects", "fa", "ok", "cost", "fo_cost")


def _count(cond: str) -> str:
    return f"COUNT(*) FILTER (WHERE {cond})"


def _TOTAL(col: str) -> str:  # noqa: N802 - SQLite's TOTAL(): a float sum, 0.0 over no rows
    return f"COALESCE(SUM({col}), 0.0)"


_NOT_REJECTED = _count("route != 'rejected'")
_ACC = _count("route != 'rejected' AND route_candidate = 'local'")
_ESC = _count("route != 'rejected' AND route_candidate = 'frontier'")


_OK = "outcome IN (" + ", ".join(f"'{o}'" for o in SUCCESS_OUTCOMES) + ")"
_COUNTS = ", ".join([
    _NOT_REJECTED + " AS n",
    _count("route = 'rejected'") + " AS rejected",
    _ACC + " AS acc",
    _ESC + " AS esc",
    _count("route = 'local' AND review_label IS NOT NULL") + " AS reviewed",
    _count("route = 'local' AND review_label = 'escalate'") + " AS defects",
    _count("outcome = 'answered_frontier'") + " AS fa",
    _count(_OK) + " AS ok",
    _TOTAL("cost_usd") + " AS cost",
    _TOTAL("frontier_only_cost_usd") + " AS fo_cost",
])


def _counts(conn: Any, key: str, where: str, args: list[Any]) -> list[Any]:
    return conn.execute(f"SELECT {key} AS k, {_COUNTS} FROM w WHERE {where} GROUP BY k", args).fetchall()


def _reasons(conn: Any, where: str, args: list[Any]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    sql = (f"SELECT {_TASK} AS k, reason, COUNT(*) AS n FROM w WHERE {where} AND reason IS NOT NULL"
           f" GROUP BY k, reason UNION ALL SELECT '{ALL}', reason, COUNT(*) FROM w"
           f" WHERE {where} AND reason IS NOT NULL GROUP BY reason")
    for r in conn.execute(sql, [*args, *args]):
        out.setdefault(r["k"], {})[r["reason"]] = r["n"]
    return out


def _percentiles(conn: Any, key: str, expr: str, where: str, args: list[Any],
                 total: str | None = None) -> dict[str, tuple[int, float | None, float | None]]:
    """Nearest-rank p50 and p95 of `expr` per key: the value at rank ceil(p * n); with `total`,
    also over all keys. SQL selects the values; ranking them in Python is ~5x faster than
    SQLite's window functions at 100,000 decisions (bench/dashboard.py)."""
    groups: dict[str, list[float]] = {}
    for k, x in conn.execute(f"SELECT {key}, {expr} FROM w WHERE {where} AND {expr} IS NOT NULL", args):
        groups.setdefault(k, []).append(x)
    if total is not None and groups:
        groups[total] = [x for xs in groups.values() for x in xs]
    out = {}
    for k, xs in groups.items():
        xs.sort()
        n = len(xs)
        out[k] = (n, xs[(50 * n + 99) // 100 - 1], xs[(95 * n + 99) // 100 - 1])
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _task_metrics(key: str, row: Mapping[str, Any] | None, reasons: dict[str, int],
                  lat: tuple[int, float | None, float | None] | None) -> TaskMetrics:
    g = (lambda name: (row[name] or 0) if row is not None else 0)
    n, ok, cost, fo = g("n"), g("ok"), float(g("cost")), float(g("fo_cost"))
    _, p50, p95 = lat or (0, None, None)
    return TaskMetrics(
        task_type=key, decisions=n, rejected=g("rejected"), accepted_local=g("acc"), escalated=g("esc"),
        acceptance_rate=_ratio(g("acc"), n), escalation_rate=_ratio(g("esc"), n),
        reasons=dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        reviewed_local=g("reviewed"), defects=g("defects"), defect_rate=_ratio(g("defects"), g("reviewed")),
        frontier_answers=g("fa"), frontier_p50_ms=p50, frontier_p95_ms=p95, successful=ok,
        cost_usd=cost, frontier_only_cost_usd=fo,
        cost_per_success_usd=_ratio(cost, ok), frontier_only_cost_per_success_usd=_ratio(fo, ok),
    )


def _bucket_seconds(conn: Any, window: str, where: str, args: list[Any]) -> int:
    if window in _BUCKET_S:
        return _BUCKET_S[window]
    lo, hi = conn.execute(f"SELECT MIN(ts), MAX(ts) FROM w WHERE {where}", args).fetchone()
    span = (hi - lo) if lo is not None else 0.0
    return next((b for b in _ALL_BUCKETS if span / b < MAX_BUCKETS), _ALL_BUCKETS[-1])


# ---------------------------------------------------------------------- explorer and review queue


@dataclass(frozen=True)
class Filters:
    task: str | None = None
    route: str | None = None
    reason: str | None = None
    user_group: str | None = None
    model: str | None = None  # the local or the frontier model
    window: str = "all"
    limit: int = 50


def decisions(conn: Any, f: Filters, now: float | None = None) -> list[dict[str, Any]]:
    """Most recent first; never the raw input (the store has only its masked preview)."""
    clauses, args = [], []
    since = since_for(f.window, time.time() if now is None else now)
    if since is not None:
        clauses.append("ts >= ?")
        args.append(since)
    for col, value in (("COALESCE(task_type, 'unknown')", f.task), ("route", f.route), ("reason", f.reason),
                       ("user_group", f.user_group)):
        if value:
            clauses.append(f"{col} = ?")
            args.append(value)
    if f.model:
        clauses.append("(local_model = ? OR frontier_model = ?)")
        args += [f.model, f.model]
    where = " AND ".join(clauses) or "TRUE"
    # decision_id breaks ties: both databases then give the same order.
    sql = f"SELECT {', '.join(EXPLORER_COLUMNS)} FROM decisions WHERE {where} ORDER BY ts DESC, decision_id DESC LIMIT ?"
    return [decode_row(r) for r in conn.execute(sql, [*args, max(1, min(f.limit, 500))])]


def filter_choices(conn: Any) -> dict[str, list[str]]:
    """The values each explorer filter can take, for its <select>. One scan for all six columns:
    their distinct combinations are few."""
    cols = {"task": set(), "route": set(), "reason": set(), "user_group": set(), "model": set()}
    for task, route, reason, group, local, frontier in conn.execute(
        f"SELECT DISTINCT {_TASK}, route, reason, user_group, local_model, frontier_model FROM decisions"
    ):
        for key, value in (("task", task), ("route", route), ("reason", reason), ("user_group", group),
                           ("model", local), ("model", frontier)):
            if value is not None:
                cols[key].add(value)
    return {k: sorted(v) for k, v in cols.items()}


def review_queue(conn: Any, limit: int = 10) -> list[dict[str, Any]]:
    """Unreviewed local answers to check by hand. A decision id is 12 hex digits of time, then
    random ones: ordering by the random part is a uniform sample that stays put between loads."""
    sql = (f"SELECT {', '.join(EXPLORER_COLUMNS)} FROM decisions WHERE route = 'local' AND review_label IS NULL"
           " ORDER BY substr(decision_id, 13), decision_id LIMIT ?")
    return [decode_row(r) for r in conn.execute(sql, [limit])]


def set_review_label(conn: Any, decision_id: str, label: str) -> bool:
    """Store an operator's accept | escalate on a decision; False if there is no such decision.
    The same writer as `smallfirst review`, so the label is also in review_log."""
    from smallfirst.review import label_decision

    return label_decision(conn, decision_id, label, reviewer="dashboard")
