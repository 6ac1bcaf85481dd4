"""The admin API: bearer token, kill switch, rollout, policy reload, and the admin_events audit."""

from __future__ import annotations

import pytest

from fakes import Reply
from smallfirst.audit import AuditLog
from smallfirst.policy import load_policy
from smallfirst.server.admin import read_admin_events
from test_router import ROUTINE
from test_server import (
    ServerThread,
    anthropic_frontier,  # noqa: F401 - fixture
    openai_client,
    server_policy,
    stub_backends,
    user,
)

TOKEN = "admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def route_of(srv: ServerThread) -> str:
    raw = openai_client(srv).chat.completions.with_raw_response.create(
        model="smallfirst/classify_issue", messages=user(ROUTINE))
    return raw.headers["x-smallfirst-route"] + "/" + raw.headers["x-smallfirst-reason"]


@pytest.fixture
def served(anthropic_frontier, tmp_path):  # noqa: F811
    """A service with the admin API on, its policy in a real file, an audit database."""
    anthropic_frontier.reply_fn = lambda body: Reply("frontier answer")
    path = tmp_path / "policy.yaml"
    path.write_text(_policy_file_text(anthropic_frontier), encoding="utf-8")
    audit = AuditLog.sqlite(tmp_path / "audit.db")
    srv = ServerThread(load_policy(path), audit=audit, backends=stub_backends(), admin_token=TOKEN, policy_path=path)
    yield srv, path, tmp_path / "audit.db"
    srv.stop()


def _policy_file_text(frontier) -> str:
    return f"""\
version: 1
models:
  local_classifier: {{provider: embedding}}
  frontier_default: {{provider: anthropic, name: claude-sonnet-4-6, base_url: '{frontier.base_url}',
                      api_key_env: SMALLFIRST_TEST_FRONTIER_KEY, retries: 0, timeout_s: 5}}
tasks:
  classify_issue:
    description: Classify why a CI build failed, from its log.
    model: local_classifier
    labels: [build, test, dependency, security, access, unknown]
    min_confidence: 0.72
    escalate_labels: [security, access, unknown]
"""


def test_without_a_token_the_admin_api_is_off_and_each_refused_call_is_audited(anthropic_frontier, tmp_path):  # noqa: F811
    audit = AuditLog.sqlite(tmp_path / "audit.db")
    with ServerThread(server_policy(anthropic_frontier), audit=audit, backends=stub_backends(), admin_token=None) as srv:
        status, _, body = srv.post("/admin/kill-switch", {"on": True, "reason": "try"}, AUTH)
        assert status == 404 and "SMALLFIRST_ADMIN_TOKEN" in body["error"]
        assert route_of(srv) == "local/none"  # nothing changed
    events = read_admin_events(tmp_path / "audit.db")
    assert [(e["action"], e["allowed"], e["status"]) for e in events] == [("kill_switch", 0, 404)]
    assert events[0]["detail"]["refused"] == "admin API off"


def test_a_missing_or_wrong_token_is_401_and_audited(served):
    srv, _, db = served
    assert srv.post("/admin/kill-switch", {"on": True})[0] == 401
    status, headers, _ = srv.post("/admin/kill-switch", {"on": True}, {"Authorization": "Bearer guessed-token-0000"})
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert route_of(srv) == "local/none"
    events = read_admin_events(db)
    assert [(e["allowed"], e["status"]) for e in events] == [(0, 401), (0, 401)]
    assert all(TOKEN not in str(e) and "guessed-token" not in str(e) for e in events)  # tokens are never stored


def test_kill_switch_sends_the_next_request_to_the_frontier_and_back(served):
    srv, _, db = served
    assert route_of(srv) == "local/none"
    status, _, state = srv.post("/admin/kill-switch", {"on": True, "reason": "incident 42"}, AUTH)
    assert status == 200 and state["rollout"]["kill_switch"] is True
    assert route_of(srv) == "frontier/manual_override"
    assert srv.post("/admin/kill-switch", {"on": False}, AUTH)[0] == 200
    assert route_of(srv) == "local/none"
    events = read_admin_events(db)
    assert [(e["action"], e["allowed"], e["status"]) for e in events] == [("kill_switch", 1, 200)] * 2
    on = events[1]
    assert on["detail"]["request"] == {"on": True, "reason": "incident 42"}
    assert on["policy_before"] != on["policy_after"]  # the policy version names the override


def test_rollout_per_task_and_per_group_applies_to_the_next_request(served):
    srv, _, _ = served
    status, _, state = srv.post("/admin/rollout", {"mode": "shadow", "task": "classify_issue"}, AUTH)
    assert status == 200 and state["rollout"]["task_modes"] == {"classify_issue": "shadow"}
    raw = openai_client(srv).chat.completions.with_raw_response.create(
        model="smallfirst/classify_issue", messages=user(ROUTINE))
    assert raw.headers["x-smallfirst-mode"] == "shadow" and raw.parse().choices[0].message.content == "frontier answer"
    assert srv.post("/admin/rollout", {"mode": None, "task": "classify_issue"}, AUTH)[0] == 200
    assert srv.post("/admin/rollout", {"local_groups": ["beta"]}, AUTH)[0] == 200
    assert route_of(srv) == "frontier/manual_override"
    assert srv.post("/admin/rollout", {"mode": "shadow", "group": "default"}, AUTH)[0] == 200
    assert srv.get("/admin/state", AUTH)[2]["rollout"]["group_modes"] == {"default": "shadow"}


def test_invalid_admin_bodies_are_400_and_change_nothing(served):
    srv, _, db = served
    assert srv.post("/admin/kill-switch", b"{nope", AUTH)[0] == 400
    assert srv.post("/admin/kill-switch", {"on": "maybe"}, AUTH)[0] == 400
    assert srv.post("/admin/rollout", {"mode": "yolo"}, AUTH)[0] == 400
    assert srv.post("/admin/rollout", {"mode": "shadow", "task": "no_such_task"}, AUTH)[0] == 400
    assert srv.post("/admin/rollout", {"task": "classify_issue"}, AUTH)[0] == 400
    assert route_of(srv) == "local/none"
    assert all(e["allowed"] == 1 and e["status"] == 400 for e in read_admin_events(db))


def test_an_invalid_policy_reload_is_rejected_and_the_old_policy_stays(served):
    srv, path, db = served
    before = srv.service.router.policy.version_tag
    path.write_text(path.read_text().replace("min_confidence: 0.72", "min_confidense: 0.72"))
    status, _, body = srv.post("/admin/policy/reload", {}, AUTH)
    assert status == 422 and "min_confidense" in body["error"] and "old one stays" in body["error"]
    assert srv.service.router.policy.version_tag == before and route_of(srv) == "local/none"
    assert read_admin_events(db)[0]["detail"]["error"].endswith("unknown key 'min_confidense'")


def test_a_valid_reload_applies_to_the_next_request_and_keeps_the_kill_switch(served):
    srv, path, _ = served
    srv.post("/admin/kill-switch", {"on": True, "reason": "incident"}, AUTH)
    # The stub answers with confidence 0.95; the new file demands more.
    path.write_text(path.read_text().replace("min_confidence: 0.72", "min_confidence: 0.99"))
    status, _, state = srv.post("/admin/policy/reload", b"", AUTH)  # no body: keep_overrides
    assert status == 200 and state["overrides"]["kill_switch"] is True
    assert route_of(srv) == "frontier/manual_override"  # an edited file does not undo the incident
    srv.post("/admin/kill-switch", {"on": False}, AUTH)
    assert route_of(srv) == "frontier/confidence_low"  # and the new threshold is in force
    status, _, state = srv.post("/admin/policy/reload", {"keep_overrides": False}, AUTH)
    assert state["overrides"] == {}


def test_admin_calls_are_counted_in_metrics(served):
    srv, _, _ = served
    srv.post("/admin/kill-switch", {"on": False}, AUTH)
    srv.post("/admin/kill-switch", {"on": False})
    text = srv.get("/metrics")[2]
    assert 'smallfirst_admin_calls_total{action="kill_switch",allowed="true"} 1.0' in text
    assert 'smallfirst_admin_calls_total{action="kill_switch",allowed="false"} 1.0' in text
