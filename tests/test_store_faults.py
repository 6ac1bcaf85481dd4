"""PostgreSQL stopped mid-load under the real service: every request is still answered, the
decisions spill to the local file, and when the server is back each one arrives exactly once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from smallfirst.audit import AuditLog
from smallfirst.store import connect
from test_replicas import eventually
from test_router import ROUTINE
from test_server import ServerThread, server_policy, stub_backends

pytestmark = pytest.mark.postgres
BODY = {"model": "smallfirst/classify_issue", "messages": [{"role": "user", "content": ROUTINE}]}


def load(srv: ServerThread, n: int) -> list[tuple[int, str]]:
    """n requests, 4 at a time: (status, decision id) of each."""
    def one(_: int) -> tuple[int, str]:
        status, headers, _body = srv.post("/v1/chat/completions", BODY)
        return status, headers.get("x-smallfirst-decision-id", "")

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def stored(url: str) -> tuple[int, set[str]]:
    conn = connect(url)
    try:
        ids = [r[0] for r in conn.execute("SELECT decision_id FROM decisions")]
    finally:
        conn.close()
    return len(ids), set(ids)


@pytest.mark.parametrize("mode", ["fast", "immediate"])  # an operator's restart; a crash
def test_postgresql_stopped_mid_load_loses_and_duplicates_no_decision(mode, pg_server, pg_url, tmp_path):
    audit = AuditLog.open(pg_url, spill_path=tmp_path / "spill.jsonl", spill_after_s=0.3, flush_interval_s=0.01)
    srv = ServerThread(server_policy(), audit=audit, backends=stub_backends())
    try:
        answered = load(srv, 150)
        pg_server.stop(mode)
        try:
            answered += load(srv, 150)
            eventually(lambda: audit.stats.spilled > 0)  # records waited past spill_after_s, then spilled
            answered += load(srv, 50)
        finally:
            pg_server.start()
        answered += load(srv, 150)
        assert [s for s, _ in answered] == [200] * 500  # every request answered, store or not
        ids = {d for _, d in answered}
        assert len(ids) == 500
        eventually(lambda: stored(pg_url)[0] >= 500, timeout=30)  # the spill file is replayed
        audit.flush()
        rows, in_store = stored(pg_url)
        assert rows == 500 and in_store == ids  # none lost, none duplicated, nothing else
        assert audit.stats.lost == 0 and audit.stats.replayed == audit.stats.spilled
        assert not (tmp_path / "spill.jsonl").exists()
    finally:
        srv.stop()


def test_dashboard_answers_503_while_postgresql_is_down_and_routing_goes_on(pg_server, pg_url, tmp_path):
    audit = AuditLog.open(pg_url, spill_path=tmp_path / "spill.jsonl", spill_after_s=0.3, flush_interval_s=0.01)
    srv = ServerThread(server_policy(), audit=audit, backends=stub_backends(), admin_token="admin-t")
    try:
        answered = load(srv, 8)
        assert [s for s, _ in answered] == [200] * 8
        assert srv.get("/dashboard/api/summary")[2]["total"]["decisions"] == 8
        pg_server.stop("fast")
        try:
            status, headers, body = srv.get("/dashboard/api/summary")
            assert status == 503 and headers["content-type"].startswith("application/json") and headers["retry-after"]
            assert "audit store" in body["error"] and "unreachable" in body["error"] and "routing" in body["error"]
            status, headers, page = srv.get("/dashboard")
            assert status == 503 and headers["content-type"].startswith("text/html")
            assert "audit store" in page and "unreachable" in page
            status, _, body = srv.post("/dashboard/review", {"decision_id": answered[0][1], "label": "accept"},
                                       {"authorization": "Bearer admin-t"})
            assert status == 503 and "unreachable" in body["error"]  # the review is not taken, and says why
            assert [s for s, _ in load(srv, 8)] == [200] * 8  # routing goes on; decisions wait or spill
        finally:
            pg_server.start()
        eventually(lambda: srv.get("/dashboard/api/summary")[0] == 200, timeout=30)
        eventually(lambda: srv.get("/dashboard/api/summary")[2]["total"]["decisions"] == 16, timeout=30)
    finally:
        srv.stop()
