"""The HTTP service, driven by the official `openai` and `anthropic` SDKs on 127.0.0.1.

The frontier is faked at the wire (tests/fakes); the local model is an instant stub, so these
tests are about the service: formats, headers, streaming, errors, routing inputs. The real
bundled models are served in test_server_bundled.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
import threading
import urllib.error
import urllib.request
from typing import Any

import anthropic
import numpy as np
import openai
import pytest
from aiohttp import web

from fakes import FakeAnthropic, FakeOpenAI, Fault, Reply
from smallfirst.audit import AuditLog, read_recent
from smallfirst.policy import Policy, parse_policy
from smallfirst.server.app import SERVICE, Service, create_app
from smallfirst.server.auto import TaskClassifier
from test_router import REGISTRY_403, ROUTINE, StubLocal

KEY_ENV = "SMALLFIRST_TEST_FRONTIER_KEY"
KEY = "sk-test-frontier-key-0123456789"
ROUTE_HEADERS = ("x-smallfirst-route", "x-smallfirst-reason", "x-smallfirst-decision-id", "x-smallfirst-model",
                 "x-smallfirst-confidence")


# ---------------------------------------------------------------------- harness (used by the other test_server files)


def server_policy(frontier: Any = None, *, extra: str = "", tasks_extra: str = "", rollout: str = "") -> Policy:
    """A small policy; `frontier` is a running fake (its protocol picks the provider) or None."""
    if isinstance(frontier, FakeOpenAI):
        fspec = (f"{{provider: openai_compat, name: gpt-frontier, base_url: '{frontier.base_url}', "
                 f"api_key_env: {KEY_ENV}, retries: 1, timeout_s: 5}}")
    elif isinstance(frontier, FakeAnthropic):
        fspec = (f"{{provider: anthropic, name: claude-sonnet-4-6, base_url: '{frontier.base_url}', "
                 f"api_key_env: {KEY_ENV}, retries: 1, timeout_s: 5}}")
    else:
        fspec = "{provider: anthropic, name: claude-sonnet-4-6, api_key_env: SMALLFIRST_TEST_NO_SUCH_KEY}"
    text = f"""\
version: 1
models:
  local_classifier: {{provider: embedding}}
  local_default: {{provider: llamacpp}}
  frontier_default: {fspec}
prices:
  claude-sonnet-4-6: {{input: 3.00, output: 15.00}}
  gpt-frontier: {{input: 2.50, output: 10.00}}
  local: {{usd_per_hour: 0.05}}
tasks:
  classify_issue:
    description: Classify why a CI build failed, from its log.
    model: local_classifier
    labels: [build, test, dependency, security, access, unknown]
    min_confidence: 0.72
    escalate_labels: [security, access, unknown]
{textwrap.indent(textwrap.dedent(tasks_extra), '    ') if tasks_extra else ''}\
  summarize_log:
    description: Summarise a CI or service log, naming the failure reason.
    model: local_default
    min_confidence: 0.5
    grounding: false
  propose_code_change: {{description: Propose a code change., local: false}}
hard_stops:
  access: ['registry auth']
{rollout or "rollout: {mode: live, kill_switch: false, local_groups: ['*']}"}
{extra}
"""
    return parse_policy(text)


class ServerThread:
    """The service on 127.0.0.1 (ephemeral port), on its own event loop in a daemon thread, so
    synchronous SDK clients can call it from the test."""

    def __init__(self, policy: Policy, **kwargs: Any):
        kwargs.setdefault("warm", False)
        kwargs.setdefault("admin_token", None)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="smallfirst-test-server", daemon=True)
        self.thread.start()
        self.app, self.port = self._call(self._start(policy, kwargs))
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def _start(self, policy: Policy, kwargs: dict[str, Any]) -> tuple[web.Application, int]:
        app = create_app(policy, **kwargs)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        return app, sock.getsockname()[1]

    @property
    def service(self) -> Service:
        return self.app[SERVICE]

    def stop(self) -> None:
        self._call(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # plain HTTP, for what the SDKs never send
    def post(self, path: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method="POST",
                                     headers={"content-type": "application/json", **(headers or {})})
        return _send(req)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        return _send(urllib.request.Request(self.base_url + path, headers=headers or {}))


def _send(req: urllib.request.Request) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, headers, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, dict(exc.headers), exc.read()
    headers = {k.lower(): v for k, v in headers.items()}
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return status, headers, body


def openai_client(srv: ServerThread, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url + "/v1", api_key="caller-key", max_retries=0, **kw)


def anthropic_client(srv: ServerThread, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=srv.base_url, api_key="caller-key", max_retries=0, **kw)


def stub_backends(**kw: Any) -> dict[str, StubLocal]:
    stub = StubLocal(**{"label": "build", "confidence": 0.95, **kw})
    return {"local_classifier": stub, "local_default": stub}


@pytest.fixture
def anthropic_frontier(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeAnthropic.start_in_thread(api_key=KEY) as srv:
        yield srv


@pytest.fixture
def openai_frontier(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeOpenAI.start_in_thread(api_key=KEY) as srv:
        yield srv


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------------- answers in both formats


def test_openai_sdk_gets_a_local_answer_with_route_headers_naming_the_local_model(anthropic_frontier, tmp_path):
    audit = AuditLog.sqlite(tmp_path / "a.db")
    with ServerThread(server_policy(anthropic_frontier), audit=audit, backends=stub_backends()) as srv:
        raw = openai_client(srv).chat.completions.with_raw_response.create(
            model="smallfirst/classify_issue", messages=user(ROUTINE))
        done = raw.parse()
    assert done.choices[0].message.content == "build" and done.choices[0].finish_reason == "stop"
    assert done.model == "stub-model"
    h = raw.headers
    assert all(name in h for name in ROUTE_HEADERS)
    assert (h["x-smallfirst-route"], h["x-smallfirst-reason"], h["x-smallfirst-model"]) == ("local", "none", "stub-model")
    assert float(h["x-smallfirst-confidence"]) == pytest.approx(0.95)
    assert anthropic_frontier.requests == []  # the frontier never saw it
    rec = read_recent(tmp_path / "a.db")[0]
    assert rec["decision_id"] == h["x-smallfirst-decision-id"] and rec["route"] == "local"


def test_a_streamed_local_answer_is_gate_checked_before_its_first_byte(anthropic_frontier):
    # The stub is unsure (confidence 0.5 < 0.72): its label must never reach the caller, not even
    # as the first chunk of a stream; the caller gets the frontier's answer instead.
    anthropic_frontier.enqueue(Reply("test: the unit tests failed"))
    with ServerThread(server_policy(anthropic_frontier), backends=stub_backends(label="dependency", confidence=0.5)) as srv:
        stream = openai_client(srv).chat.completions.with_raw_response.create(
            model="smallfirst/classify_issue", messages=user(ROUTINE), stream=True)
        chunks = list(stream.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "test: the unit tests failed" and "dependency" not in text
    assert stream.headers["x-smallfirst-reason"] == "confidence_low"
    assert stream.headers["x-smallfirst-route"] == "frontier"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_sdk_streams_a_local_answer_in_chunks_with_usage_when_asked(anthropic_frontier):
    with ServerThread(server_policy(anthropic_frontier), backends=stub_backends()) as srv:
        chunks = list(openai_client(srv).chat.completions.create(
            model="smallfirst/classify_issue", messages=user(ROUTINE), stream=True,
            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "build"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert {c.model for c in chunks} == {"stub-model"}


def test_anthropic_sdk_gets_local_answers_streamed_and_whole(anthropic_frontier):
    with ServerThread(server_policy(anthropic_frontier), backends=stub_backends()) as srv:
        client = anthropic_client(srv)
        raw = client.messages.with_raw_response.create(
            model="smallfirst/classify_issue", max_tokens=64, messages=user(ROUTINE))
        whole = raw.parse()
        with client.messages.stream(model="smallfirst/classify_issue", max_tokens=64, messages=user(ROUTINE)) as s:
            streamed = "".join(s.text_stream)
            final = s.get_final_message()
    assert whole.content[0].text == "build" and whole.model == "stub-model" and whole.stop_reason == "end_turn"
    assert raw.headers["x-smallfirst-route"] == "local"
    assert streamed == "build" and final.model == "stub-model" and final.stop_reason == "end_turn"


def test_anthropic_caller_on_an_anthropic_frontier_streams_its_events_through(anthropic_frontier, tmp_path):
    anthropic_frontier.enqueue(Reply("a change to Parser.java that closes the reader", prompt_tokens=33))
    audit = AuditLog.sqlite(tmp_path / "a.db")
    with ServerThread(server_policy(anthropic_frontier), audit=audit, backends=stub_backends()) as srv:
        with anthropic_client(srv).messages.stream(
            model="smallfirst/propose_code_change", max_tokens=200, system="You write patches.",
            messages=user("The reader leaks in Parser.java"),
        ) as s:
            deltas = list(s.text_stream)
            final = s.get_final_message()
    assert "".join(deltas) == "a change to Parser.java that closes the reader" and len(deltas) > 1
    assert final.model == "claude-sonnet-4-6" and final.usage.input_tokens == 33
    sent = anthropic_frontier.requests[-1].json
    # policy_requires_frontier: no local model had a say, so the agent's own request went, unchanged
    assert sent["system"] == "You write patches." and sent["messages"] == user("The reader leaks in Parser.java")
    assert sent["model"] == "claude-sonnet-4-6" and sent["stream"] is True
    rec = read_recent(tmp_path / "a.db")[0]
    assert rec["outcome"] == "answered_frontier" and rec["reason"] == "policy_requires_frontier"
    assert rec["tokens"]["frontier_in"] == 33 and rec["tokens"]["frontier_out"] == len(deltas)


def test_openai_caller_on_an_anthropic_frontier_gets_translated_answers(anthropic_frontier):
    anthropic_frontier.enqueue(Reply("close the reader in a finally block"), Reply("streamed patch text"))
    with ServerThread(server_policy(anthropic_frontier), backends=stub_backends()) as srv:
        client = openai_client(srv)
        messages = [{"role": "system", "content": "You write patches."}, *user("The reader leaks")]
        whole = client.chat.completions.create(model="smallfirst/propose_code_change", messages=messages)
        chunks = list(client.chat.completions.create(model="smallfirst/propose_code_change", messages=messages,
                                                     stream=True, stream_options={"include_usage": True}))
    assert whole.choices[0].message.content == "close the reader in a finally block"
    assert whole.model == "claude-sonnet-4-6" and whole.usage.completion_tokens > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed patch text"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    sent = anthropic_frontier.requests[0].json
    assert sent["system"] == "You write patches." and sent["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "The reader leaks"}]}]


def test_anthropic_caller_on_an_openai_frontier_gets_translated_answers(openai_frontier):
    openai_frontier.enqueue(Reply("whole answer"), Reply("streamed answer here"))
    with ServerThread(server_policy(openai_frontier), backends=stub_backends()) as srv:
        client = anthropic_client(srv)
        whole = client.messages.create(model="smallfirst/propose_code_change", max_tokens=50, messages=user("fix"))
        with client.messages.stream(model="smallfirst/propose_code_change", max_tokens=50, messages=user("fix")) as s:
            streamed = "".join(s.text_stream)
            final = s.get_final_message()
    assert whole.content[0].text == "whole answer" and whole.model == "gpt-frontier"
    assert streamed == "streamed answer here" and final.usage.output_tokens == 3
    assert openai_frontier.requests[1].json["stream_options"] == {"include_usage": True}


def test_escalation_after_a_hard_stop_sends_the_packet_not_the_raw_input(anthropic_frontier):
    anthropic_frontier.enqueue(Reply("access"))
    with ServerThread(server_policy(anthropic_frontier), backends=stub_backends(label="dependency", confidence=0.99)) as srv:
        raw = openai_client(srv).chat.completions.with_raw_response.create(
            model="smallfirst/classify_issue", messages=user(REGISTRY_403))
    assert raw.parse().choices[0].message.content == "access" and raw.parse().model == "claude-sonnet-4-6"
    assert raw.headers["x-smallfirst-reason"] == "hard_stop_access"
    assert raw.headers["x-smallfirst-model"] == "claude-sonnet-4-6"
    sent = json.dumps(anthropic_frontier.requests[-1].json)
    assert "hard_stop_access" in sent  # the packet says why the local path was left


def test_a_model_name_that_is_no_task_is_an_unknown_task_answered_by_the_frontier(openai_frontier):
    openai_frontier.enqueue(Reply("Paris"))
    with ServerThread(server_policy(openai_frontier), backends=stub_backends()) as srv:
        raw = openai_client(srv).chat.completions.with_raw_response.create(
            model="gpt-4o", messages=user("capital of France?"), temperature=0.2)
    assert raw.parse().choices[0].message.content == "Paris"
    assert raw.headers["x-smallfirst-reason"] == "unknown_task"
    sent = openai_frontier.requests[-1].json
    assert sent["messages"] == user("capital of France?") and sent["temperature"] == 0.2
    assert sent["model"] == "gpt-frontier"  # the policy's frontier, not the name the caller sent


def test_forwarding_the_agents_own_request_builds_no_escalation_packet_and_passes_the_answer_through(
        openai_frontier, tmp_path, monkeypatch):
    import smallfirst.packet

    def no_packet(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an escalation packet was built for a request forwarded as it came")

    monkeypatch.setattr(smallfirst.packet, "build_packet", no_packet)
    shadow = "rollout: {mode: live, task_modes: {classify_issue: shadow}}"
    audit = AuditLog.sqlite(tmp_path / "a.db")
    with ServerThread(server_policy(openai_frontier, rollout=shadow), audit=audit, backends=stub_backends()) as srv:
        client = openai_client(srv)
        answers = [client.chat.completions.with_raw_response.create(model=model, messages=user(ROUTINE))
                   for model in ("smallfirst/propose_code_change", "gpt-4o", "smallfirst/classify_issue")]
    reasons = [a.headers["x-smallfirst-reason"] for a in answers]
    assert reasons == ["policy_requires_frontier", "unknown_task", "none"]  # the last one in shadow mode
    # The frontier's own body reaches the caller: fields smallfirst never writes come through.
    assert all(a.http_response.json()["system_fingerprint"] == "fp_fake" for a in answers)
    assert all(r.json["messages"] == user(ROUTINE) for r in openai_frontier.requests)
    records = sorted(read_recent(tmp_path / "a.db"), key=lambda r: r["ts"])
    assert [r["outcome"] for r in records] == ["answered_frontier"] * 3
    for rec in records:  # the record is as complete as before
        assert rec["frontier_model"] == "gpt-frontier" and rec["frontier_answer_sha256"] and rec["input_sha256"]
        assert rec["tokens"]["frontier_in"] > 0 and rec["preview"] and rec["cost_usd"] > 0


def test_task_header_overrides_the_model_name(anthropic_frontier):
    with ServerThread(server_policy(anthropic_frontier), backends=stub_backends()) as srv:
        raw = openai_client(srv).chat.completions.with_raw_response.create(
            model="gpt-4o", messages=user(ROUTINE), extra_headers={"X-Smallfirst-Task": "classify_issue"})
    assert raw.headers["x-smallfirst-route"] == "local" and raw.headers["x-smallfirst-task"] == "classify_issue"


# ---------------------------------------------------------------------- tools


class ToolUseAnthropic(FakeAnthropic):
    """The Anthropic fake, answering every request with a text block and a tool_use block."""

    async def answer(self, request: web.Request, body: dict[str, Any], reply: Reply, fault: Any) -> web.StreamResponse:
        usage = {"input_tokens": 40, "output_tokens": 12}
        tool = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
        if not body.get("stream"):
            return web.json_response({"id": "msg_01", "type": "message", "role": "assistant", "model": body["model"],
                                      "content": [{"type": "text", "text": "Let me check."}, tool],
                                      "stop_reason": "tool_use", "stop_sequence": None, "usage": usage})
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        events = [
            ("message_start", {"message": {"id": "msg_01", "type": "message", "role": "assistant", "model": body["model"],
                                           "content": [], "stop_reason": None, "stop_sequence": None,
                                           "usage": {"input_tokens": 40, "output_tokens": 1}}}),
            ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Let me check."}}),
            ("content_block_stop", {"index": 0}),
            ("content_block_start", {"index": 1, "content_block": {**tool, "input": {}}}),
            ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}}),
            ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}}),
            ("content_block_stop", {"index": 1}),
            ("message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 12}}),
            ("message_stop", {}),
        ]
        for name, data in events:
            await resp.write(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode())
        await resp.write_eof()
        return resp


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def test_a_request_with_tools_goes_to_the_frontier_and_tool_calls_come_back_in_openai_format(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with ToolUseAnthropic.start_in_thread(api_key=KEY) as up, \
            ServerThread(server_policy(up), backends=stub_backends()) as srv:
        client = openai_client(srv)
        raw = client.chat.completions.with_raw_response.create(
            model="smallfirst/classify_issue", messages=user(ROUTINE), tools=[WEATHER_TOOL])
        chunks = list(client.chat.completions.create(
            model="smallfirst/classify_issue", messages=user(ROUTINE), tools=[WEATHER_TOOL], stream=True))
        # The agent's next turn carries the tool result back; it must arrive as Anthropic blocks.
        client.chat.completions.create(model="smallfirst/classify_issue", tools=[WEATHER_TOOL], messages=[
            *user("weather?"),
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_01", "content": "18C, sunny"},
        ])
    done = raw.parse()
    assert raw.headers["x-smallfirst-reason"] == "policy_requires_frontier"
    call = done.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("toolu_01", "get_weather", {"city": "Paris"})
    assert done.choices[0].finish_reason == "tool_calls" and done.choices[0].message.content == "Let me check."
    streamed_args = "".join(tc.function.arguments or "" for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ())
    assert json.loads(streamed_args) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    first = up.requests[0].json
    assert first["tools"] == [{"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"],
                               "description": "Weather for a city."}]
    turn = up.requests[2].json["messages"]
    assert turn[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]}
    assert turn[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C, sunny"}]}


def test_a_task_whose_tool_use_is_local_is_routed_as_usual_with_tools_attached(anthropic_frontier):
    policy = server_policy(anthropic_frontier, tasks_extra="tool_use: local\n")
    with ServerThread(policy, backends=stub_backends()) as srv:
        raw = openai_client(srv).chat.completions.with_raw_response.create(
            model="smallfirst/classify_issue", messages=user(ROUTINE), tools=[WEATHER_TOOL])
    assert raw.headers["x-smallfirst-route"] == "local" and raw.parse().choices[0].message.content == "build"


# ---------------------------------------------------------------------- bad input and faults


def test_malformed_json_is_400_in_each_callers_error_format(anthropic_frontier, tmp_path):
    audit = AuditLog.sqlite(tmp_path / "a.db")
    with ServerThread(server_policy(anthropic_frontier), audit=audit, backends=stub_backends()) as srv:
        o_status, _, o_body = srv.post("/v1/chat/completions", b'{"model": "smallfirst/classify_issue", ')
        a_status, _, a_body = srv.post("/v1/messages", b"{not json")
        with pytest.raises(openai.BadRequestError) as e:  # valid JSON, invalid field
            openai_client(srv).chat.completions.create(model="smallfirst/classify_issue", messages=[])
    assert o_status == 400 and o_body["error"]["type"] == "invalid_request_error" and "JSON" in o_body["error"]["message"]
    assert a_status == 400 and a_body["type"] == "error" and a_body["error"]["type"] == "invalid_request_error"
    assert e.value.body["param"] == "messages"


def test_body_over_the_limit_is_413_in_the_callers_format(anthropic_frontier):
    with ServerThread(server_policy(anthropic_frontier), backends=stub_backends(), max_body_bytes=2048) as srv:
        with pytest.raises(anthropic.APIStatusError) as e:
            anthropic_client(srv).messages.create(model="smallfirst/classify_issue", max_tokens=10, messages=user("x" * 5000))
    assert e.value.status_code == 413 and e.value.body["error"]["type"] == "request_too_large"


def test_empty_input_is_400_and_audited_as_rejected(anthropic_frontier, tmp_path):
    audit = AuditLog.sqlite(tmp_path / "a.db")
    with ServerThread(server_policy(anthropic_frontier), audit=audit, backends=stub_backends()) as srv:
        with pytest.raises(openai.BadRequestError) as e:
            openai_client(srv).chat.completions.create(model="smallfirst/classify_issue", messages=user("   "))
    assert "empty" in e.value.message
    assert e.value.response.headers["x-smallfirst-route"] == "rejected"
    assert read_recent(tmp_path / "a.db")[0]["outcome"] == "rejected"


def test_frontier_down_is_502_with_the_reason_audited_and_not_retried_by_the_sdk(anthropic_frontier, tmp_path):
    anthropic_frontier.enqueue(Fault.http(529, retry_after=0), Fault.http(529, retry_after=0))
    audit = AuditLog.sqlite(tmp_path / "a.db")
    with ServerThread(server_policy(anthropic_frontier), audit=audit, backends=stub_backends()) as srv:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="k", max_retries=2)  # SDK would retry a 502
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="smallfirst/propose_code_change", messages=user("fix the build"))
    assert e.value.status_code == 502 and "529" in e.value.message and "Overloaded" in e.value.message
    assert e.value.response.headers["x-smallfirst-reason"] == "policy_requires_frontier"
    assert len(anthropic_frontier.requests) == 2  # the policy's one retry, and no SDK retries on top
    rec = read_recent(tmp_path / "a.db")
    assert len(rec) == 1 and rec[0]["outcome"] == "frontier_error" and "529" in rec[0]["error"]


def test_streamed_frontier_failure_before_the_first_event_is_still_a_502(anthropic_frontier, tmp_path):
    anthropic_frontier.enqueue(Fault.http(500), Fault.http(500))
    audit = AuditLog.sqlite(tmp_path / "a.db")
    with ServerThread(server_policy(anthropic_frontier), audit=audit, backends=stub_backends()) as srv:
        with pytest.raises(anthropic.InternalServerError) as e:
            with anthropic_client(srv).messages.stream(model="smallfirst/propose_code_change", max_tokens=20,
                                                       messages=user("fix")) as s:
                list(s.text_stream)
    assert e.value.status_code == 502
    assert read_recent(tmp_path / "a.db")[0]["outcome"] == "frontier_error"


def test_frontier_failure_mid_stream_reaches_the_caller_as_an_error_event(anthropic_frontier, tmp_path):
    anthropic_frontier.enqueue(Fault.stream_error(529))  # a few deltas of the echo, then an error event
    audit = AuditLog.sqlite(tmp_path / "a.db")
    with ServerThread(server_policy(anthropic_frontier), audit=audit, backends=stub_backends()) as srv:
        stream = openai_client(srv).chat.completions.create(
            model="smallfirst/propose_code_change", messages=user("fix the parser now"), stream=True)
        got = []
        with pytest.raises(openai.APIError) as e:
            for chunk in stream:
                got.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(got) == "echo: fix" and "Overloaded" in str(e.value.message)
    rec = read_recent(tmp_path / "a.db")[0]
    assert rec["outcome"] == "frontier_error" and "mid-stream" in rec["error"]


def test_no_frontier_configured_is_503_that_the_sdk_does_not_retry(tmp_path):
    audit = AuditLog.sqlite(tmp_path / "a.db")
    with ServerThread(server_policy(None), audit=audit, backends=stub_backends(confidence=0.3)) as srv:
        client = anthropic.Anthropic(base_url=srv.base_url, api_key="k", max_retries=2)
        with pytest.raises(anthropic.APIStatusError) as e:
            client.messages.create(model="smallfirst/classify_issue", max_tokens=10, messages=user(ROUTINE))
    assert e.value.status_code == 503 and "confidence_low" in e.value.message
    assert len(read_recent(tmp_path / "a.db")) == 1 and read_recent(tmp_path / "a.db")[0]["outcome"] == "no_frontier"


def test_a_crashed_local_model_escalates_with_local_error(anthropic_frontier):
    anthropic_frontier.enqueue(Reply("build"))
    backends = stub_backends(fail=RuntimeError("segfault in the model"))
    with ServerThread(server_policy(anthropic_frontier), backends=backends) as srv:
        raw = openai_client(srv).chat.completions.with_raw_response.create(
            model="smallfirst/classify_issue", messages=user(ROUTINE))
    assert raw.headers["x-smallfirst-reason"] == "local_error" and raw.parse().choices[0].message.content == "build"


# ---------------------------------------------------------------------- routing inputs


def keyword_embed(texts: list[str]) -> np.ndarray:
    """A stand-in embedding: one axis per keyword, plus a small constant so no vector is zero."""
    words = ("classify", "summar", "propose")
    vecs = np.array([[1.0 if w in t.lower() else 0.0 for w in words] + [0.1] for t in texts])
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def test_auto_picks_the_task_from_the_instructions_and_sends_an_unclear_one_to_the_frontier(anthropic_frontier):
    anthropic_frontier.enqueue(Reply("hello to you"))
    classifier = TaskClassifier(keyword_embed)
    with ServerThread(server_policy(anthropic_frontier), backends=stub_backends(), classifier=classifier) as srv:
        client = openai_client(srv)
        clear = client.chat.completions.with_raw_response.create(
            model="smallfirst/auto", messages=user("Classify this CI failure.\n" + ROUTINE))
        unclear = client.chat.completions.with_raw_response.create(model="smallfirst/auto", messages=user("hello"))
    assert clear.headers["x-smallfirst-task"] == "classify_issue" and clear.headers["x-smallfirst-route"] == "local"
    assert unclear.headers["x-smallfirst-reason"] == "unknown_task"
    assert unclear.parse().choices[0].message.content == "hello to you"


def test_models_lists_the_task_types_in_each_format(anthropic_frontier):
    with ServerThread(server_policy(anthropic_frontier), backends=stub_backends()) as srv:
        o = [m.id for m in openai_client(srv).models.list()]
        a = [m.id for m in anthropic_client(srv).models.list()]
    assert o == a == ["smallfirst/auto", "smallfirst/classify_issue", "smallfirst/summarize_log",
                      "smallfirst/propose_code_change"]


def test_user_group_drives_the_rollout_and_a_mapped_api_key_outranks_the_header(anthropic_frontier):
    import hashlib

    beta_key = "sk-team-beta-0123456789"
    digest = hashlib.sha256(beta_key.encode()).hexdigest()
    policy = server_policy(anthropic_frontier, rollout="rollout: {mode: live, local_groups: [beta]}",
                           extra=f"api_key_groups: {{{digest}: beta}}")
    anthropic_frontier.enqueue(Reply("build"))
    with ServerThread(policy, backends=stub_backends()) as srv:
        def route(client: openai.OpenAI, group: str | None = None) -> str:
            headers = {"X-Smallfirst-User-Group": group} if group else {}
            raw = client.chat.completions.with_raw_response.create(
                model="smallfirst/classify_issue", messages=user(ROUTINE), extra_headers=headers)
            return raw.headers["x-smallfirst-route"] + "/" + raw.headers["x-smallfirst-reason"]

        assert route(openai_client(srv), "beta") == "local/none"
        assert route(openai_client(srv)) == "frontier/manual_override"
        keyed = openai.OpenAI(base_url=srv.base_url + "/v1", api_key=beta_key, max_retries=0)
        assert route(keyed, "someone-else") == "local/none"
        status, _, body = srv.post("/v1/chat/completions", {"model": "smallfirst/classify_issue", "messages": user("x")},
                                   {"X-Smallfirst-User-Group": "bad group!"})
    assert status == 400 and "user group" in body["error"]["message"]


def test_a_task_in_shadow_mode_answers_from_the_frontier_and_records_the_local_candidate(anthropic_frontier, tmp_path):
    policy = server_policy(anthropic_frontier, rollout="rollout: {mode: live, task_modes: {classify_issue: shadow}}")
    anthropic_frontier.enqueue(Reply("frontier says build"))
    audit = AuditLog.sqlite(tmp_path / "a.db")
    with ServerThread(policy, audit=audit, backends=stub_backends()) as srv:
        raw = openai_client(srv).chat.completions.with_raw_response.create(
            model="smallfirst/classify_issue", messages=user(ROUTINE))
    assert raw.parse().choices[0].message.content == "frontier says build"
    assert raw.headers["x-smallfirst-mode"] == "shadow"
    # what the frontier would see without smallfirst: the request itself, not an escalation packet
    assert anthropic_frontier.requests[-1].json["messages"] == [{"role": "user", "content": [{"type": "text", "text": ROUTINE}]}]
    rec = read_recent(tmp_path / "a.db")[0]
    assert (rec["mode"], rec["route"], rec["route_candidate"]) == ("shadow", "frontier", "local")


# ---------------------------------------------------------------------- health, readiness, metrics, openapi


class SlowLoading(StubLocal):
    """A local model whose load() waits until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__(label="build", confidence=0.95)
        self.release = threading.Event()

    def load(self) -> None:
        self.release.wait(30)


def poll_readyz(srv: ServerThread, done: Any) -> tuple[int, Any]:
    """GET /readyz until done(status, body) holds, for 10 s at most; the last answer."""
    for _ in range(200):
        status, _, body = srv.get("/readyz")
        if done(status, body):
            break
        threading.Event().wait(0.05)
    return status, body


def test_readyz_says_loading_until_the_local_models_are_loaded(anthropic_frontier):
    slow = SlowLoading()
    ready_classifier = TaskClassifier(keyword_embed)
    with ServerThread(server_policy(anthropic_frontier), backends={"local_classifier": slow, "local_default": slow},
                      classifier=ready_classifier, warm=True) as srv:
        assert srv.get("/healthz")[0] == 200
        status, _, body = srv.get("/readyz")
        assert status == 503 and body["status"] == "loading"
        slow.release.set()
        status, body = poll_readyz(srv, lambda status, body: status == 200)
    assert status == 200 and body["models"]["local_classifier"] == "ready"


GEMMA_FIRST = """
version: 1
models:
  local_default: {provider: llamacpp}
  local_classifier: {provider: embedding}
tasks:
  summarize_log: {description: Summarise a log., model: local_default, min_confidence: 0.5, grounding: false}
  classify_issue: {description: Classify a CI failure., model: local_classifier, labels: [build, test], min_confidence: 0.72}
"""


class LoadsAtOnce(StubLocal):
    def __init__(self) -> None:
        super().__init__(label="build", confidence=0.95)
        self.loaded = threading.Event()

    def load(self) -> None:
        self.loaded.set()


def test_the_classifier_loads_is_ready_and_answers_while_gemma_is_still_loading():
    gemma, classifier = SlowLoading(), LoadsAtOnce()
    with ServerThread(parse_policy(GEMMA_FIRST), backends={"local_default": gemma, "local_classifier": classifier},
                      classifier=TaskClassifier(keyword_embed), warm=True) as srv:
        assert classifier.loaded.wait(10), "the classifier's load waited behind Gemma's"
        status, body = poll_readyz(srv, lambda status, body: body["models"]["local_classifier"] == body["models"]["auto_classifier"] == "ready")
        assert status == 503 and body["status"] == "loading"
        assert body["models"] == {"local_classifier": "ready", "local_default": "loading", "auto_classifier": "ready"}
        raw = openai_client(srv).chat.completions.with_raw_response.create(
            model="smallfirst/classify_issue", messages=user(ROUTINE))
        assert raw.headers["x-smallfirst-route"] == "local" and raw.parse().choices[0].message.content == "build"
        gemma.release.set()
        status, body = poll_readyz(srv, lambda status, body: status == 200)
    assert status == 200 and set(body["models"].values()) == {"ready"}


def test_metrics_endpoint_serves_prometheus_text(anthropic_frontier):
    with ServerThread(server_policy(anthropic_frontier), backends=stub_backends()) as srv:
        openai_client(srv).chat.completions.create(model="smallfirst/classify_issue", messages=user(ROUTINE))
        status, headers, text = srv.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert ('smallfirst_requests_total{mode="live",outcome="answered_local",reason="none",route="local",'
            'task_type="classify_issue"} 1.0') in text


def test_openapi_document_names_every_endpoint(anthropic_frontier):
    with ServerThread(server_policy(anthropic_frontier), backends=stub_backends()) as srv:
        status, _, doc = srv.get("/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert {"/v1/chat/completions", "/v1/messages", "/v1/models", "/healthz", "/readyz", "/metrics",
            "/admin/kill-switch", "/admin/rollout", "/admin/policy/reload"} <= set(doc["paths"])


# ---------------------------------------------------------------------- the command


@pytest.mark.slow
def test_a_served_process_freezes_what_startup_built_and_collects_young_objects_less_often():
    import gc

    from smallfirst.server.app import GC_THRESHOLD, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 1000  # modules, the policy, the hard-stop rules
        assert gc.get_threshold() == (GC_THRESHOLD, *before[1:]) and GC_THRESHOLD > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_smallfirst_serve_starts_loads_models_in_the_background_and_stops_cleanly(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent("""\
        version: 1
        models:
          local_classifier: {provider: embedding}
        tasks:
          classify_issue:
            description: Classify why a CI build failed, from its log.
            model: local_classifier
            labels: [build, test, dependency, unknown]
            label_descriptions: {build: compilation failed, test: tests failed, dependency: dependency resolution failed}
            escalate_labels: [unknown]
        """), encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "smallfirst.cli", "serve", "--policy", str(policy),
                             "--audit", str(tmp_path / "a.db"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        banner = proc.stdout.readline()  # type: ignore[union-attr]
        assert f"http://127.0.0.1:{port}/v1" in banner and "admin API off" in banner
        assert "dashboard open on loopback" in banner
        status = 0
        for _ in range(600):  # bounded: the model loads in about a second here
            try:
                status = _send(urllib.request.Request(base + "/readyz"))[0]
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200
        client = openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="smallfirst/classify_issue", messages=user(ROUTINE))
        decision = raw.headers["x-smallfirst-decision-id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
    assert proc.returncode == 0
    assert read_recent(tmp_path / "a.db")[0]["decision_id"] == decision  # written before exit
