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
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
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
        self.decisions = _DecisionSeries()
        r.register(self.decisions)
        self.admin_calls = Counter(
            "smallfirst_admin_calls", "Admin API calls, allowed or refused.", ["action", "allowed"], registry=r
        )
        self.kill_switch = Gauge("smallfirst_kill_switch", "1 while the kill switch is on.", registry=r)
        self.ready = Gauge("smallfirst_ready", "1 once the local models are loaded.", registry=r)
        self.policy = Info("smallfirst_policy", "The policy in force.", registry=r)

    def observe(self, rec: "AuditRecord") -> None:
        task = rec.task_type if rec.task_type in self._known_tasks() else "unknown"
        self.decisions.observe(task, rec)

    def set_policy(self, version_tag: str, source: str, kill_switch: bool) -> None:
        self.policy.info({"version": version_tag, "source": source})
        self.kill_switch.set(1 if kill_switch else 0)

    def watch_audit(self, audit: "AuditLog") -> None:
        """Expose the audit writer's own counters: a store that fails shows up on the dashboard."""
        self.registry.register(_AuditCollector(audit))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Histograms:
    """One histogram family as plain numbers: label values -> [count per bucket ..., +Inf, sum]."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]):
        self.name, self.doc, self.labels, self.bounds = name, doc, labels, buckets
        self.series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = [0] * (len(self.bounds) + 1) + [0.0]
        s[bisect_left(self.bounds, value)] += 1  # the first bucket whose bound is >= value
        s[-1] += value

    def family(self) -> HistogramMetricFamily:
        f = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, s in list(self.series.items()):
            cumulative, buckets = 0.0, []
            for bound, n in zip((*map(floatToGoString, self.bounds), "+Inf"), s[:-1]):
                cumulative += n
                buckets.append((bound, cumulative))
            f.add_metric(labels, buckets, s[-1])
        return f


class _DecisionSeries:
    """The per-decision series, kept as plain numbers and turned into Prometheus samples only
    when scraped. prometheus-client's own metrics take a lock per sample; with nine samples a
    decision that was a tenth of the forwarding path's CPU."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, ...], int] = {}  # task_type, route, reason, mode, outcome
        self.request_duration = _Histograms(
            "smallfirst_request_duration_seconds", "Time from request to decision (to the last byte when streamed).",
            ("task_type", "route"), _REQUEST_BUCKETS,
        )
        self.operation_duration = _Histograms(
            "gen_ai_client_operation_duration_seconds", "GenAI operation duration: one model call, per tier.",
            ("gen_ai_operation_name", "gen_ai_response_model", "tier"), _OPERATION_BUCKETS,
        )
        self.token_usage = _Histograms(
            "gen_ai_client_token_usage", "Tokens used per model call, per tier and token type.",
            ("gen_ai_operation_name", "gen_ai_response_model", "gen_ai_token_type", "tier"), _TOKEN_BUCKETS,
        )
        self.tokens: dict[tuple[str, str], int] = {}  # tier, type
        self.cost = 0.0
        self.frontier_only_cost = 0.0
        self.accepted: dict[str, list[int]] = {}  # task -> [locally accepted, decided]

    def observe(self, task: str, rec: "AuditRecord") -> None:
        latency = rec.latency_ms or {}
        tokens = rec.tokens or {}
        key = (task, rec.route, rec.reason or "none", rec.mode, rec.outcome or "none")
        with self._lock:
            self.requests[key] = self.requests.get(key, 0) + 1
            self.request_duration.observe((task, rec.route), latency.get("total", 0.0) / 1000)
            if latency.get("local") and rec.local_model:
                self._model_call("local", rec.local_model, latency["local"], tokens.get("local_in", 0),
                                 tokens.get("local_out", 0))
            if latency.get("frontier") and rec.frontier_model:
                self._model_call("frontier", rec.frontier_model, latency["frontier"], tokens.get("frontier_in", 0),
                                 tokens.get("frontier_out", 0))
            self.cost += rec.cost_usd or 0.0
            self.frontier_only_cost += rec.frontier_only_cost_usd or 0.0
            if rec.route != "rejected":
                accepted = rec.route_candidate == "local"
                for t in (task, ALL_TASKS):
                    c = self.accepted.get(t)
                    if c is None:
                        c = self.accepted[t] = [0, 0]
                    c[0] += accepted
                    c[1] += 1

    def _model_call(self, tier: str, model: str, ms: float, tokens_in: int, tokens_out: int) -> None:
        self.operation_duration.observe(("chat", model, tier), ms / 1000)
        for kind, n in (("input", tokens_in), ("output", tokens_out)):
            if n:
                self.token_usage.observe(("chat", model, kind, tier), n)
                self.tokens[(tier, kind)] = self.tokens.get((tier, kind), 0) + n

    def collect(self) -> Iterator[Any]:
        with self._lock:
            requests = CounterMetricFamily(
                "smallfirst_requests", "Decisions by task type, route, reason, mode and outcome.",
                labels=["task_type", "route", "reason", "mode", "outcome"],
            )
            for labels, n in self.requests.items():
                requests.add_metric(labels, n)
            tokens = CounterMetricFamily("smallfirst_tokens", "Tokens by tier and type.", labels=["tier", "type"])
            for labels, n in self.tokens.items():
                tokens.add_metric(labels, n)
            acceptance = GaugeMetricFamily(
                "smallfirst_local_acceptance_ratio",
                "Share of decisions answered locally (in shadow mode: that would have been), per task; '*' is all.",
                labels=["task_type"],
            )
            for task, (accepted, decided) in self.accepted.items():
                acceptance.add_metric([task], accepted / decided)
            families = [
                requests,
                self.request_duration.family(),
                self.operation_duration.family(),
                self.token_usage.family(),
                tokens,
                CounterMetricFamily("smallfirst_cost_usd", "Cost of the decisions in USD (policy prices).", value=self.cost),
                CounterMetricFamily("smallfirst_frontier_only_cost_usd",
                                    "What the same requests cost sent to the frontier, in USD.",
                                    value=self.frontier_only_cost),
                acceptance,
            ]
        yield from families

    def describe(self) -> Iterator[Any]:
        return iter(())


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
