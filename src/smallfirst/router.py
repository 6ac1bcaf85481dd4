"""Router.route(task) -> RouteResult: the pipeline, top to bottom.

    1 flags        kill switch, rollout group                 -> manual_override
    2 policy       task known? local allowed?                 -> unknown_task, policy_requires_frontier
    3 input guard  encoding, size                             -> input_too_large (empty/binary: rejected)
    4 hard stops   security / access / production / novel    -> hard_stop_*
    5 local call   the task's local model, with a timeout     -> local_error
    6 gate         schema, labels, confidence, grounding ...  -> schema_invalid, label_escalates, confidence_low
    7 result       accept, or escalate a short packet to the frontier
    8 record       one audit record, always, off the hot path

Cheap deterministic stages run before any model call. In shadow mode the frontier answers as it
would without smallfirst, and the router records what it would have done (route_candidate).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Awaitable, Callable

from smallfirst.audit import AuditLog, AuditRecord
from smallfirst.backends.base import BackendError
from smallfirst.backends.providers import frontier_configured, make_backend
from smallfirst.gate import check_gate
from smallfirst.hardstops import HardStops
from smallfirst.policy import ModelSpec, Policy, TaskSpec
from smallfirst.reasons import FallbackReason
from smallfirst.tasks import Check, FrontierAnswer, HardStopMatch, LocalOutput, Task
from smallfirst.telemetry import Telemetry

log = logging.getLogger("smallfirst.router")

NO_FRONTIER = "escalated; no frontier configured"
# What the compressor hands a local model: enough for the failure and its context, small enough
# for a 2k-token context window.
LOCAL_INPUT_BUDGET = 4000


@dataclass
class FrontierStream:
    """A frontier answer still arriving. Producers may fill the token counts as they learn them
    (usage arrives in the last SSE events)."""

    chunks: AsyncIterator[str]
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    response_id: str | None = None


class Escalation:
    """Why a task left the local path, and the escalation packet saying so, built on first use:
    a caller that forwards the agent's own request to the frontier never pays for it."""

    __slots__ = ("reason", "_build", "_packet")

    def __init__(self, reason: FallbackReason, build: Callable[[], Any]):
        self.reason = reason
        self._build = build
        self._packet: Any = None

    @property
    def packet(self) -> Any:
        if self._packet is None:
            self._packet = self._build()
        return self._packet

    @property
    def built(self) -> Any:
        """The packet if something asked for it, else None."""
        return self._packet


FrontierCall = Callable[[Escalation, Any, ModelSpec, bool], Awaitable["FrontierAnswer | FrontierStream"]]


class InputRejected(ValueError):
    """Input no model can use (empty, binary). The caller gets this message; it is audited, and
    `result` carries the decision (route "rejected") once the router has recorded it."""

    result: "RouteResult | None" = None


@dataclass(frozen=True)
class RouteResult:
    decision_id: str
    task_type: str | None
    mode: str
    route: str  # local | frontier | rejected
    reason: FallbackReason | None
    answer: str | None
    outcome: str  # answered_local | answered_frontier | no_frontier | frontier_error | rejected
    label: str | None = None
    confidence: float | None = None
    hard_stop: HardStopMatch | None = None
    route_candidate: str | None = None
    model: str | None = None  # the model whose answer the caller gets
    latency_ms: float = 0.0
    checks: tuple[Check, ...] = ()
    # The EscalationPacket when the task left the local path, unless the frontier was sent the
    # agent's own request instead (see Escalation).
    packet: Any = None
    local: LocalOutput | None = None
    frontier: FrontierAnswer | None = None
    error: str | None = None
    cost_usd: float = 0.0
    frontier_only_cost_usd: float = 0.0
    shadow_agree: bool | None = None  # shadow mode, both answers present: do they agree?
    # outcome "streaming": the frontier's text deltas; the decision is recorded when it ends.
    stream: AsyncIterator[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "task_type": self.task_type,
            "mode": self.mode,
            "route": self.route,
            "reason": self.reason.value if self.reason else None,
            "label": self.label,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "hard_stop": None
            if self.hard_stop is None
            else {"category": self.hard_stop.category, "rule": self.hard_stop.rule, "excerpt": self.hard_stop.excerpt},
            "answer": self.answer,
            "outcome": self.outcome,
            "model": self.model,
            "route_candidate": self.route_candidate,
            "latency_ms": round(self.latency_ms, 3),
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "cost_usd": self.cost_usd,
            "frontier_only_cost_usd": self.frontier_only_cost_usd,
            "error": self.error,
            "shadow_agree": self.shadow_agree,
            "packet": self.packet.to_dict() if self.packet is not None and self.route != "local" else None,
        }


@dataclass(frozen=True)
class CandidateRun:
    """Shadow mode's candidate local model on one request: what it said and what the gate would
    have done with it (route "local" or "frontier"). Recorded only; the caller never sees it."""

    model: str
    sha256: str | None
    label: str | None
    confidence: float | None
    route: str
    latency_ms: float


@dataclass
class _Decision:
    """Mutable scratch state of one request; frozen into RouteResult and AuditRecord at the end."""

    task: Task
    spec: TaskSpec | None
    t0: float
    mode: str = "live"  # live | shadow, for this task and user group
    decision_id: str = field(default_factory=lambda: new_decision_id())
    text: str = ""
    reason: FallbackReason | None = None
    route_candidate: str | None = None
    hard_stop: HardStopMatch | None = None
    local: LocalOutput | None = None
    local_ms: float = 0.0
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    stream: bool = False
    frontier_call: "FrontierCall | None" = None
    candidate: CandidateRun | None = None
    frontier_url: str | None = None
    error_type: str | None = None  # a low-cardinality name for a failure (OpenTelemetry's error.type)
    start_ns: int = 0  # wall clock at the start, for the decision's span (telemetry on only)


def new_decision_id() -> str:
    # Time-ordered (ms) then random: sorts by creation, no coordination between replicas.
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


class Router:
    def __init__(
        self,
        policy: Policy,
        *,
        audit: AuditLog | None = None,
        backends: dict[str, Any] | None = None,
        telemetry: Telemetry | None = None,
        learn: Any = None,
    ):
        self.policy = policy
        self.audit = audit
        # None unless the policy or the environment asks for OpenTelemetry: then no per-request work.
        self.telemetry = telemetry if telemetry is not None else Telemetry.from_policy(policy)
        self.learn = learn  # smallfirst.learn_store.LearnLog: frontier answers of learning tasks
        self.hardstops = HardStops.from_policy(policy)
        # Backend instances by model key; tests and benches may inject their own.
        self._backends: dict[str, Any] = dict(backends or {})
        self._injected = frozenset(self._backends)
        self._backends_lock = threading.Lock()
        self._backend_errors: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ public API

    def route(self, task: Task) -> RouteResult:
        """Synchronous entry point (CLI, scripts). Reuses one event loop so HTTP sessions persist."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self.aroute(task))

    async def aroute(
        self, task: Task, *, stream: bool = False, frontier_call: "FrontierCall | None" = None
    ) -> RouteResult:
        """Route one task. With `stream`, a frontier answer comes back as `result.stream` (text
        deltas) and is recorded when it ends; a local answer is always whole, gate-checked first.
        `frontier_call(escalation, backend, model_spec, stream)` lets a caller (the HTTP service)
        decide what the frontier receives, e.g. the agent's original request, or the packet that
        `escalation.packet` builds on first use; it returns a FrontierAnswer or a FrontierStream."""
        t0 = time.perf_counter()
        spec = self.policy.tasks.get(task.task_type) if task.task_type else None
        mode = self.policy.rollout.mode_for(task.task_type, task.user_group)
        d = _Decision(task=task, spec=spec, t0=t0, mode=mode, stream=stream, frontier_call=frontier_call)
        if self.telemetry is not None:
            d.start_ns = time.time_ns()
        try:
            return await self._pipeline(d)
        except InputRejected as exc:
            d.error = str(exc)
            exc.result = self._finish(d, route="rejected", answer=None, outcome="rejected")
            raise

    def set_policy(self, policy: Policy) -> None:
        """Swap the policy at run time (admin reload, kill switch); the next request uses it.
        Hard stops are compiled from the policy, so they are rebuilt; backends whose model entry
        changed are dropped and re-created on next use (injected ones are kept)."""
        hardstops = HardStops.from_policy(policy)
        for key in list(self._backends):
            if key not in self._injected and policy.models.get(key) != self.policy.models.get(key):
                del self._backends[key]
        self.policy, self.hardstops = policy, hardstops

    def warm(self, task_types: list[str] | None = None) -> dict[str, str | None]:
        """Load the local models of these tasks now (all local tasks by default), so the first
        request does not pay for it. Returns model key -> error message or None."""
        return {key: self.warm_model(key) for key in self.local_models(task_types)}

    def local_models(self, task_types: list[str] | None = None) -> list[str]:
        """The model keys of these local tasks (all by default), in policy order."""
        keys = (spec.model for name, spec in self.policy.tasks.items()
                if spec.local and spec.model and (task_types is None or name in task_types))
        return list(dict.fromkeys(keys))

    def warm_model(self, key: str) -> str | None:
        """Load one model now. Returns None, or why it failed (each request then escalates with
        local_error)."""
        try:
            load = getattr(self._backend(key), "load", None)
            if load:
                load()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def close(self) -> None:
        if self._loop is not None:
            self._loop.run_until_complete(self.aclose())
            self._loop.close()
            self._loop = None
        if self.audit is not None:
            self.audit.flush()
        if self.telemetry is not None:
            self.telemetry.shutdown()

    async def aclose(self) -> None:
        for b in self._backends.values():
            closer = getattr(b, "aclose", None)
            if closer is not None:
                await closer()

    # ------------------------------------------------------------------ the pipeline

    async def _pipeline(self, d: _Decision) -> RouteResult:
        task, spec, policy = d.task, d.spec, self.policy
        shadow = d.mode == "shadow"

        # 3 (first half): decode, so every later stage and the audit preview work on text.
        d.text = decode_input(task.input)

        # 1 flags
        if policy.rollout.kill_switch:
            d.checks.append(Check("kill_switch", False, policy.rollout.kill_switch_reason or "kill switch on"))
            return await self._escalate(d, FallbackReason.MANUAL_OVERRIDE)
        if not policy.rollout.group_enabled(task.user_group):
            d.checks.append(Check("rollout_group", False, f"group {task.user_group!r} not in local_groups"))
            return await self._escalate(d, FallbackReason.MANUAL_OVERRIDE)

        # 2 policy
        if spec is None:
            d.checks.append(Check("task", False, f"unknown task type {task.task_type!r}"))
            return await self._escalate(d, FallbackReason.UNKNOWN_TASK)
        if task.metadata.get("tools") and (spec.tool_use or policy.tool_use) == "frontier":
            d.checks.append(Check("tool_use", False, "the request carries tools; policy sends tool use to the frontier"))
            return await self._escalate(d, FallbackReason.POLICY_REQUIRES_FRONTIER)
        if not spec.local:
            d.hard_stop = self.hardstops.first(d.text)  # recorded so security can see it, not a reason
            return await self._escalate(d, FallbackReason.POLICY_REQUIRES_FRONTIER)

        # 3 input guard: size
        if len(d.text) > spec.max_input_chars:
            d.checks.append(Check("input_size", False, f"{len(d.text)} chars > max_input_chars {spec.max_input_chars}"))
            return await self._escalate(d, FallbackReason.INPUT_TOO_LARGE, compress=True)
        d.checks.append(Check("input_size", True))

        # 4 hard stops on the input: decided before any model runs, overriding any answer.
        d.hard_stop = self.hardstops.first(d.text)
        if d.hard_stop is not None:
            d.checks.append(Check("hard_stop", False, f"{d.hard_stop.rule}: {d.hard_stop.excerpt}"))
            return await self._escalate(d, d.hard_stop.reason)
        d.checks.append(Check("hard_stop", True))

        # 5 local call, 6 gate
        if task.schema is not None:
            spec = spec.model_copy(update={"schema_": dict(task.schema)})
            d.spec = spec
        if shadow and spec.candidate:
            reason, d.candidate = await asyncio.gather(self._local_and_gate(d, spec), self._run_candidate(d, spec))
        else:
            reason = await self._local_and_gate(d, spec)

        # 7 result
        if shadow:
            d.route_candidate = "local" if reason is None else "frontier"
            d.reason = reason
            return await self._escalate(d, reason, shadow=True)
        if reason is not None:
            return await self._escalate(d, reason)
        assert d.local is not None
        return self._finish(d, route="local", answer=d.local.answer, outcome="answered_local", reason=None)

    async def _local_and_gate(self, d: _Decision, spec: TaskSpec) -> FallbackReason | None:
        assert spec.model is not None
        model_spec = self.policy.models[spec.model]
        timeout = spec.timeout_s or model_spec.timeout_s
        t = time.perf_counter()
        try:
            backend = self._backend(spec.model)
            d.local = await asyncio.wait_for(backend.complete(_local_input(d.text, spec), spec), timeout)
        except asyncio.TimeoutError:
            d.error = f"local model {model_spec.display_name} timed out after {timeout:g}s"
        except Exception as exc:  # a crashed local model escalates; it never drops the request
            d.error = f"local model {model_spec.display_name} failed: {type(exc).__name__}: {exc}"
        finally:
            d.local_ms = (time.perf_counter() - t) * 1000
        if d.local is None:
            d.checks.append(Check("local_call", False, d.error or ""))
            return FallbackReason.LOCAL_ERROR
        d.checks.append(Check("local_call", True))
        if spec.calibration:
            # A calibrate run's calibrator and threshold stand in for the backend's own.
            path = self.policy.resolve_path(spec.calibration)
            try:
                cal = _calibration(path, path.stat().st_mtime_ns)
            except (OSError, ValueError) as exc:  # changed on disk since the policy loaded
                d.error = f"calibration {path}: {exc}"
                d.checks.append(Check("calibration", False, d.error))
                return FallbackReason.LOCAL_ERROR
            if d.local.confidence_raw is not None:
                # The calibration's threshold supersedes a learned head's own (on another scale).
                extra = {k: v for k, v in (d.local.extra or {}).items() if k != "min_confidence"}
                d.local = replace(d.local, confidence=cal.calibrator(d.local.confidence_raw), extra=extra)
            spec = spec.model_copy(update={"min_confidence": cal.threshold})
        gate = check_gate(spec, d.local, d.text, refusal_markers=self.policy.gate.refusal_markers)
        d.checks.extend(gate.checks)
        return gate.reason

    async def _run_candidate(self, d: _Decision, spec: TaskSpec) -> CandidateRun:
        """The task's candidate model, called and gated like its own model. The task's calibration
        was fitted to its own model's scores, so the candidate is gated on min_confidence."""
        assert spec.candidate is not None
        model_spec = self.policy.models[spec.candidate]
        cspec = spec.model_copy(update={"model": spec.candidate, "head": spec.candidate_head, "calibration": None})
        timeout = spec.timeout_s or model_spec.timeout_s
        t = time.perf_counter()
        try:
            out = await asyncio.wait_for(self._backend(spec.candidate).complete(_local_input(d.text, spec), cspec), timeout)
        except Exception:  # a failing candidate is itself the finding: it would have escalated
            return CandidateRun(model_spec.display_name, None, None, None, "frontier", (time.perf_counter() - t) * 1000)
        ms = (time.perf_counter() - t) * 1000
        gate = check_gate(cspec, out, d.text, refusal_markers=self.policy.gate.refusal_markers)
        route = "local" if gate.reason is None else "frontier"
        return CandidateRun(out.model, out.model_sha256, out.label, out.confidence, route, ms)

    async def _escalate(
        self, d: _Decision, reason: FallbackReason | None, *, compress: bool = False, shadow: bool = False
    ) -> RouteResult:
        spec = d.spec
        if not shadow:
            d.reason = reason
            d.route_candidate = "frontier"
        why = reason or FallbackReason.MANUAL_OVERRIDE
        esc = Escalation(why, functools.partial(self._build_packet, d, why, compress))
        found = self.policy.frontier_spec(spec)
        if found is None or not frontier_configured(found[1]):
            # Shown by `smallfirst route`: what the frontier would have been sent.
            return self._finish(d, route="frontier", answer=NO_FRONTIER, outcome="no_frontier", packet=esc.packet)
        key, fspec = found
        t = time.perf_counter()
        try:
            backend = self._backend(key)
            d.frontier_url = getattr(backend, "url", None)
            if d.frontier_call is not None:
                got = await d.frontier_call(esc, backend, fspec, d.stream)
            elif d.stream:
                system, messages = esc.packet.messages()
                got = FrontierStream(
                    backend.stream_chat(messages, system=system, max_tokens=fspec.max_tokens), fspec.display_name
                )
            else:
                system, messages = esc.packet.messages()
                got = await backend.chat(messages, system=system, max_tokens=fspec.max_tokens)
        except BackendError as exc:
            d.error = f"frontier {fspec.display_name} failed: {exc}"
            d.error_type = _error_type(exc)
            return self._finish(
                d, route="frontier", answer=None, outcome="frontier_error", packet=esc.built,
                frontier_ms=(time.perf_counter() - t) * 1000,
            )
        if isinstance(got, FrontierStream):
            result = self._finish(d, route="frontier", answer=None, outcome="streaming", packet=esc.built, record=False)
            return replace(result, stream=self._recorded_stream(d, esc.built, got, t))
        return self._finish(
            d, route="frontier", answer=got.text, outcome="answered_frontier", packet=esc.built,
            frontier=got, frontier_ms=(time.perf_counter() - t) * 1000,
        )

    def _build_packet(self, d: _Decision, reason: FallbackReason, compress: bool) -> Any:
        from smallfirst.packet import build_packet

        spec = d.spec
        return build_packet(
            d.task.task_type or "unknown",
            spec.description if spec else "",
            d.text,
            reason=reason,
            detail=next((c.detail for c in reversed(d.checks) if not c.ok), ""),
            local=d.local,
            hard_stop=d.hard_stop,
            compress=compress or bool(spec and spec.compress_on),
            labels=tuple(spec.labels) if spec else (),
        )

    async def _recorded_stream(
        self, d: _Decision, packet: Any, fs: "FrontierStream", t: float
    ) -> AsyncIterator[str]:
        """Pass the frontier's deltas through as they arrive; record the decision once it ends,
        however it ends (finished, failed, or the client went away)."""
        parts: list[str] = []
        outcome = "frontier_error"
        try:
            async for delta in fs.chunks:
                parts.append(delta)
                yield delta
            outcome = "answered_frontier"
        except BackendError as exc:
            d.error = f"frontier {fs.model} failed mid-stream: {exc}"
            d.error_type = _error_type(exc)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            outcome, d.error = "client_closed", "the caller closed the stream before the answer ended"
            raise
        finally:
            answer = FrontierAnswer("".join(parts), fs.model, fs.tokens_in, fs.tokens_out, response_id=fs.response_id)
            self._finish(
                d, route="frontier", answer=answer.text if outcome == "answered_frontier" else None,
                outcome=outcome, packet=packet, frontier=answer, frontier_ms=(time.perf_counter() - t) * 1000,
            )

    # ------------------------------------------------------------------ stage 8: record

    def _finish(
        self,
        d: _Decision,
        *,
        route: str,
        answer: str | None,
        outcome: str,
        reason: FallbackReason | None | type[Ellipsis] = ...,
        packet: Any = None,
        frontier: FrontierAnswer | None = None,
        frontier_ms: float = 0.0,
        record: bool = True,
    ) -> RouteResult:
        if reason is not ...:
            d.reason = reason  # type: ignore[assignment]
        if route == "local":
            d.route_candidate = "local"
        total_ms = (time.perf_counter() - d.t0) * 1000
        local, spec = d.local, d.spec
        local_spec = self.policy.models.get(spec.model) if spec and spec.model else None
        cost = self._local_cost(d.local_ms) + (self._frontier_cost(frontier) if frontier else 0.0)
        counterfactual = self._frontier_only_cost(d.text, answer if route == "local" else None, frontier)
        model = local.model if route == "local" and local else (frontier.model if frontier else None)
        shadow_agree = None
        if d.mode == "shadow" and local is not None and spec is not None and frontier is not None and outcome == "answered_frontier":
            from smallfirst.shadow import agreement

            shadow_agree = agreement(spec.kind, spec.labels, local.answer, local.label, frontier.text)
        result = RouteResult(
            decision_id=d.decision_id,
            task_type=d.task.task_type,
            mode=d.mode,
            route=route,
            reason=d.reason,
            answer=answer,
            outcome=outcome,
            label=local.label if local else None,
            confidence=local.confidence if local else None,
            hard_stop=d.hard_stop,
            route_candidate=d.route_candidate,
            model=model,
            latency_ms=total_ms,
            checks=tuple(d.checks),
            packet=packet,
            local=local,
            frontier=frontier,
            error=d.error,
            cost_usd=cost,
            frontier_only_cost_usd=counterfactual,
            shadow_agree=shadow_agree,
        )
        if record and self.audit is not None:
            # Raw text on purpose: the audit writer masks every free-text field off this path.
            fspec = self.policy.frontier_spec(spec)
            self.audit.submit(
                AuditRecord(
                    decision_id=d.decision_id,
                    ts=time.time(),
                    task_id=d.task.task_id,
                    task_type=d.task.task_type,
                    mode=d.mode,
                    route=route,
                    route_candidate=d.route_candidate,
                    reason=d.reason.value if d.reason else None,
                    label=local.label if local else None,
                    hard_stop=None
                    if d.hard_stop is None
                    else {"category": d.hard_stop.category, "rule": d.hard_stop.rule, "excerpt": d.hard_stop.excerpt},
                    local_model=(local.model if local else (local_spec.display_name if local_spec else None)),
                    local_model_sha256=local.model_sha256 if local else None,
                    frontier_model=(frontier.model if frontier else (fspec[1].display_name if fspec and route == "frontier" else None)),
                    confidence_raw=local.confidence_raw if local else None,
                    confidence_calibrated=local.confidence if local else None,
                    checks=[{"name": c.name, "ok": c.ok, "detail": c.detail or ""} for c in d.checks],
                    latency_ms={"total": round(total_ms, 3), "local": round(d.local_ms, 3), "frontier": round(frontier_ms, 3)},
                    tokens={
                        "local_in": local.tokens_in if local else 0,
                        "local_out": local.tokens_out if local else 0,
                        "frontier_in": frontier.tokens_in if frontier else 0,
                        "frontier_out": frontier.tokens_out if frontier else 0,
                    },
                    cost_usd=cost,
                    frontier_only_cost_usd=counterfactual,
                    input_sha256=_input_sha(d),
                    input_chars=len(d.text) if d.text else len(d.task.input),
                    preview_source=d.text,
                    answer_sha256=_sha(answer) if route == "local" else None,
                    frontier_answer_sha256=_sha(frontier.text) if frontier else None,
                    user_group=d.task.user_group,
                    policy_version=self.policy.version_tag,
                    outcome=outcome,
                    error=d.error,
                    shadow_agree=shadow_agree,
                    **_candidate_columns(d.candidate),
                )
            )
        if record and self.telemetry is not None:
            self._trace(d, result)
        if record and self.learn is not None and frontier is not None and outcome == "answered_frontier":
            self._keep_for_learning(d, frontier)
        return result

    def _trace(self, d: _Decision, result: RouteResult) -> None:
        """The decision as an OpenTelemetry span; a failure here never costs the decision."""
        try:
            from smallfirst.redact import mask_secrets

            spec = d.spec
            asked, url = None, None
            if result.route == "local" and spec is not None and spec.model:
                asked, url = self.policy.models.get(spec.model), getattr(self._backends.get(spec.model), "url", None)
            elif result.route == "frontier":
                found = self.policy.frontier_spec(spec)
                asked, url = (found[1] if found else None), d.frontier_url
            assert self.telemetry is not None
            self.telemetry.record(
                result, start_ns=d.start_ns, asked=asked, server_url=url, error_type=d.error_type, stream=d.stream,
                user_group=d.task.user_group, trace_context=d.task.metadata.get("trace_context"),
                error=mask_secrets(d.error) if d.error else None,
            )
        except Exception:
            log.exception("telemetry: the decision's span was not recorded")

    def _keep_for_learning(self, d: _Decision, frontier: FrontierAnswer) -> None:
        """Hand a learning task's frontier answer to the learn store. Only a queue put here: the
        label, the embedding and the masking are done on the learn writer's thread, and a
        failing store never fails the request."""
        spec = d.spec
        if spec is None or spec.learn is None or not spec.labels:
            return
        from smallfirst.learn_store import LearnCapture

        local = d.local
        extra = local.extra if local is not None and local.extra else {}
        try:
            self.learn.submit(LearnCapture(
                decision_id=d.decision_id, ts=time.time(), task_type=spec.name, labels=tuple(spec.labels),
                frontier_text=frontier.text, frontier_model=frontier.model,
                reason=d.reason.value if d.reason else None,
                hard_stop=d.hard_stop.category if d.hard_stop else None,
                local_label=local.label if local else None,
                keep_inputs=spec.learn.keep_inputs, retention_days=spec.learn.retention_days, text=d.text,
                embedding=extra.get("embedding"), embedding_identity=extra.get("embedding_identity"),
                embed=functools.partial(self._embedding_for_learning, d.text, spec),
                words=extra.get("words"), count_words=functools.partial(_word_counts, d.text, spec),
            ))
        except Exception:
            log.exception("learn: could not keep decision %s", d.decision_id)

    def _embedding_for_learning(self, text: str, spec: TaskSpec) -> Any:
        """(embedding, identity) of `text` as the task's local model reads it, or None when that
        model does not embed (the example is then kept only if its text is)."""
        backend = self._backend(spec.model) if spec.model else None
        embed = getattr(backend, "embed", None)
        return embed(_local_input(text, spec), spec) if embed is not None else None

    # ------------------------------------------------------------------ helpers

    def _backend(self, key: str) -> Any:
        b = self._backends.get(key)
        if b is None:
            # Warm-up threads and requests can ask at once; two instances would load a model twice.
            with self._backends_lock:
                b = self._backends.get(key)
                if b is None:
                    spec: ModelSpec = self.policy.models[key]
                    b = self._backends[key] = make_backend(spec, self.policy)
        return b

    def _local_cost(self, local_ms: float) -> float:
        price = self.policy.prices.get("local")
        if not price or not price.usd_per_hour or not local_ms:
            return 0.0
        return local_ms / 3_600_000 * price.usd_per_hour

    def _frontier_cost(self, ans: FrontierAnswer) -> float:
        price = self.policy.prices.get(ans.model)
        if price is None:
            fs = self.policy.frontier_spec(None)
            price = self.policy.prices.get(fs[1].display_name) if fs else None
        if price is None:
            return 0.0
        return (ans.tokens_in * (price.input or 0) + ans.tokens_out * (price.output or 0)) / 1e6

    def _frontier_only_cost(self, text: str, local_answer: str | None, frontier: FrontierAnswer | None) -> float:
        """What this request costs if everything goes to the frontier: its real cost when the
        frontier answered, otherwise an estimate at ~4 characters per token."""
        if frontier is not None:
            return self._frontier_cost(frontier)
        fs = self.policy.frontier_spec(None)
        if fs is None:
            return 0.0
        tokens_in = math.ceil(len(text) / 4) + 60  # + the task framing
        tokens_out = max(8, math.ceil(len(local_answer or "") / 4)) if local_answer else 64
        return self._frontier_cost(FrontierAnswer(text="", model=fs[1].display_name, tokens_in=tokens_in, tokens_out=tokens_out))


@functools.lru_cache(maxsize=32)
def _calibration(path: "os.PathLike[str]", mtime_ns: int) -> Any:
    from smallfirst.calibration import load_calibration

    # Keyed by mtime so a re-run of `smallfirst calibrate` plus a policy reload takes effect.
    return load_calibration(path)  # validated when the policy loaded


def _local_input(text: str, spec: TaskSpec) -> str:
    if not spec.compress_on:
        return text
    from smallfirst.logtext import compress_log

    return compress_log(text, LOCAL_INPUT_BUDGET).text


def _word_counts(text: str, spec: TaskSpec) -> dict[int, float]:
    """The hashed words a head that reads words sees for `text` (lexical.py)."""
    from smallfirst.lexical import bucket_counts

    return bucket_counts(_local_input(text, spec))


def _candidate_columns(c: CandidateRun | None) -> dict[str, Any]:
    if c is None:
        return {}
    return {
        "candidate_model": c.model,
        "candidate_model_sha256": c.sha256,
        "candidate_label": c.label,
        "candidate_confidence": c.confidence,
        "candidate_route": c.route,
        "candidate_latency_ms": round(c.latency_ms, 3),
    }


def _input_sha(d: _Decision) -> str:
    # A rejected input never became text: hash exactly what arrived.
    raw = d.task.input if not d.text else d.text
    return hashlib.sha256(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")).hexdigest()


def _error_type(exc: BaseException) -> str:
    """What went wrong, in few words: the HTTP status of a refusal, else the failure's class."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status >= 400:
        return str(status)
    return type(exc.__cause__ or exc).__qualname__


def _sha(s: str | None) -> str | None:
    return hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest() if s is not None else None


def decode_input(raw: str | bytes) -> str:
    """Input guard, encoding half. Text with a few bad bytes (common in CI logs) is decoded with
    replacement characters; input that is empty or looks binary is rejected with a message."""
    if isinstance(raw, bytes):
        if b"\x00" in raw[:65536]:
            raise InputRejected(f"input looks binary ({raw[:65536].count(0)} NUL bytes in the first 64 KiB); send text")
        text = raw.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        if bad and bad > max(8, len(text) // 20):
            raise InputRejected(f"input is not UTF-8 text ({bad} undecodable bytes in {len(raw)})")
    else:
        text = raw
        if "\x00" in text[:65536]:
            raise InputRejected("input looks binary (NUL characters); send text")
    if not text.strip():
        raise InputRejected("input is empty")
    return text
