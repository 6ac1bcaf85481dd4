"""OpenTelemetry: one GenAI span per decision, off by default, exported over real OTLP/HTTP.

Spans are read back through the SDK's in-memory exporter, and once through a fake collector on
127.0.0.1 that decodes the OTLP protobuf, as a real collector receives it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conftest import MINIMAL_POLICY
from fakes import FakeAnthropic, Fault, Reply
from fakes.otlp_collector import FakeCollector
from smallfirst.policy import parse_policy
from smallfirst.router import Router
from smallfirst.tasks import Task
from smallfirst.telemetry import Telemetry, TelemetryError, TelemetrySettings, settings_for
from test_router import REGISTRY_403, ROUTINE, StubLocal
from test_server import KEY, KEY_ENV, ServerThread, server_policy, stub_backends, user

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
OTEL_VARS = ("OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
             "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME")


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch):
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def spans():
    """A Telemetry on an SDK provider whose spans land in memory, synchronously."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Telemetry(provider), exporter


def anthropic_policy(srv: FakeAnthropic, text: str = MINIMAL_POLICY) -> str:
    return text.replace(
        "frontier_default: {provider: anthropic, name: claude-sonnet-4-6, api_key_env: SMALLFIRST_TEST_NO_SUCH_KEY}",
        f"frontier_default: {{provider: anthropic, name: claude-sonnet-4-6, api_key_env: {KEY_ENV}, "
        f"base_url: '{srv.base_url}', retries: 1, timeout_s: 5}}",
    )


def routed(policy_text: str, telemetry: Telemetry, **stub) -> Router:
    local = StubLocal(**{"label": "build", "confidence": 0.95, **stub})
    return Router(parse_policy(policy_text), backends={"local_classifier": local, "local_default": local},
                  telemetry=telemetry)


@pytest.fixture
def frontier(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeAnthropic.start_in_thread(api_key=KEY) as srv:
        yield srv


# ---------------------------------------------------------------------- off by default


def test_telemetry_is_off_by_default_and_never_imports_opentelemetry(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from conftest import MINIMAL_POLICY
        from test_router import ROUTINE, StubLocal
        from smallfirst.policy import parse_policy
        from smallfirst.router import Router
        from smallfirst.server.app import create_app
        from smallfirst.tasks import Task
        stub = StubLocal(label="build", confidence=0.95)
        router = Router(parse_policy(MINIMAL_POLICY), backends={{"local_classifier": stub}})
        assert router.route(Task(ROUTINE, "classify_issue")).route == "local"
        router.close()
        create_app(parse_policy(MINIMAL_POLICY), warm=False)
        assert router.telemetry is None
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print("loaded:", loaded)
        assert not loaded, loaded
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_settings_come_from_the_policy_first_then_the_standard_environment_variables():
    plain = parse_policy(MINIMAL_POLICY)
    assert settings_for(plain, {}) is None
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SERVICE_NAME": "router-eu"}
    # The exporter itself reads OTEL_EXPORTER_OTLP_* (and appends /v1/traces to the base URL).
    assert settings_for(plain, env) == TelemetrySettings(None, "http/protobuf", "router-eu")
    assert settings_for(plain, {**env, "OTEL_SDK_DISABLED": "true"}) is None

    configured = parse_policy(MINIMAL_POLICY + "telemetry: {otlp_endpoint: 'http://otel:4318/', service_name: sf}\n")
    assert settings_for(configured, env) == TelemetrySettings("http://otel:4318/v1/traces", "http/protobuf", "sf")
    grpc = parse_policy(MINIMAL_POLICY + "telemetry: {otlp_endpoint: 'otel:4317', protocol: grpc}\n")
    assert settings_for(grpc, {}) == TelemetrySettings("otel:4317", "grpc", "smallfirst")
    with pytest.raises(TelemetryError, match="http/json"):
        settings_for(plain, {**env, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_an_unknown_telemetry_key_in_the_policy_is_an_error_with_its_line(write_policy):
    from smallfirst.policy import PolicyError, load_policy

    path = write_policy(MINIMAL_POLICY + "telemetry:\n  otlp_endpont: http://otel:4318\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert err.value.field == "telemetry.otlp_endpont" and err.value.line == MINIMAL_POLICY.count("\n") + 2


def test_grpc_without_its_exporter_installed_says_what_to_install(monkeypatch, write_policy):
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    with pytest.raises(TelemetryError, match="pip install opentelemetry-exporter-otlp-proto-grpc"):
        Telemetry.otlp(TelemetrySettings("otel:4317", "grpc", "smallfirst"))
    # The command says so in one line, before any request.
    from smallfirst.cli import main

    path = write_policy(MINIMAL_POLICY + "telemetry: {otlp_endpoint: 'otel:4317', protocol: grpc}\n")
    log = path.with_name("build.log")
    log.write_text(ROUTINE, encoding="utf-8")
    assert main(["route", "--policy", str(path), "--task", "classify_issue", str(log)]) == 2


# ---------------------------------------------------------------------- the span of each kind of decision


def test_a_local_answer_is_one_internal_span_with_the_genai_and_routing_attributes(spans):
    telemetry, exporter = spans
    router = routed(MINIMAL_POLICY, telemetry)
    r = router.route(Task(ROUTINE, "classify_issue", user_group="beta"))
    router.close()
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat all-MiniLM-L6-v2" and span.kind is SpanKind.INTERNAL
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "smallfirst",
        "gen_ai.request.model": "all-MiniLM-L6-v2",
        "gen_ai.request.stream": False,
        "gen_ai.response.model": "stub-model",
        "smallfirst.decision_id": r.decision_id,
        "smallfirst.task": "classify_issue",
        "smallfirst.route": "local",
        "smallfirst.reason": "none",
        "smallfirst.mode": "live",
        "smallfirst.outcome": "answered_local",
        "smallfirst.user_group": "beta",
        "smallfirst.route_candidate": "local",
        "smallfirst.confidence": pytest.approx(0.95),
    }
    assert span.status.status_code is StatusCode.UNSET
    assert span.parent is None  # no caller trace: a root span
    assert 0 < span.end_time - span.start_time < 5e9


def test_an_escalation_is_a_client_span_naming_the_frontier_server_and_its_token_usage(frontier, spans):
    telemetry, exporter = spans
    frontier.enqueue(Reply("access: the registry refused the token", prompt_tokens=420))
    router = routed(anthropic_policy(frontier), telemetry)
    router.route(Task(REGISTRY_403, "classify_issue"))
    router.close()
    (span,) = exporter.get_finished_spans()
    a = span.attributes
    assert span.name == "chat claude-sonnet-4-6" and span.kind is SpanKind.CLIENT
    assert (a["gen_ai.provider.name"], a["gen_ai.request.model"], a["gen_ai.response.model"]) == (
        "anthropic", "claude-sonnet-4-6", "claude-sonnet-4-6")
    assert (a["server.address"], a["server.port"]) == ("127.0.0.1", int(frontier.origin.rsplit(":", 1)[1]))
    assert a["gen_ai.usage.input_tokens"] == 420 and a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.response.id"].startswith("msg_")
    assert (a["smallfirst.route"], a["smallfirst.reason"], a["smallfirst.hard_stop"]) == (
        "frontier", "hard_stop_access", "access")
    assert "error.type" not in a and span.status.status_code is StatusCode.UNSET


def test_a_shadow_span_says_what_the_router_would_have_done(frontier, spans):
    telemetry, exporter = spans
    frontier.enqueue(Reply("build"))
    router = routed(anthropic_policy(frontier, MINIMAL_POLICY.replace("mode: live", "mode: shadow")), telemetry)
    router.route(Task(ROUTINE, "classify_issue"))
    router.close()
    (span,) = exporter.get_finished_spans()
    a = span.attributes
    assert (a["smallfirst.mode"], a["smallfirst.route"], a["smallfirst.route_candidate"]) == ("shadow", "frontier", "local")
    assert a["smallfirst.confidence"] == pytest.approx(0.95)  # the local model's, recorded beside the frontier's answer
    assert a["gen_ai.response.model"] == "claude-sonnet-4-6"


def test_failed_decisions_carry_error_type_and_an_error_status_with_secrets_masked(frontier, spans):
    telemetry, exporter = spans
    frontier.enqueue(Fault.http(529, retry_after=0), Fault.http(529, retry_after=0))
    router = routed(anthropic_policy(frontier), telemetry, label="test", confidence=0.3)
    router.route(Task(ROUTINE, "classify_issue"))  # confidence_low -> the frontier, which is overloaded
    router.close()
    no_frontier = routed(MINIMAL_POLICY, telemetry)
    no_frontier.route(Task(ROUTINE, "propose_code_change"))
    with pytest.raises(ValueError):
        no_frontier.route(Task("", "classify_issue"))
    secret = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
    failing = routed(MINIMAL_POLICY, telemetry, fail=RuntimeError(f"model crashed near {secret}"))
    failing.route(Task(ROUTINE, "classify_issue"))  # local_error, then no frontier either
    no_frontier.close(); failing.close()
    overloaded, unconfigured, rejected, crashed = exporter.get_finished_spans()
    assert overloaded.attributes["error.type"] == "529" and overloaded.status.status_code is StatusCode.ERROR
    assert "529" in overloaded.status.description
    assert unconfigured.attributes["error.type"] == "no_frontier"
    assert rejected.attributes["error.type"] == "input_rejected" and rejected.attributes["smallfirst.route"] == "rejected"
    assert "gen_ai.request.model" not in rejected.attributes and rejected.name == "chat"
    assert crashed.attributes["smallfirst.reason"] == "local_error"
    assert secret not in (crashed.status.description or "") and "REDACTED" in crashed.status.description


# ---------------------------------------------------------------------- through the HTTP service


def test_a_streamed_answer_is_one_span_that_ends_after_the_last_byte_and_joins_the_callers_trace(spans, monkeypatch):
    from fakes import FakeOpenAI

    telemetry, exporter = spans
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeOpenAI.start_in_thread(api_key=KEY) as up:
        up.enqueue(Reply("a patch that renames the symbol", prompt_tokens=77))
        with ServerThread(server_policy(up), backends=stub_backends(), telemetry=telemetry) as srv:
            client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="caller-key", max_retries=0,
                                   default_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
            stream = client.chat.completions.create(model="smallfirst/propose_code_change", messages=user(ROUTINE),
                                                    stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "a patch that renames the symbol"
    (span,) = exporter.get_finished_spans()
    a = span.attributes
    # The usage comes in the stream's last event: a span that has it was made when the stream ended.
    assert span.context.trace_id == int(TRACE_ID, 16) and span.parent.span_id == int(PARENT_ID, 16)
    assert span.kind is SpanKind.CLIENT and span.name == "chat gpt-frontier"
    assert a["gen_ai.request.stream"] is True and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.usage.input_tokens"] == 77 and a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.response.id"].startswith("chatcmpl-")
    assert (a["smallfirst.reason"], a["smallfirst.outcome"]) == ("policy_requires_frontier", "answered_frontier")


def test_spans_reach_an_otlp_collector_as_protobuf_over_http(monkeypatch):
    with FakeCollector.start_in_thread() as collector:
        # The standard variable alone turns it on for `smallfirst serve`; export happens off the
        # request, and stopping the service sends what is still queued.
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.base_url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "smallfirst-test")
        with ServerThread(server_policy(None), backends=stub_backends()) as srv:
            client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="caller-key", max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="smallfirst/classify_issue", messages=user(ROUTINE),
                extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        assert collector.arrived.wait(10)
        # The policy's own setting, used by the library's Router.
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        text = MINIMAL_POLICY + f"telemetry: {{otlp_endpoint: '{collector.base_url}', service_name: lib}}\n"
        router = Router(parse_policy(text), backends=stub_backends())
        router.route(Task(REGISTRY_403, "classify_issue"))
        router.close()
    served, library = collector.spans
    assert served["resource"]["service.name"] == "smallfirst-test" and served["scope"] == "smallfirst"
    assert served["trace_id"] == TRACE_ID and served["parent_span_id"] == PARENT_ID
    assert served["name"] == "chat all-MiniLM-L6-v2" and served["kind"] == 1  # internal
    assert served["attributes"]["smallfirst.decision_id"] == raw.headers["x-smallfirst-decision-id"]
    assert served["attributes"]["smallfirst.confidence"] == pytest.approx(0.95)
    assert served["end_ns"] > served["start_ns"]
    assert library["resource"]["service.name"] == "lib" and library["parent_span_id"] == ""
    assert library["attributes"]["error.type"] == "no_frontier" and library["status_code"] == 2
    assert library["attributes"]["smallfirst.reason"] == "hard_stop_access"
