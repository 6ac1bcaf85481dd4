"""The dashboard's SQL aggregation, against a real SQLite audit store seeded with known decisions,
and its HTTP surface against the service's own /metrics."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from smallfirst import dashboard as dash
from smallfirst.audit import AuditLog, AuditRecord, SQLiteSink, _encode
from smallfirst.server.admin import read_admin_events
from test_router import ROUTINE
from test_server import ServerThread, anthropic_frontier, openai_client, server_policy, stub_backends, user  # noqa: F401

NOW = 1_750_000_000.0
TOKEN = "admin-token-0123456789"


def rec(i: int, *, ts: float = NOW - 60, task: str | None = "classify_issue", route: str = "local",
        reason: str | None = None, frontier_ms: float | None = None, cost: float = 0.0, fo_cost: float = 0.001,
        outcome: str | None = None, review: str | None = None, group: str = "default") -> AuditRecord:
    lat = {"total": 5.0, "local": 4.0}
    if frontier_ms is not None:
        lat["frontier"] = frontier_ms
    return AuditRecord(
        decision_id=f"d{i:06d}", ts=ts, task_type=task, mode="live", route=route,
        route_candidate=None if route == "rejected" else ("local" if reason is None else "frontier"),
        reason=reason, latency_ms=lat, cost_usd=cost, frontier_only_cost_usd=fo_cost, user_group=group,
        outcome=outcome or {"local": "answered_local", "frontier": "answered_frontier", "rejected": "rejected"}[route],
        review_label=review, local_model="stub-model", frontier_model="claude-sonnet-4-6" if route == "frontier" else None,
        preview="masked preview",
    )


def seed(path, records: list[AuditRecord]) -> sqlite3.Connection:
    sink = SQLiteSink(path)
    sink.write_batch([r.to_row() for r in records])
    sink.close()
    return dash.connect(path)


@pytest.fixture
def known(tmp_path):
    """10 classify_issue decisions in the last hour, 2 summarize_log a day ago, 1 a month ago."""
    rs = [rec(i) for i in range(6)]  # 6 local
    rs[0] = rec(0, review="escalate")
    rs[1] = rec(1, review="accept")
    rs += [rec(6 + i, route="frontier", reason="confidence_low", frontier_ms=ms, cost=0.002)
           for i, ms in enumerate((100.0, 200.0, 300.0))]
    rs.append(rec(9, route="rejected", reason="input_too_large", outcome="rejected", fo_cost=0.0))
    rs += [rec(10, task="summarize_log", ts=NOW - 20 * 3600, route="frontier", reason="hard_stop_access",
               frontier_ms=50.0, cost=0.01, fo_cost=0.01),
           rec(11, task="summarize_log", ts=NOW - 20 * 3600, outcome="no_frontier", route="frontier",
               reason="local_error", fo_cost=0.01)]
    rs.append(rec(12, ts=NOW - 30 * 86400, route="frontier", reason="manual_override", frontier_ms=999.0))
    return seed(tmp_path / "a.db", rs)


def by_task(s: dash.Summary) -> dict[str, dash.TaskMetrics]:
    return {t.task_type: t for t in s.tasks}


def test_hour_window_counts_only_recent_decisions_and_computes_the_six_metrics(known):
    s = dash.summary(known, "hour", now=NOW)
    assert [t.task_type for t in s.tasks] == ["classify_issue"]
    m = s.total
    assert (m.decisions, m.rejected, m.accepted_local, m.escalated) == (9, 1, 6, 3)
    assert m.acceptance_rate == pytest.approx(6 / 9) and m.escalation_rate == pytest.approx(3 / 9)
    assert m.reasons == {"confidence_low": 3, "input_too_large": 1}
    assert (m.reviewed_local, m.defects, m.defect_rate) == (2, 1, 0.5)
    assert (m.frontier_answers, m.frontier_p50_ms, m.frontier_p95_ms) == (3, 200.0, 300.0)
    assert m.successful == 9
    assert m.cost_per_success_usd == pytest.approx(0.006 / 9)
    assert m.frontier_only_cost_per_success_usd == pytest.approx(0.009 / 9)
    assert s.routes == {"frontier": 3, "local": 6, "rejected": 1}


def test_day_window_splits_by_task_and_a_failed_frontier_is_not_a_success(known):
    s = dash.summary(known, "day", now=NOW)
    log = by_task(s)["summarize_log"]
    assert (log.decisions, log.escalated, log.successful, log.frontier_answers) == (2, 2, 1, 1)
    assert log.reasons == {"hard_stop_access": 1, "local_error": 1}
    assert log.defect_rate is None  # no reviews yet
    assert log.cost_per_success_usd == pytest.approx(0.01) and log.frontier_only_cost_per_success_usd == pytest.approx(0.02)
    assert s.total.decisions == 11 and s.reasons[0] == "confidence_low"
    assert sum(b.decisions for b in s.series) == 11 and s.bucket_s == 3600


def test_all_window_includes_old_decisions_and_percentiles_use_nearest_rank(known):
    s = dash.summary(known, "all", now=NOW)
    ci = by_task(s)["classify_issue"]
    assert ci.frontier_answers == 4
    # ranks ceil(0.5*4)=2 and ceil(0.95*4)=4 of 100, 200, 300, 999
    assert (ci.frontier_p50_ms, ci.frontier_p95_ms) == (200.0, 999.0)
    frontier = next(t for t in s.latency if t.tier == "frontier")
    assert (frontier.count, frontier.p50_ms, frontier.p95_ms) == (5, 200.0, 999.0)
    assert sum(b.decisions for b in s.series) == s.total.decisions == 12


def test_an_empty_store_gives_no_rates_rather_than_zeros(tmp_path):
    s = dash.summary(seed(tmp_path / "e.db", []), "all", now=NOW)
    assert s.tasks == [] and s.total.decisions == 0
    assert s.total.acceptance_rate is None and s.total.defect_rate is None and s.series == []


def test_explorer_filters_by_task_route_reason_group_and_model(known):
    f = dash.Filters
    assert len(dash.decisions(known, f(), now=NOW)) == 13
    assert {d["decision_id"] for d in dash.decisions(known, f(task="summarize_log"), now=NOW)} == {"d000010", "d000011"}
    assert len(dash.decisions(known, f(reason="confidence_low", route="frontier"), now=NOW)) == 3
    assert len(dash.decisions(known, f(model="claude-sonnet-4-6", window="hour"), now=NOW)) == 3
    assert dash.decisions(known, f(user_group="nobody"), now=NOW) == []
    row = dash.decisions(known, f(task="summarize_log"), now=NOW)[0]
    assert "preview" in row and "input" not in row and isinstance(row["latency_ms"], dict)
    assert dash.filter_choices(known)["reason"] == sorted(
        ["confidence_low", "input_too_large", "hard_stop_access", "local_error", "manual_override"])


def test_review_queue_offers_unreviewed_local_answers_and_a_label_removes_one(tmp_path, known):
    queue = dash.review_queue(known)
    assert [d["decision_id"] for d in queue] == ["d000002", "d000003", "d000004", "d000005"]
    w = dash.connect(tmp_path / "a.db", write=True)
    assert dash.set_review_label(w, "d000002", "escalate") is True
    assert dash.set_review_label(w, "nope", "accept") is False
    with pytest.raises(ValueError):
        dash.set_review_label(w, "d000003", "maybe")
    assert dash.summary(known, "hour", now=NOW).total.defects == 2


def test_a_hundred_thousand_decisions_aggregate_to_the_seeded_counts(tmp_path):
    path = tmp_path / "big.db"
    SQLiteSink(path)._connect().close()
    reasons = ("confidence_low", "hard_stop_security", "schema_invalid")
    rows = []
    for i in range(100_000):
        escalated = i % 4 == 0  # a quarter escalate, spread over three reasons
        r = rec(i, ts=NOW - (i % 7000) * 60, task=("classify_issue", "summarize_log")[i % 2],
                route="frontier" if escalated else "local", reason=reasons[(i // 4) % 3] if escalated else None,
                frontier_ms=float(i % 1000) if escalated else None, cost=0.001 if escalated else 0.0)
        rows.append(_encode(r.to_row()))
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(f"INSERT INTO decisions VALUES ({', '.join('?' * len(rows[0]))})", rows)
    conn.close()
    s = dash.summary(dash.connect(path), "all", now=NOW)
    assert (s.total.decisions, s.total.escalated, s.total.accepted_local) == (100_000, 25_000, 75_000)
    assert s.total.reasons == {r: pytest.approx(25_000 / 3, abs=1) for r in reasons}
    assert s.total.cost_usd == pytest.approx(25.0)
    assert len(s.series) <= dash.MAX_BUCKETS and sum(b.decisions for b in s.series) == 100_000
    week = dash.summary(dash.connect(path), "week", now=NOW)
    assert week.total.decisions == sum(1 for i in range(100_000) if (i % 7000) * 60 <= 7 * 86400)


# ---------------------------------------------------------------------- over HTTP


def metric_counts_by_route(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("smallfirst_requests_total{"):
            route = line.split('route="')[1].split('"')[0]
            out[route] = out.get(route, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def test_summary_api_agrees_with_metrics_and_a_review_needs_the_token_and_is_audited(anthropic_frontier, tmp_path):  # noqa: F811
    audit = AuditLog.sqlite(tmp_path / "a.db")
    with ServerThread(server_policy(anthropic_frontier), audit=audit, backends=stub_backends(),
                      admin_token=TOKEN) as srv:
        client = openai_client(srv)
        ids = [client.chat.completions.with_raw_response.create(
            model="smallfirst/classify_issue", messages=user(ROUTINE)).headers["x-smallfirst-decision-id"]
            for _ in range(3)]
        status, _, s = srv.get("/dashboard/api/summary?window=all")
        assert status == 200 and s["routes"] == metric_counts_by_route(srv.get("/metrics")[2]) == {"local": 3}
        assert srv.post("/dashboard/review", {"decision_id": ids[0], "label": "escalate"})[0] == 401
        status, _, body = srv.post("/dashboard/review", {"decision_id": ids[0], "label": "escalate"},
                                   {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and body["review_label"] == "escalate"
        s = srv.get("/dashboard/api/summary?window=all")[2]
        assert s["total"]["defect_rate"] == 1.0
        assert srv.get("/dashboard/api/summary?window=year")[0] == 400
        status, _, page = srv.get("/dashboard/decisions?route=local&format=json")
        assert {d["decision_id"] for d in page["decisions"]} == set(ids)
        assert srv.get("/dashboard")[0] == 200
    events = read_admin_events(tmp_path / "a.db")
    assert [(e["action"], e["allowed"], e["status"]) for e in events] == [("review", 1, 200), ("review", 0, 401)]
    assert json.dumps(events).count(TOKEN) == 0


def test_standalone_dashboard_serves_an_audit_file_without_the_service(known, tmp_path):
    # `smallfirst dashboard --audit DB` serves create_dashboard_app: same page, same API numbers.
    import asyncio

    import aiohttp
    from aiohttp import web

    from smallfirst.server.dashboard_routes import create_dashboard_app

    path = known.execute("PRAGMA database_list").fetchone()[2]

    async def go():
        runner = web.AppRunner(create_dashboard_app(path))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(base + "/dashboard?window=all") as r:
                    page = (r.status, await r.text())
                async with s.get(base + "/dashboard/api/summary?window=all") as r:
                    api = await r.json()
        finally:
            await runner.cleanup()
        return page, api

    (status, html), api = asyncio.run(go())
    expected = dash.summary(known, "all", now=time.time())
    assert status == 200 and "<svg" in html and "Kill switch" in html
    assert api["total"]["decisions"] == expected.total.decisions


def test_standalone_dashboard_on_an_audit_file_not_yet_written_shows_an_empty_page(tmp_path):
    # An operator's first look, before the service recorded anything: an empty dashboard, not a 404.
    import asyncio

    import aiohttp
    from aiohttp import web

    from smallfirst.server.dashboard_routes import create_dashboard_app

    path = tmp_path / "not-yet.db"

    async def go():
        runner = web.AppRunner(create_dashboard_app(str(path)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(base + "/dashboard") as r:
                    page = (r.status, await r.text())
                async with s.get(base + "/dashboard/api/summary?window=all") as r:
                    api = (r.status, await r.json())
        finally:
            await runner.cleanup()
        return page, api

    (status, html), (api_status, api) = asyncio.run(go())
    assert status == 200 and "no decisions in this window" in html
    assert api_status == 200 and api["total"]["decisions"] == 0
    assert not path.exists()  # reading never creates the store
