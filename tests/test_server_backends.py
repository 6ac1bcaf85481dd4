"""The server backends against real local HTTP servers that speak each wire protocol.

Nothing in the client is patched: requests leave through aiohttp and reach tests/fakes, which
answer with the real APIs' shapes, streams and error bodies, and record what they received.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
from typing import Any, AsyncIterator, Awaitable, Iterator, TypeVar

import pytest

from fakes import FakeAnthropic, FakeOpenAI, Fault, Reply
from smallfirst.backends import http
from smallfirst.backends.anthropic import AnthropicBackend
from smallfirst.backends.base import BackendError, FrontierBackend, LocalBackend
from smallfirst.backends.http import HTTPBackendError, error_detail, retry_delay
from smallfirst.backends.openai_compat import OpenAICompatBackend
from smallfirst.policy import ModelSpec, TaskSpec

T = TypeVar("T")
# Retries in tests wait a millisecond, not the production half second.
FAST = 0.001
LABELS = ["build", "test", "dependency", "security"]
CLASSIFY = TaskSpec(name="classify_issue", model="m", labels=LABELS, label_descriptions={"build": "compiler error"})
SUMMARIZE = TaskSpec(name="summarize_log", model="m", description="Summarise the log.")
LOOSE_SCHEMA = {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}
STRICT_SCHEMA = {**LOOSE_SCHEMA, "additionalProperties": False}


def run(coro: Awaitable[T]) -> T:
    """Run on a fresh loop, closing the loop's client session before the loop ends."""

    async def main() -> T:
        try:
            return await coro
        finally:
            await http.aclose()

    return asyncio.run(main())


async def collect(stream: AsyncIterator[str]) -> list[str]:
    return [piece async for piece in stream]


@pytest.fixture
def openai_srv() -> Iterator[FakeOpenAI]:
    with FakeOpenAI.start_in_thread() as srv:
        yield srv


@pytest.fixture
def anthropic_srv(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropic]:
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "sk-ant-test")
    with FakeAnthropic.start_in_thread(api_key="sk-ant-test") as srv:
        yield srv


def openai(srv: FakeOpenAI, **spec: Any) -> OpenAICompatBackend:
    return OpenAICompatBackend(
        ModelSpec(provider="openai_compat", name="fake-model", base_url=srv.base_url, **spec), backoff_s=FAST
    )


def anthropic(srv: FakeAnthropic, **spec: Any) -> AnthropicBackend:
    spec.setdefault("api_key_env", "FAKE_ANTHROPIC_KEY")
    return AnthropicBackend(
        ModelSpec(provider="anthropic", name="claude-test", base_url=srv.base_url, **spec), backoff_s=FAST
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- chat round trips


def test_both_backends_implement_the_local_and_frontier_protocols(openai_srv, anthropic_srv):
    for backend in (openai(openai_srv), anthropic(anthropic_srv)):
        assert isinstance(backend, LocalBackend) and isinstance(backend, FrontierBackend)
        assert backend.sha256 is None


def test_openai_chat_round_trip_returns_text_model_and_token_usage(openai_srv):
    openai_srv.enqueue(Reply("The build failed in module core.", prompt_tokens=21))
    answer = run(openai(openai_srv).chat([{"role": "user", "content": "why?"}], system="Be brief.", max_tokens=64))

    assert answer.text == "The build failed in module core."
    assert (answer.model, answer.tokens_in, answer.tokens_out) == ("fake-model", 21, 6)
    assert answer.latency_ms > 0
    sent = openai_srv.requests[-1].json
    assert sent["model"] == "fake-model" and sent["max_tokens"] == 64
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "why?"}]


def test_anthropic_chat_sends_system_as_top_level_field_and_reads_text_blocks(anthropic_srv):
    anthropic_srv.enqueue(Reply("Dependency conflict on guava.", prompt_tokens=30))
    # OpenAI-style callers put the system prompt in the list; the Messages API rejects that role.
    messages = [{"role": "system", "content": "Packet rules."}, {"role": "user", "content": "classify this"}]
    answer = run(anthropic(anthropic_srv).chat(messages, system="You are the frontier.", max_tokens=200))

    assert answer.text == "Dependency conflict on guava."
    assert (answer.model, answer.tokens_in, answer.tokens_out) == ("claude-test", 30, 4)
    sent = anthropic_srv.requests[-1].json
    assert sent["system"] == "You are the frontier.\n\nPacket rules."
    assert sent["messages"] == [{"role": "user", "content": "classify this"}]
    assert (sent["model"], sent["max_tokens"]) == ("claude-test", 200)


def test_fake_servers_also_run_on_the_callers_event_loop():
    async def scenario() -> str:
        async with FakeOpenAI() as srv:
            srv.enqueue("same loop")
            return (await openai(srv).chat([{"role": "user", "content": "hi"}])).text

    assert run(scenario()) == "same loop"


def test_one_client_session_is_reused_across_requests(openai_srv):
    async def scenario() -> bool:
        backend = openai(openai_srv)
        await backend.chat([{"role": "user", "content": "a"}])
        first = http.session()
        await backend.chat([{"role": "user", "content": "b"}])
        return http.session() is first

    assert run(scenario())


# ---------------------------------------------------------------- credentials


def test_openai_sends_bearer_token_from_the_configured_env_var(monkeypatch):
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-secret-123")
    with FakeOpenAI.start_in_thread(api_key="sk-secret-123") as srv:
        run(openai(srv, api_key_env="FAKE_OPENAI_KEY").chat([{"role": "user", "content": "hi"}]))
        assert srv.requests[-1].headers["authorization"] == "Bearer sk-secret-123"


def test_openai_local_server_without_key_gets_no_authorization_header(openai_srv, monkeypatch):
    monkeypatch.delenv("UNSET_LOCAL_KEY", raising=False)
    backend = openai(openai_srv, api_key_env="UNSET_LOCAL_KEY")
    assert backend.configured
    run(backend.chat([{"role": "user", "content": "hi"}]))
    assert "authorization" not in openai_srv.requests[-1].headers


def test_anthropic_sends_api_key_and_version_headers(anthropic_srv):
    run(anthropic(anthropic_srv).chat([{"role": "user", "content": "hi"}]))
    headers = anthropic_srv.requests[-1].headers
    assert headers["x-api-key"] == "sk-ant-test"
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"].startswith("application/json")


def test_anthropic_without_key_is_unconfigured_and_never_calls_the_server(anthropic_srv, monkeypatch):
    monkeypatch.delenv("NO_SUCH_ANTHROPIC_KEY", raising=False)
    backend = anthropic(anthropic_srv, api_key_env="NO_SUCH_ANTHROPIC_KEY")
    assert not backend.configured
    with pytest.raises(BackendError, match="NO_SUCH_ANTHROPIC_KEY"):
        run(backend.chat([{"role": "user", "content": "hi"}]))
    monkeypatch.setenv("NO_SUCH_ANTHROPIC_KEY", "")
    assert not backend.configured
    assert anthropic_srv.requests == []


# ---------------------------------------------------------------- retries and failures


def test_openai_retries_server_errors_then_succeeds(openai_srv):
    openai_srv.enqueue(Fault.http(500), Fault.http(429, retry_after=0), "recovered")
    answer = run(openai(openai_srv, retries=2).chat([{"role": "user", "content": "hi"}]))
    assert answer.text == "recovered"
    assert len(openai_srv.requests) == 3


def test_anthropic_retries_overloaded_529_and_rate_limit_then_succeeds(anthropic_srv):
    anthropic_srv.enqueue(Fault.http(529), Fault.http(429, retry_after=0), "recovered")
    answer = run(anthropic(anthropic_srv, retries=3).chat([{"role": "user", "content": "hi"}]))
    assert answer.text == "recovered"
    assert len(anthropic_srv.requests) == 3


def test_persistent_server_error_gives_up_after_retries_with_status_and_attempts(anthropic_srv):
    anthropic_srv.fail(3, 529)
    with pytest.raises(HTTPBackendError) as err:
        run(anthropic(anthropic_srv, retries=2).chat([{"role": "user", "content": "hi"}]))
    assert (err.value.status, err.value.attempts, err.value.error_type) == (529, 3, "overloaded_error")
    assert "Overloaded" in str(err.value) and "after 3 attempts" in str(err.value)
    assert anthropic_srv.base_url in str(err.value)


def test_bad_request_is_not_retried_and_carries_the_servers_message(openai_srv):
    openai_srv.enqueue(Fault.http(400, "Invalid 'messages[0].role': unknown."))
    with pytest.raises(HTTPBackendError) as err:
        run(openai(openai_srv, retries=3).chat([{"role": "user", "content": "hi"}]))
    assert (err.value.status, err.value.attempts) == (400, 1)
    assert "Invalid 'messages[0].role'" in str(err.value)
    assert len(openai_srv.requests) == 1


def test_wrong_api_key_is_not_retried(monkeypatch):
    monkeypatch.setenv("WRONG_KEY", "sk-wrong-000000")
    with FakeOpenAI.start_in_thread(api_key="sk-right-999999") as srv:
        with pytest.raises(HTTPBackendError) as err:
            run(openai(srv, api_key_env="WRONG_KEY", retries=3).chat([{"role": "user", "content": "hi"}]))
        assert (err.value.status, err.value.attempts, len(srv.requests)) == (401, 1, 1)
        assert "Incorrect API key" in str(err.value)
        assert "sk-wrong-000000" not in str(err.value)


def test_anthropic_wrong_key_reports_authentication_error(anthropic_srv, monkeypatch):
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "sk-ant-wrong")
    with pytest.raises(HTTPBackendError) as err:
        run(anthropic(anthropic_srv, retries=2).chat([{"role": "user", "content": "hi"}]))
    assert (err.value.status, err.value.attempts, err.value.error_type) == (401, 1, "authentication_error")


def test_timeout_raises_backend_error_after_all_attempts(openai_srv):
    openai_srv.enqueue(Fault.slow(60), Fault.slow(60))
    with pytest.raises(HTTPBackendError) as err:
        run(openai(openai_srv, timeout_s=0.2, retries=1).chat([{"role": "user", "content": "hi"}]))
    assert (err.value.status, err.value.attempts) == (None, 2)
    assert "timed out" in str(err.value)


def test_dropped_connection_raises_backend_error(anthropic_srv):
    anthropic_srv.enqueue(Fault.drop(), Fault.drop())
    with pytest.raises(HTTPBackendError) as err:
        run(anthropic(anthropic_srv, retries=1).chat([{"role": "user", "content": "hi"}]))
    assert (err.value.status, err.value.attempts) == (None, 2)


def test_dropped_connection_is_retried(openai_srv):
    openai_srv.enqueue(Fault.drop(), "second try")
    assert run(openai(openai_srv, retries=1).chat([{"role": "user", "content": "hi"}])).text == "second try"


def test_refused_connection_raises_backend_error_naming_the_server():
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = OpenAICompatBackend(
        ModelSpec(provider="openai_compat", name="m", base_url=url, retries=1), backoff_s=FAST
    )
    with pytest.raises(HTTPBackendError) as err:
        run(backend.chat([{"role": "user", "content": "hi"}]))
    assert (err.value.status, err.value.attempts) == (None, 2)
    assert url in str(err.value) and "cannot connect" in str(err.value)


def test_retry_after_is_honoured_and_capped():
    assert retry_delay(1, "3") == 3.0
    assert retry_delay(1, "0") == 0.0
    assert retry_delay(1, "3600") == http.MAX_RETRY_AFTER_S
    assert retry_delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    # Without Retry-After: exponential, with jitter between half and all of the step.
    assert retry_delay(1, None, backoff_s=0.5, rand=lambda: 0.0) == 0.25
    assert retry_delay(3, None, backoff_s=0.5, rand=lambda: 1.0) == 2.0
    assert retry_delay(30, None, backoff_s=0.5, rand=lambda: 1.0) == http.MAX_BACKOFF_S


def test_error_detail_reads_each_servers_error_shape():
    openai_body = {
        "error": {"message": "bad key", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
    }
    anthropic_body = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": "r",
    }
    assert error_detail(json.dumps(openai_body).encode()) == ("bad key", "invalid_request_error")
    assert error_detail(json.dumps(anthropic_body).encode()) == ("Overloaded", "overloaded_error")
    assert error_detail(b'{"error": "model \\"x\\" not found"}') == ('model "x" not found', None)  # Ollama
    assert error_detail(b"<html>502 Bad Gateway</html>") == ("<html>502 Bad Gateway</html>", None)


# ---------------------------------------------------------------- local-model use: confidence from logprobs


def test_classify_turns_first_token_logprobs_into_label_probabilities(openai_srv):
    first = {"test": math.log(0.70), " build": math.log(0.15), "dep": math.log(0.05), "The": math.log(0.10)}
    openai_srv.enqueue(Reply("test", top_logprobs=[first]))
    out = run(openai(openai_srv).complete("FAILED AppTest.testLogin", CLASSIFY))

    assert (out.label, out.answer) == ("test", "test")
    assert out.scores == pytest.approx(
        {"test": 0.70 / 0.90, "build": 0.15 / 0.90, "dependency": 0.05 / 0.90, "security": 0.0}
    )
    # The 10% spent on a token that starts no label lowers confidence below the label share.
    assert out.confidence == pytest.approx(0.70)
    assert out.confidence_raw == out.confidence
    sent = openai_srv.requests[-1].json
    assert (sent["logprobs"], sent["top_logprobs"], sent["temperature"]) == (True, 10, 0)
    assert "build, test" not in sent["messages"][0]["content"]  # labels are listed one per line
    assert "- build: compiler error" in sent["messages"][0]["content"]


def test_classify_splits_a_token_shared_by_several_labels_but_credits_the_generated_one(openai_srv):
    labels = TaskSpec(name="c", model="m", labels=["access", "accept", "other"])
    first = {"acc": math.log(0.6), "ac": math.log(0.3), "other": math.log(0.1)}
    openai_srv.enqueue(Reply("access", tokens=["acc", "ess"], top_logprobs=[first]))
    out = run(openai(openai_srv).complete("403 Forbidden", labels))
    # "acc" was generated and the answer became "access"; "ac" could begin either label.
    assert out.scores == pytest.approx({"access": 0.75, "accept": 0.15, "other": 0.10})
    assert out.label == "access"


def test_classify_reads_the_first_word_token_after_a_leading_quote(openai_srv):
    openai_srv.enqueue(
        Reply(
            '"build"',
            tokens=['"', "build", '"'],
            top_logprobs=[{'"': -0.01}, {"build": math.log(0.9), "test": math.log(0.1)}],
        )
    )
    out = run(openai(openai_srv).complete("error: cannot find symbol", CLASSIFY))
    assert out.label == "build"
    assert out.confidence == pytest.approx(0.9)


def test_classify_without_logprobs_keeps_the_label_but_has_no_confidence(openai_srv):
    # A server without logprob support; the model even claims a confidence, which is never read.
    openai_srv.enqueue(Reply("Build (confidence: 0.99)", logprobs=False))
    out = run(openai(openai_srv).complete("error: cannot find symbol", CLASSIFY))
    assert (out.label, out.answer) == ("build", "build")
    assert out.confidence is None and out.confidence_raw is None


def test_classify_answer_outside_the_labels_is_returned_raw_with_zero_confidence(openai_srv):
    openai_srv.enqueue(Reply("I cannot tell", top_logprobs=[{"I": -0.1}]))
    out = run(openai(openai_srv).complete("???", CLASSIFY))
    assert (out.label, out.answer, out.confidence) == (None, "I cannot tell", 0.0)


def test_json_task_sends_response_format_with_the_schema(openai_srv):
    loose = TaskSpec(name="shape json", model="m", schema=LOOSE_SCHEMA)
    strict = TaskSpec(name="shape_json", model="m", schema=STRICT_SCHEMA)
    openai_srv.enqueue(Reply('{"summary": "x"}'), Reply('{"summary": "y"}'))
    out = run(openai(openai_srv).complete("text", loose))
    run(openai(openai_srv).complete("text", strict))

    assert out.answer == '{"summary": "x"}' and out.confidence is not None
    formats = [r.json["response_format"] for r in openai_srv.requests]
    assert formats[0] == {
        "type": "json_schema",
        "json_schema": {"name": "shape_json", "schema": LOOSE_SCHEMA, "strict": False},
    }
    # Strict structured outputs only where OpenAI accepts the schema as strict.
    assert formats[1]["json_schema"]["strict"] is True


def test_text_task_confidence_is_the_geometric_mean_token_probability(openai_srv):
    tokens = ["Build", " failed", "."]
    probs = [0.9, 0.5, 0.8]
    openai_srv.enqueue(
        Reply(
            "Build failed.", tokens=tokens, top_logprobs=[{t: math.log(p)} for t, p in zip(tokens, probs, strict=True)]
        ),
    )
    out = run(openai(openai_srv, max_tokens=300).complete("long log", SUMMARIZE))

    assert out.answer == "Build failed." and out.label is None
    assert out.confidence == pytest.approx((0.9 * 0.5 * 0.8) ** (1 / 3))
    sent = openai_srv.requests[-1].json
    assert sent["max_tokens"] == 300 and "response_format" not in sent
    assert sent["messages"][0] == {"role": "system", "content": "Summarise the log."}


def test_truncated_generation_is_marked_in_extra(openai_srv, anthropic_srv):
    openai_srv.enqueue(Reply("one two three four"))
    anthropic_srv.enqueue(Reply("one two three four"))
    out_o = run(openai(openai_srv, max_tokens=2).complete("x", SUMMARIZE))
    out_a = run(anthropic(anthropic_srv, max_tokens=2).complete("x", SUMMARIZE))
    assert (out_o.answer, out_o.extra["truncated"]) == ("one two", True)
    assert (out_a.answer, out_a.extra["truncated"], out_a.extra["finish_reason"]) == ("one two", True, "max_tokens")


def test_anthropic_as_local_model_parses_the_label_without_confidence(anthropic_srv):
    anthropic_srv.enqueue(Reply("dependency"))
    out = run(anthropic(anthropic_srv).complete("Could not resolve artifact", CLASSIFY))
    assert (out.label, out.answer, out.confidence) == ("dependency", "dependency", None)
    sent = anthropic_srv.requests[-1].json
    assert sent["temperature"] == 0 and "dependency" in sent["system"]


# ---------------------------------------------------------------- streaming


LONG = "The failure comes from a version conflict between guava 31 and guava 32 in module core."


def test_openai_stream_deltas_reassemble_the_full_text(openai_srv):
    openai_srv.enqueue(LONG)
    pieces = run(collect(openai(openai_srv).stream_chat([{"role": "user", "content": "why?"}], system="s")))
    assert len(pieces) > 5 and "".join(pieces) == LONG
    assert openai_srv.requests[-1].json["stream"] is True


def test_anthropic_stream_deltas_reassemble_the_full_text(anthropic_srv):
    anthropic_srv.enqueue(LONG)
    pieces = run(collect(anthropic(anthropic_srv).stream_chat([{"role": "user", "content": "why?"}], system="s")))
    assert len(pieces) > 5 and "".join(pieces) == LONG
    assert anthropic_srv.requests[-1].json["stream"] is True


def test_stream_retries_before_the_answer_begins(anthropic_srv):
    anthropic_srv.enqueue(Fault.http(529), LONG)
    pieces = run(collect(anthropic(anthropic_srv, retries=1).stream_chat([{"role": "user", "content": "why?"}])))
    assert "".join(pieces) == LONG and len(anthropic_srv.requests) == 2


def test_anthropic_error_event_mid_stream_raises_backend_error(anthropic_srv):
    anthropic_srv.enqueue(Fault.stream_error(529))
    with pytest.raises(HTTPBackendError, match="overloaded_error") as err:
        run(collect(anthropic(anthropic_srv, retries=2).stream_chat([{"role": "user", "content": LONG}])))
    assert err.value.attempts == 1  # part of the answer was already out: no silent retry


def test_openai_error_chunk_mid_stream_raises_backend_error(openai_srv):
    openai_srv.enqueue(Fault.stream_error(500))
    with pytest.raises(HTTPBackendError, match="server_error"):
        run(collect(openai(openai_srv).stream_chat([{"role": "user", "content": LONG}])))


# ---------------------------------------------------------------- the fakes hold clients to the real rules


def test_fake_anthropic_rejects_what_the_real_api_rejects(anthropic_srv):
    url = anthropic_srv.base_url + "/v1/messages"
    good = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    key = {"x-api-key": "sk-ant-test"}
    cases = [
        (good, key, "anthropic-version: header is required"),
        (
            {**good, "messages": [{"role": "system", "content": "s"}]},
            {**key, "anthropic-version": "2023-06-01"},
            "role",
        ),
        (
            {k: v for k, v in good.items() if k != "max_tokens"},
            {**key, "anthropic-version": "2023-06-01"},
            "max_tokens",
        ),
    ]
    for body, headers, message in cases:
        with pytest.raises(HTTPBackendError) as err:
            run(http.post_json(url, body, headers, timeout_s=5, retries=0))
        assert (err.value.status, err.value.error_type) == (400, "invalid_request_error")
        assert message in str(err.value)


def test_fake_openai_stream_ends_with_usage_chunk_and_done_when_asked(openai_srv):
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    async def events() -> list[str]:
        stream = http.post_sse(openai_srv.base_url + "/chat/completions", body, {}, timeout_s=5, retries=0)
        return [ev.data async for ev in stream]

    data = run(events())
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "m" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2
