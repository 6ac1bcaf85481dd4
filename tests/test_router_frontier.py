"""Escalations reaching a frontier model, faked at the wire by a local Anthropic-protocol server."""

from __future__ import annotations

import json

import pytest

from fakes import FakeAnthropic, Fault, Reply
from smallfirst.audit import AuditLog, read_recent
from smallfirst.policy import parse_policy
from smallfirst.reasons import FallbackReason
from smallfirst.router import Router
from smallfirst.tasks import Task

from conftest import MINIMAL_POLICY
from test_router import REGISTRY_403, ROUTINE, StubLocal

KEY_ENV = "SMALLFIRST_TEST_FRONTIER_KEY"


@pytest.fixture
def frontier(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-ant-test-key-0123456789")
    with FakeAnthropic.start_in_thread(api_key="sk-ant-test-key-0123456789") as srv:
        yield srv


def router_for(srv, audit=None, **stub):
    text = MINIMAL_POLICY.replace(
        "frontier_default: {provider: anthropic, name: claude-sonnet-4-6, api_key_env: SMALLFIRST_TEST_NO_SUCH_KEY}",
        f"frontier_default: {{provider: anthropic, name: claude-sonnet-4-6, api_key_env: {KEY_ENV}, "
        f"base_url: '{srv.base_url}', retries: 1, timeout_s: 2}}",
    )
    policy = parse_policy(text)
    local = StubLocal(**stub)
    return Router(policy, audit=audit, backends={"local_classifier": local, "local_default": local})


def test_escalation_is_answered_by_the_frontier_with_a_short_packet(frontier, tmp_path):
    frontier.enqueue(Reply("access: the registry rejected the CI token", prompt_tokens=420))
    audit = AuditLog.sqlite(tmp_path / "a.db")
    router = router_for(frontier, audit=audit)
    r = router.route(Task(REGISTRY_403, "classify_issue"))
    router.close(); audit.close()
    assert r.outcome == "answered_frontier" and r.reason is FallbackReason.HARD_STOP_ACCESS
    assert r.answer == "access: the registry rejected the CI token" and r.model == "claude-sonnet-4-6"
    sent = frontier.requests[-1].json
    body = json.dumps(sent)
    assert "hard_stop_access" in body and "403" in body  # the packet says why it was rejected
    assert len(body) < 10_000
    rec = read_recent(tmp_path / "a.db")[0]
    assert rec["frontier_model"] == "claude-sonnet-4-6" and rec["frontier_answer_sha256"]
    assert rec["tokens"]["frontier_in"] == 420 and rec["cost_usd"] > 0


def test_secrets_in_the_input_never_reach_the_frontier(frontier):
    router = router_for(frontier)
    secret = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
    router.route(Task(f"deploy failed\nexport GITHUB_TOKEN={secret}\n", "classify_issue"))
    router.close()
    assert secret not in json.dumps(frontier.requests[-1].json)


def test_frontier_down_is_retried_then_reported_as_frontier_error_and_audited(frontier, tmp_path):
    frontier.enqueue(Fault.http(529, retry_after=0), Fault.http(529, retry_after=0))
    audit = AuditLog.sqlite(tmp_path / "a.db")
    router = router_for(frontier, audit=audit, label="test", confidence=0.3)
    r = router.route(Task(ROUTINE, "classify_issue"))
    router.close(); audit.close()
    assert r.outcome == "frontier_error" and r.answer is None
    assert r.reason is FallbackReason.CONFIDENCE_LOW and "529" in r.error
    assert len(frontier.requests) == 2  # one try plus the policy's one retry
    assert read_recent(tmp_path / "a.db")[0]["outcome"] == "frontier_error"


def test_shadow_mode_caller_gets_the_frontier_answer_while_the_candidate_is_recorded(frontier):
    frontier.enqueue(Reply("build"))
    text = MINIMAL_POLICY.replace("mode: live", "mode: shadow")
    router = router_for(frontier, label="build", confidence=0.95)
    router.policy = parse_policy(text.replace(
        "frontier_default: {provider: anthropic, name: claude-sonnet-4-6, api_key_env: SMALLFIRST_TEST_NO_SUCH_KEY}",
        f"frontier_default: {{provider: anthropic, name: claude-sonnet-4-6, api_key_env: {KEY_ENV}, base_url: '{frontier.base_url}'}}"))
    r = router.route(Task(ROUTINE, "classify_issue"))
    router.close()
    assert r.answer == "build" and r.outcome == "answered_frontier" and r.route_candidate == "local"


def test_streamed_frontier_answer_passes_through_and_is_recorded_when_it_ends(frontier, tmp_path):
    import asyncio

    frontier.enqueue(Reply("the registry refused the token"))
    audit = AuditLog.sqlite(tmp_path / "a.db")
    router = router_for(frontier, audit=audit)

    async def go():
        r = await router.aroute(Task(REGISTRY_403, "classify_issue"), stream=True)
        assert r.outcome == "streaming" and r.stream is not None
        audit.flush()
        assert not (tmp_path / "a.db").exists() or read_recent(tmp_path / "a.db") == []  # not before it ends
        parts = [d async for d in r.stream]
        await router.aclose()
        return parts

    parts = asyncio.run(go())
    audit.close()
    assert "".join(parts) == "the registry refused the token" and len(parts) > 1
    rec = read_recent(tmp_path / "a.db")[0]
    assert rec["outcome"] == "answered_frontier" and rec["reason"] == "hard_stop_access"


def test_caller_closing_a_stream_early_is_still_recorded_once(frontier, tmp_path):
    import asyncio

    frontier.enqueue(Reply("one two three four five six"))
    audit = AuditLog.sqlite(tmp_path / "a.db")
    router = router_for(frontier, audit=audit)

    async def go():
        r = await router.aroute(Task(REGISTRY_403, "classify_issue"), stream=True)
        async for _ in r.stream:
            break
        await r.stream.aclose()
        await router.aclose()

    asyncio.run(go())
    audit.close()
    rows = read_recent(tmp_path / "a.db")
    assert len(rows) == 1 and rows[0]["outcome"] == "client_closed"
