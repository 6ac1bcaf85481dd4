"""A bounded load run on loopback: every request leaves exactly one audit record.

Mixed traffic through both APIs at once: local answers, streamed and whole; escalations to a
fake frontier; hard stops; rejected input; unknown tasks; and callers that hang up mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3

import aiohttp

from smallfirst.audit import AuditLog
from test_router import REGISTRY_403, ROUTINE
from test_server import ServerThread, anthropic_frontier, server_policy, stub_backends  # noqa: F401

REQUESTS = 240
CONCURRENCY = 16


def request_for(i: int) -> tuple[str, dict, bool]:
    """(path, body, hang up after the first bytes) for the i-th request: a fixed mix."""
    kind = i % 8
    if kind in (0, 1):
        return "/v1/chat/completions", {"model": "smallfirst/classify_issue", "stream": kind == 1,
                                         "messages": [{"role": "user", "content": ROUTINE}]}, False
    if kind in (2, 3):
        return "/v1/messages", {"model": "smallfirst/propose_code_change", "max_tokens": 64, "stream": kind == 3,
                                "messages": [{"role": "user", "content": f"patch number {i}"}]}, False
    if kind == 4:
        return "/v1/messages", {"model": "smallfirst/classify_issue", "max_tokens": 16,
                                "messages": [{"role": "user", "content": REGISTRY_403}]}, False
    if kind == 5:
        return "/v1/chat/completions", {"model": "smallfirst/classify_issue", "messages": [{"role": "user", "content": " "}]}, False
    if kind == 6:
        return "/v1/chat/completions", {"model": "some-other-model", "messages": [{"role": "user", "content": "hi"}]}, False
    return "/v1/chat/completions", {"model": "smallfirst/propose_code_change", "stream": True,
                                     "messages": [{"role": "user", "content": "a long answer please"}]}, True


async def load(base_url: str) -> list[tuple[int, str]]:
    sem = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:
        async def one(i: int) -> tuple[int, str]:
            path, body, hang_up = request_for(i)
            async with sem:
                async with session.post(base_url + path, data=json.dumps(body),
                                        headers={"content-type": "application/json"}) as resp:
                    if hang_up:
                        await resp.content.readany()
                        resp.close()  # the caller goes away mid-stream
                    else:
                        await resp.read()
                    return resp.status, resp.headers["x-smallfirst-decision-id"]

        return await asyncio.gather(*(one(i) for i in range(REQUESTS)))


def test_after_a_bounded_load_run_the_audit_holds_exactly_one_record_per_request(anthropic_frontier, tmp_path):  # noqa: F811
    db = tmp_path / "audit.db"
    srv = ServerThread(server_policy(anthropic_frontier), audit=AuditLog.sqlite(db), backends=stub_backends())
    try:
        results = asyncio.run(load(srv.base_url))
    finally:
        srv.stop()  # closes the audit log: everything submitted is written
    ids = [decision for _, decision in results]
    assert len(set(ids)) == REQUESTS
    conn = sqlite3.connect(db)
    rows = dict(conn.execute("SELECT decision_id, outcome FROM decisions").fetchall())
    conn.close()
    assert len(rows) == REQUESTS and set(rows) == set(ids)
    statuses = {status for status, _ in results}
    assert statuses == {200, 400}  # the empty inputs are the 400s
    assert {"answered_local", "answered_frontier", "rejected"} <= set(rows.values())
