"""Prometheus metrics, observed from the audit records of real routed decisions."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from fakes import FakeAnthropic, Reply
from smallfirst.audit import AuditLog
from smallfirst.metrics import MeteredAudit, Metrics
from smallfirst.policy import parse_policy
from smallfirst.router import Router
from smallfirst.tasks import Task

from conftest import MINIMAL_POLICY
from test_router import REGISTRY_403, ROUTINE, StubLocal

KEY_ENV = "SMALLFIRST_TEST_FRONTIER_KEY"


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


def metered_router(policy_text: str = MINIMAL_POLICY, audit: AuditLog | None = None, **stub):
    policy = parse_policy(policy_text)
    metrics = Metrics(known_tasks=lambda: policy.tasks)
    local = StubLocal(**{"label": "build", "confidence": 0.95, **stub})
    router = Router(policy, audit=MeteredAudit(metrics, audit),  # type: ignore[arg-type]
                    backends={"local_classifier": local, "local_default": local})
    return router, metrics


def test_each_decision_is_counted_once_by_task_route_reason_mode_and_outcome():
    router, m = metered_router()
    router.route(Task(ROUTINE, "classify_issue"))
    router.route(Task(ROUTINE, "classify_issue"))
    router.route(Task(REGISTRY_403, "classify_issue"))
    router.close()
    assert value(m, "smallfirst_requests_total", task_type="classify_issue", route="local", reason="none",
                 mode="live", outcome="answered_local") == 2
    assert value(m, "smallfirst_requests_total", task_type="classify_issue", route="frontier",
                 reason="hard_stop_access", mode="live", outcome="no_frontier") == 1
    assert value(m, "smallfirst_request_duration_seconds_count", task_type="classify_issue", route="local") == 2


def test_task_names_outside_the_policy_never_become_label_values():
    router, m = metered_router()
    for name in ("x1", "x2", None):
        router.route(Task(ROUTINE, name))
    router.close()
    labels = {dict(k[1]).get("task_type") for k in samples(m) if k[0] == "smallfirst_requests_total"}
    assert labels == {"unknown"}
    assert value(m, "smallfirst_requests_total", task_type="unknown", route="frontier", reason="unknown_task",
                 mode="live", outcome="no_frontier") == 3


def test_local_acceptance_ratio_per_task_and_overall_counts_shadow_candidates():
    router, m = metered_router(MINIMAL_POLICY.replace("mode: live", "mode: shadow"))
    router.route(Task(ROUTINE, "classify_issue"))  # would have stayed local
    router.route(Task(REGISTRY_403, "classify_issue"))  # hard stop
    router.route(Task(ROUTINE, "propose_code_change"))
    router.close()
    assert value(m, "smallfirst_local_acceptance_ratio", task_type="classify_issue") == 0.5
    assert value(m, "smallfirst_local_acceptance_ratio", task_type="propose_code_change") == 0.0
    assert abs(value(m, "smallfirst_local_acceptance_ratio", task_type="*") - 1 / 3) < 1e-9


def test_frontier_tokens_cost_and_latency_use_the_opentelemetry_genai_names(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    with FakeAnthropic.start_in_thread(api_key="k") as srv:
        srv.enqueue(Reply("access: the token was refused", prompt_tokens=400))
        text = MINIMAL_POLICY.replace(
            "frontier_default: {provider: anthropic, name: claude-sonnet-4-6, api_key_env: SMALLFIRST_TEST_NO_SUCH_KEY}",
            f"frontier_default: {{provider: anthropic, name: claude-sonnet-4-6, api_key_env: {KEY_ENV}, "
            f"base_url: '{srv.base_url}', retries: 0}}")
        router, m = metered_router(text)
        router.route(Task(REGISTRY_403, "classify_issue"))
        router.route(Task(ROUTINE, "classify_issue"))
        router.close()
    assert value(m, "gen_ai_client_token_usage_sum", gen_ai_operation_name="chat", gen_ai_response_model="claude-sonnet-4-6",
                 gen_ai_token_type="input", tier="frontier") == 400
    assert value(m, "smallfirst_tokens_total", tier="frontier", type="output") == 5
    assert value(m, "gen_ai_client_operation_duration_seconds_count", gen_ai_operation_name="chat",
                 gen_ai_response_model="claude-sonnet-4-6", tier="frontier") == 1
    assert value(m, "gen_ai_client_operation_duration_seconds_count", gen_ai_operation_name="chat",
                 gen_ai_response_model="stub-model", tier="local") == 1
    expected = (400 * 3.00 + 5 * 15.00) / 1e6
    assert abs(value(m, "smallfirst_cost_usd_total") - expected) < 1e-6
    assert value(m, "smallfirst_frontier_only_cost_usd_total") > expected


def test_audit_writer_counters_are_exposed(tmp_path):
    audit = AuditLog.sqlite(tmp_path / "a.db")
    router, m = metered_router(audit=audit)
    m.watch_audit(audit)
    router.route(Task(ROUTINE, "classify_issue"))
    router.close()
    audit.flush()
    assert value(m, "smallfirst_audit_records_total", state="written") == 1
    assert value(m, "smallfirst_audit_pending") == 0
    audit.close()
