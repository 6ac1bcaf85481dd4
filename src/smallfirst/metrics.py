"""Prometheus metrics, observed from the same audit records the store receives.

Every decision passes through `MeteredAudit.submit()` on its way to the audit log, so the metrics
count exactly what the audit trail holds: one observation per decision, a streamed answer
observed when its stream ends (with the token counts that only arrive then).

Names follow the OpenTelemetry GenAI conventions where one exists, as their Prometheus exporter
writes them (dots become underscores, the unit is appended): `gen_ai_client_operation_duration_seconds`
(one model call, per tier) and `gen_ai_client_token_usage`. Everything else is `smallfirst_*`,
labelled with the words used everywhere else: task_type, route, reason, tier.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from smallfirst.audit import AuditLog, AuditRecord

__all__ = ["CONTENT_TYPE_LATEST", "MeteredAudit", "Metrics"]

# OpenTelemetry's advised bucket boundaries for gen_ai.client.operation.duration (seconds) and
# gen_ai.client.token.usage (tokens).
_OPERATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
# Whole requests are mostly sub-millisecond routing plus a model call: finer at the low end.
_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ALL_TASKS = "*"  # the task_type label of the overall acceptance ratio, as local_groups uses '*'

# The *_created series prometheus-client adds to every counter and histogram double the page and
# say only when the process started; Prometheus does not need them.
disable_created_metrics()


class Metrics:
    """One registry per service, so two services in one process (tests) never share counters."""

    def __init__(self, known_tasks: Callable[[], Collection[str]] = frozenset, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        # A task label only ever takes a policy's task names: a caller who sends
        # model "smallfirst/<anything>" must not create new time series.
        self._known_tasks = known_tasks
        r = self.registry
        self.requests = Counter(
            "smallfirst_requests", "Decisions by task type, route, reason, mode and outcome.",
            ["task_type", "route", "reason", "mode", "outcome"], registry=r,
        )
        self.request_duration = Histogram(
            "smallfirst_request_duration_seconds", "Time from request to decision (to the last byte when streamed).",
            ["task_type", "route"], buckets=_REQUEST_BUCKETS, registry=r,
        )
        self.operation_duration = Histogram(
            "gen_ai_client_operation_duration_seconds", "GenAI operation duration: one model call, per tier.",
            ["gen_ai_operation_name", "gen_ai_response_model", "tier"], buckets=_OPERATION_BUCKETS, registry=r,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage", "Tokens used per model call, per tier and token type.",
            ["gen_ai_operation_name", "gen_ai_response_model", "gen_ai_token_type", "tier"],
            buckets=_TOKEN_BUCKETS, registry=r,
        )
        self.tokens = Counter("smallfirst_tokens", "Tokens by tier and type.", ["tier", "type"], registry=r)
        self.cost = Counter("smallfirst_cost_usd", "Cost of the decisions in USD (policy prices).", registry=r)
        self.frontier_only_cost = Counter(
            "smallfirst_frontier_only_cost_usd", "What the same requests cost sent to the frontier, in USD.", registry=r
        )
        self.acceptance = Gauge(
            "smallfirst_local_acceptance_ratio",
            "Share of decisions answered locally (in shadow mode: that would have been), per task; '*' is all.",
            ["task_type"], registry=r,
        )
        self.admin_calls = Counter(
            "smallfirst_admin_calls", "Admin API calls, allowed or refused.", ["action", "allowed"], registry=r
        )
        self.kill_switch = Gauge("smallfirst_kill_switch", "1 while the kill switch is on.", registry=r)
        self.ready = Gauge("smallfirst_ready", "1 once the local models are loaded.", registry=r)
        self.policy = Info("smallfirst_policy", "The policy in force.", registry=r)
        self._counts: dict[str, list[int]] = {}  # task -> [locally accepted, decided]
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._lock = threading.Lock()

    def _child(self, metric: Any, *labels: str) -> Any:
        # labels() validates and hashes on every call; the label sets are few, so keep the children.
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, rec: "AuditRecord") -> None:
        task = rec.task_type if rec.task_type in self._known_tasks() else "unknown"
        reason = rec.reason or "none"
        self._child(self.requests, task, rec.route, reason, rec.mode, rec.outcome or "none").inc()
        latency = rec.latency_ms or {}
        self._child(self.request_duration, task, rec.route).observe(latency.get("total", 0.0) / 1000)
        tokens = rec.tokens or {}
        if latency.get("local") and rec.local_model:
            self._model_call("local", rec.local_model, latency["local"], tokens.get("local_in", 0), tokens.get("local_out", 0))
        if latency.get("frontier") and rec.frontier_model:
            self._model_call(
                "frontier", rec.frontier_model, latency["frontier"], tokens.get("frontier_in", 0), tokens.get("frontier_out", 0)
            )
        if rec.cost_usd:
            self.cost.inc(rec.cost_usd)
        if rec.frontier_only_cost_usd:
            self.frontier_only_cost.inc(rec.frontier_only_cost_usd)
        if rec.route != "rejected":
            accepted = rec.route_candidate == "local"
            with self._lock:
                for key in (task, ALL_TASKS):
                    c = self._counts.setdefault(key, [0, 0])
                    c[0] += accepted
                    c[1] += 1
                    self._child(self.acceptance, key).set(c[0] / c[1])

    def _model_call(self, tier: str, model: str, ms: float, tokens_in: int, tokens_out: int) -> None:
        self._child(self.operation_duration, "chat", model, tier).observe(ms / 1000)
        for kind, n in (("input", tokens_in), ("output", tokens_out)):
            if n:
                self._child(self.token_usage, "chat", model, kind, tier).observe(n)
                self._child(self.tokens, tier, kind).inc(n)

    def set_policy(self, version_tag: str, source: str, kill_switch: bool) -> None:
        self.policy.info({"version": version_tag, "source": source})
        self.kill_switch.set(1 if kill_switch else 0)

    def watch_audit(self, audit: "AuditLog") -> None:
        """Expose the audit writer's own counters: a store that fails shows up on the dashboard."""
        self.registry.register(_AuditCollector(audit))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _AuditCollector:
    def __init__(self, audit: "AuditLog"):
        self.audit = audit

    def collect(self) -> Iterator[Any]:
        s = self.audit.stats
        c = CounterMetricFamily("smallfirst_audit_records", "Audit records by what became of them.", labels=["state"])
        for state in ("submitted", "written", "spilled", "replayed", "lost"):
            c.add_metric([state], getattr(s, state))
        # Rows the store already had: a batch retried after a lost commit answer, a spill replayed twice.
        c.add_metric(["duplicate_ignored"], s.duplicates_ignored)
        yield c
        e = CounterMetricFamily("smallfirst_audit_write_errors", "Failed audit store writes (retried).")
        e.add_metric([], s.write_errors)
        yield e
        g = GaugeMetricFamily("smallfirst_audit_pending", "Audit records submitted and not yet written or spilled.")
        g.add_metric([], max(0, s.submitted - s.written - s.spilled - s.lost))
        yield g

    def describe(self) -> Iterator[Any]:
        return iter(())


class MeteredAudit:
    """What the router is given as its audit log: observes each record, then hands it on to the
    real log (or to none: metrics still work without an audit store)."""

    def __init__(self, metrics: Metrics, inner: "AuditLog | None"):
        self.metrics = metrics
        self.inner = inner

    def submit(self, record: "AuditRecord") -> None:
        self.metrics.observe(record)
        if self.inner is not None:
            self.inner.submit(record)

    def flush(self, timeout: float = 10.0) -> bool:
        return self.inner.flush(timeout) if self.inner is not None else True

    def close(self, timeout: float = 10.0) -> None:
        if self.inner is not None:
            self.inner.close(timeout)
