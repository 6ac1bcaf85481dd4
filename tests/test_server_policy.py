"""Policy fields the service needs: per-task and per-group rollout mode, the tool-use rule, the
API-key-to-group map; and the router honouring them (plus a policy swap at run time)."""

from __future__ import annotations

import hashlib

import pytest

from smallfirst.audit import AuditLog, read_recent
from smallfirst.policy import PolicyError, load_policy, parse_policy
from smallfirst.reasons import FallbackReason
from smallfirst.router import Router
from smallfirst.tasks import Task

from conftest import MINIMAL_POLICY
from test_router import REGISTRY_403, ROUTINE, StubLocal

ROLLOUT = "rollout: {mode: live, kill_switch: false, local_groups: ['*']}"


def with_rollout(rollout: str, extra: str = "") -> str:
    return MINIMAL_POLICY.replace(ROLLOUT, rollout) + extra


def router_for(text: str, audit=None) -> Router:
    stub = StubLocal(label="build", confidence=0.95)
    return Router(parse_policy(text), audit=audit, backends={"local_classifier": stub, "local_default": stub})


def test_rollout_mode_most_specific_setting_wins_task_then_group_then_default():
    policy = parse_policy(with_rollout(
        "rollout: {mode: live, task_modes: {summarize_log: shadow, classify_issue: live}, group_modes: {canary: shadow}}"))
    r = policy.rollout
    assert r.mode_for("summarize_log", "anyone") == "shadow"
    assert r.mode_for("classify_issue", "canary") == "live"  # the task's own mode outranks the group
    assert r.mode_for("shape_json", "canary") == "shadow"
    assert r.mode_for("shape_json", "default") == "live"
    assert r.mode_for(None, "default") == "live"


def test_a_task_mode_for_a_task_the_policy_lacks_names_its_line(write_policy):
    text = with_rollout("rollout:\n  mode: live\n  task_modes:\n    clasify_issue: shadow\n")
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(text))
    assert e.value.field == "rollout.task_modes.clasify_issue"
    assert e.value.line == text.splitlines().index("    clasify_issue: shadow") + 1


def test_a_mode_other_than_live_or_shadow_is_an_error(write_policy):
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(with_rollout("rollout: {group_modes: {beta: dark}}")))
    assert e.value.field.startswith("rollout.group_modes")


def test_api_key_groups_hold_sha256_hashes_never_keys(write_policy):
    key = "sk-live-team-a-0123456789"
    digest = hashlib.sha256(key.encode()).hexdigest()
    policy = load_policy(write_policy(MINIMAL_POLICY + f"api_key_groups: {{{digest}: team-a}}\n"))
    assert policy.group_for_api_key(key) == "team-a"
    assert policy.group_for_api_key("sk-other") is None and policy.group_for_api_key("") is None
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(MINIMAL_POLICY + f"api_key_groups: {{'{key}': team-a}}\n"))
    assert "sha256" in e.value.message and key[:8] not in str(e.value)  # not even a prefix of the key


def test_tool_use_defaults_to_frontier_and_a_task_may_keep_its_tool_requests_local():
    policy = parse_policy(MINIMAL_POLICY)
    assert policy.tool_use == "frontier" and policy.tasks["classify_issue"].tool_use is None
    text = MINIMAL_POLICY.replace("    max_input_chars: 6000\n", "    max_input_chars: 6000\n    tool_use: local\n", 1)
    assert parse_policy(text).tasks["classify_issue"].tool_use == "local"
    with pytest.raises(PolicyError):
        parse_policy(MINIMAL_POLICY + "tool_use: sometimes\n")


def test_a_request_with_tools_goes_to_the_frontier_as_policy_requires_frontier():
    router = router_for(MINIMAL_POLICY)
    r = router.route(Task(ROUTINE, "classify_issue", metadata={"tools": True}))
    assert (r.route, r.reason) == ("frontier", FallbackReason.POLICY_REQUIRES_FRONTIER)
    assert any(c.name == "tool_use" and not c.ok for c in r.checks)
    assert router.route(Task(ROUTINE, "classify_issue")).route == "local"
    router.close()
    local = router_for(MINIMAL_POLICY + "tool_use: local\n")
    assert local.route(Task(ROUTINE, "classify_issue", metadata={"tools": True})).route == "local"
    local.close()


def test_a_task_in_shadow_is_recorded_as_shadow_while_others_stay_live(tmp_path):
    audit = AuditLog.sqlite(tmp_path / "a.db")
    router = router_for(with_rollout("rollout: {mode: live, task_modes: {classify_issue: shadow}}"), audit)
    shadow = router.route(Task(ROUTINE, "classify_issue"))
    live = router.route(Task("the service log says: disk full on /var", "summarize_log"))
    router.close(); audit.close()
    assert (shadow.mode, shadow.route, shadow.route_candidate) == ("shadow", "frontier", "local")
    assert (live.mode, live.route) == ("live", "local")
    assert {r["task_type"]: r["mode"] for r in read_recent(tmp_path / "a.db")} == {
        "classify_issue": "shadow", "summarize_log": "live"}


def test_set_policy_rebuilds_hard_stops_and_applies_to_the_next_request():
    router = router_for(MINIMAL_POLICY)
    text = "npm ERR! the mirror refused our deploy key for this build\n"
    assert router.route(Task(text, "classify_issue")).route == "local"
    router.set_policy(parse_policy(MINIMAL_POLICY.replace("access: ['registry auth', 'SSO']",
                                                          "access: ['registry auth', 'SSO', 'deploy key']")))
    assert router.route(Task(text, "classify_issue")).reason is FallbackReason.HARD_STOP_ACCESS
    assert router.route(Task(REGISTRY_403, "classify_issue")).reason is FallbackReason.HARD_STOP_ACCESS
    router.close()


def test_set_policy_keeps_injected_backends_and_drops_changed_ones():
    router = router_for(MINIMAL_POLICY)
    injected = router._backends["local_classifier"]
    router._backends["frontier_default"] = object()  # as if created lazily from the old entry
    router.set_policy(parse_policy(MINIMAL_POLICY.replace("SMALLFIRST_TEST_NO_SUCH_KEY", "OTHER_KEY")))
    assert router._backends["local_classifier"] is injected
    assert "frontier_default" not in router._backends
