"""Several replicas on one store: the kill switch, rollout and policy reloads thrown on one replica
reach the others, each change is recorded once with who, when and why, and a change survives
the store being away. Real services on 127.0.0.1, a real PostgreSQL (tests/pgserver.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import pytest

from smallfirst.audit import AuditLog
from smallfirst.flags import FlagState, Overrides, SharedFlags
from smallfirst.policy import load_policy
from smallfirst.server.admin import read_admin_events
from test_server import ServerThread, anthropic_frontier, stub_backends  # noqa: F401 - fixture
from test_server_admin import AUTH, TOKEN, _policy_file_text, route_of

pytestmark = pytest.mark.postgres
WAIT_S = 10.0  # how long a test waits for convergence before failing; the bench measures the time


def eventually(check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        time.sleep(0.02)


@pytest.fixture
def policy_file(anthropic_frontier, tmp_path):  # noqa: F811
    from fakes import Reply

    anthropic_frontier.reply_fn = lambda body: Reply("frontier answer")
    path = tmp_path / "policy.yaml"
    path.write_text(_policy_file_text(anthropic_frontier), encoding="utf-8")
    return path


def replica(store: str, policy_file, tmp_path, name: str) -> ServerThread:
    audit = AuditLog.open(store, spill_path=tmp_path / f"{name}.spill.jsonl")
    return ServerThread(load_policy(policy_file), audit=audit, backends=stub_backends(), admin_token=TOKEN,
                        policy_path=policy_file)


@pytest.fixture(params=["postgresql", "sqlite"])
def two(request, policy_file, tmp_path):
    """Two replicas sharing one store: PostgreSQL, or one SQLite file on one host."""
    store = request.getfixturevalue("pg_url") if request.param == "postgresql" else str(tmp_path / "shared.db")
    a = replica(store, policy_file, tmp_path, "a")
    b = replica(store, policy_file, tmp_path, "b")
    yield a, b, store
    a.stop()
    b.stop()


def test_a_kill_switch_thrown_on_one_replica_sends_the_other_to_the_frontier(two):
    a, b, store = two
    assert route_of(a) == route_of(b) == "local/none"
    status, _, state = a.post("/admin/kill-switch", {"on": True, "reason": "incident 42"},
                              {**AUTH, "X-Smallfirst-Actor": "ana"})
    assert status == 200 and state["shared"] is True
    assert route_of(a) == "frontier/manual_override"  # at once where it was thrown
    eventually(lambda: route_of(b) == "frontier/manual_override")
    assert b.get("/admin/state", AUTH)[2]["rollout"]["kill_switch_reason"] == "incident 42"
    a.post("/admin/kill-switch", {"on": False}, AUTH)
    eventually(lambda: route_of(b) == "local/none")
    # The same policy everywhere: the audit's policy_version names it alike on both replicas.
    assert a.service.router.policy.version_tag == b.service.router.policy.version_tag


def test_each_admin_change_is_recorded_once_with_who_when_why_and_where(two):
    a, b, store = two
    t0 = time.time()
    a.post("/admin/kill-switch", {"on": True, "reason": "incident 42"}, {**AUTH, "X-Smallfirst-Actor": "ana"})
    b.post("/admin/rollout", {"mode": "shadow", "task": "classify_issue", "reason": "trial"}, AUTH)
    eventually(lambda: b.service.overrides.kill_switch is True)
    events = read_admin_events(store)
    changes = [e for e in events if e["action"] in ("kill_switch", "rollout")]
    assert [(e["action"], e["actor"], e["reason"]) for e in reversed(changes)] == [
        ("kill_switch", "ana", "incident 42"),
        ("rollout", "token:" + __import__("hashlib").sha256(TOKEN.encode()).hexdigest()[:8], "trial")]
    assert {e["replica"] for e in changes} == {a.service.replica, b.service.replica}
    assert all(t0 <= e["ts"] <= time.time() and e["status"] == 200 for e in changes)
    assert all(TOKEN not in str(e) for e in events)


def test_changes_on_two_replicas_at_once_are_both_kept(two):
    a, b, _ = two
    import threading

    t = threading.Thread(target=lambda: a.post("/admin/kill-switch", {"on": True}, AUTH))
    t.start()
    b.post("/admin/rollout", {"local_groups": ["beta"]}, AUTH)
    t.join()
    for srv in (a, b):
        eventually(lambda srv=srv: srv.service.overrides.kill_switch is True
                   and srv.service.overrides.local_groups == ("beta",))


def test_a_policy_reload_on_one_replica_reloads_the_others(two, policy_file):
    a, b, _ = two
    policy_file.write_text(policy_file.read_text().replace("min_confidence: 0.72", "min_confidence: 0.99"))
    status, _, state = a.post("/admin/policy/reload", {"reason": "stricter threshold"}, AUTH)
    assert status == 200 and route_of(a) == "frontier/confidence_low"
    eventually(lambda: route_of(b) == "frontier/confidence_low")
    assert b.service.base_policy.digest == a.service.base_policy.digest


def test_a_restarted_replica_comes_back_with_the_shared_kill_switch(two, policy_file, tmp_path):
    a, b, store = two
    a.post("/admin/kill-switch", {"on": True, "reason": "incident"}, AUTH)
    c = replica(store, policy_file, tmp_path, "c")
    try:
        assert route_of(c) == "frontier/manual_override"  # read at start, before the first request
    finally:
        c.stop()


def test_a_change_made_while_postgresql_is_down_applies_at_once_and_reaches_the_store_later(
        pg_server, pg_url, policy_file, tmp_path):
    a = replica(pg_url, policy_file, tmp_path, "a")
    b = replica(pg_url, policy_file, tmp_path, "b")
    try:
        pg_server.stop()
        status, _, state = a.post("/admin/kill-switch", {"on": True, "reason": "db down too"}, AUTH)
        assert status == 200 and state["shared"] is False and state["flags"]["pending_changes"] == 1
        assert route_of(a) == "frontier/manual_override"  # the kill switch works with the store down
        assert route_of(b) == "local/none"  # b cannot know yet
        pg_server.start()
        eventually(lambda: route_of(b) == "frontier/manual_override")
        assert a.get("/admin/state", AUTH)[2]["flags"]["pending_changes"] == 0
        kills = [e for e in read_admin_events(pg_url) if e["action"] == "kill_switch"]
        assert len(kills) == 1 and kills[0]["reason"] == "db down too"  # recorded once, when the store was back
    finally:
        if not pg_server.running():
            pg_server.start()
        a.stop()
        b.stop()


# ---------------------------------------------------------------------- the two wake-ups, one at a time


async def _converges(pg_url: str, *, poll_s: float, listen: bool) -> FlagState:
    seen: list[FlagState] = []

    async def on_change(state: FlagState) -> None:
        seen.append(state)

    watcher = SharedFlags(pg_url, on_change, poll_s=poll_s)
    await watcher.start()
    if not listen:
        watcher._tasks[1].cancel()  # as if the LISTEN connection had been lost for good
    writer = SharedFlags(pg_url, on_change=lambda s: asyncio.sleep(0))
    await writer.start()
    await writer.change(lambda o: Overrides(kill_switch=True, kill_switch_reason="x"),
                        {"ts": time.time(), "action": "kill_switch", "allowed": True, "detail": None}, lambda o: None)
    deadline = time.monotonic() + WAIT_S
    while not (seen and seen[-1].overrides.kill_switch) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await watcher.stop()
    await writer.stop()
    assert seen and seen[-1].overrides.kill_switch, "the watcher never saw the change"
    return seen[-1]


def test_notify_alone_wakes_a_replica_that_would_not_poll_for_an_hour(pg_url):
    assert asyncio.run(_converges(pg_url, poll_s=3600, listen=True)).version == 1


def test_polling_alone_converges_when_the_listen_connection_is_gone(pg_url):
    assert asyncio.run(_converges(pg_url, poll_s=0.2, listen=False)).version == 1


def test_a_change_retried_after_its_commit_answer_was_lost_is_applied_and_recorded_once(pg_url):
    from smallfirst.flags import _Pending, write_change
    from smallfirst.store import connect_postgres

    event = {"ts": time.time(), "action": "rollout", "allowed": True, "detail": None, "event_id": "e1"}
    p = _Pending(lambda o: Overrides(local_groups=(o.local_groups or ()) + ("beta",)), event, lambda o: None)
    conn = connect_postgres(pg_url)
    first = write_change(conn, p)
    again = write_change(conn, p)  # the same change, sent again by a replica that never saw the commit
    assert again.version == first.version == 1 and again.overrides.local_groups == ("beta",)
    assert conn.execute("SELECT COUNT(*) FROM admin_events WHERE event_id = 'e1'").fetchone()[0] == 1
    conn.close()
