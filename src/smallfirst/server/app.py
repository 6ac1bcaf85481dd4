"""The HTTP service: OpenAI- and Anthropic-compatible endpoints in front of the router.

    POST /v1/chat/completions   OpenAI wire format        POST /v1/messages   Anthropic wire format
    GET  /v1/models             the task types            GET  /openapi.json  this API
    GET  /healthz  /readyz      up / local models loaded  GET  /metrics       Prometheus
    /admin/*                    kill switch, rollout, policy reload (admin.py)
    /dashboard*                 the operator dashboard (dashboard_routes.py; who may see it: access.py)

One request: read and validate the body (400/413 in the caller's error format), find the task
(model "smallfirst/<task>", header X-Smallfirst-Task, or "smallfirst/auto"), the user group
(API-key map in the policy, else header X-Smallfirst-User-Group), route it, and answer in the
caller's format with the x-smallfirst-* headers. A local answer is whole and gate-checked before
its first byte; a frontier answer streams through as it arrives (frontier.py).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import random
import re
import socket
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

from aiohttp import web

from smallfirst.audit import AuditLog
from smallfirst.backends import http
from smallfirst.backends.base import BackendError
from smallfirst.flags import Change, FlagState, Overrides, SharedFlags
from smallfirst.metrics import CONTENT_TYPE_LATEST, MeteredAudit, Metrics
from smallfirst.policy import Policy, PolicyError, load_policy
from smallfirst.router import InputRejected, RouteResult, Router
from smallfirst.server import admin, anthropic_wire, openai_wire, openapi
from smallfirst.server.access import Access, is_loopback
from smallfirst.server.auto import TaskClassifier
from smallfirst.server.dashboard_routes import register_dashboard
from smallfirst.server.frontier import Exchange
from smallfirst.server.wire import Answer, ChatRequest, Finish, TextDelta, WireError
from smallfirst.tasks import Task
from smallfirst.telemetry import TRACE_HEADERS, Telemetry

log = logging.getLogger("smallfirst.server")

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024  # what the Anthropic API itself accepts
TASK_PREFIX = "smallfirst/"
AUTO = "auto"
# Task types and groups are echoed in headers and stored in the audit: keep them plain words.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_STARTED = int(time.time())
SWITCH_INTERVAL_S = 0.001
GC_THRESHOLD = 10_000  # allocations between young-generation collections

SERVICE: web.AppKey["Service"] = web.AppKey("smallfirst_service")
_UNSEEN = object()
ACCESS: web.AppKey[Access] = web.AppKey("smallfirst_access")


class RequestError(ValueError):
    """A request header this service reads is not acceptable; answered 400."""


class Service:
    """The state one server process holds: the router, its policy as loaded and as overridden by
    admin calls, metrics, readiness."""

    def __init__(
        self,
        policy: Policy,
        *,
        audit: AuditLog | None = None,
        backends: dict[str, Any] | None = None,
        classifier: TaskClassifier | None = None,
        admin_token: str | None = None,
        policy_path: str | Path | None = None,
        audit_path: str | Path | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        warm: bool = True,
        telemetry: Telemetry | None = None,
        learn: Any = None,
    ):
        self.metrics = Metrics(known_tasks=lambda: self.router.policy.tasks)
        self.audit = audit
        if audit is not None:
            self.metrics.watch_audit(audit)
        self.learn = learn  # smallfirst.learn_store.LearnLog, for tasks with learn: in the policy
        self.router = Router(policy, audit=MeteredAudit(self.metrics, audit), backends=backends,  # type: ignore[arg-type]
                             telemetry=telemetry, learn=learn)
        self.classifier = classifier or TaskClassifier()
        self.base_policy = policy  # as read from its file; admin overrides are applied on top
        self.overrides = Overrides()
        self.admin_token = admin_token or None
        self.policy_path = str(policy_path) if policy_path else (policy.source if policy.source != "<memory>" else None)
        store = getattr(audit, "target", None)
        self.audit_path = str(audit_path) if audit_path else store  # a SQLite path or a postgresql:// URL
        # Overrides shared with the other replicas through the audit store (in memory without one).
        self.flags = SharedFlags(self.audit_path, self._apply_flags)
        self.replica = os.environ.get("SMALLFIRST_REPLICA") or f"{socket.gethostname()}:{os.getpid()}"
        self._store_policy_version: str | None | object = _UNSEEN
        self.max_body_bytes = max_body_bytes
        self.warm_on_start = warm
        self.models: dict[str, str] = {}  # model key -> "loading" | "ready" | error message
        self.ready = not warm
        self._warm_task: asyncio.Task[None] | None = None
        self.metrics.set_policy(policy.version_tag, policy.source, policy.rollout.kill_switch)
        self.metrics.ready.set(1 if self.ready else 0)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.learning: Any = None  # smallfirst.learn.LearnSchedule for learn: {every: N}
        if learn is not None:
            from smallfirst.server.learning import attach_learning

            self.learning = attach_learning(self, learn)

    # ------------------------------------------------------------------ policy and readiness

    def install(self, base: Policy, overrides: Overrides) -> Policy:
        """Make `base` with `overrides` the policy of the next request."""
        policy = overrides.apply(base)
        self.base_policy, self.overrides = base, overrides
        self.router.set_policy(policy)
        self.metrics.set_policy(policy.version_tag, policy.source, policy.rollout.kill_switch)
        return policy

    async def change_flags(self, change: Change, event: dict[str, Any], *, base: Policy | None = None) -> bool:
        """An admin change, for every replica; `base` is a newly reloaded policy file. Applies
        here at once; False when the store did not take it yet (it follows when it can)."""
        reloaded = base is not None
        base = base or self.base_policy
        state, shared = await self.flags.change(change, event, lambda o: o.apply(base).version_tag,
                                                policy_version=base.digest if reloaded else None)
        if reloaded:
            self._store_policy_version = base.digest
        self.install(base, state.overrides)
        return shared

    async def _apply_flags(self, state: FlagState) -> None:
        """The shared flags changed (on another replica, or while the store was away)."""
        base = self.base_policy
        seen, self._store_policy_version = self._store_policy_version, state.policy_version
        if seen is not _UNSEEN and state.policy_version != seen and state.policy_version != base.digest and self.policy_path:
            # Another replica reloaded the policy: read this replica's copy of the file too.
            try:
                base = await asyncio.to_thread(load_policy, self.policy_path)
            except PolicyError as exc:
                log.error("policy reloaded on another replica, but this replica's file is rejected "
                          "(the old policy stays): %s", exc)
            if base.digest != state.policy_version:
                log.warning("this replica's policy file %s differs from the one reloaded on another replica",
                            self.policy_path)
        reloaded = base is not self.base_policy
        self.install(base, self.flags.overrides)  # the latest: a change may have landed meanwhile
        if reloaded and self.warm_on_start:
            self.start_warming()  # models the new policy names load in the background

    def start_warming(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        self._warm_task = asyncio.get_running_loop().create_task(self._warm())

    async def _warm(self) -> None:
        policy = self.router.policy
        keys = self.router.local_models()
        loads: dict[str, Callable[[], str | None]] = {key: functools.partial(self.router.warm_model, key) for key in keys}
        loads["auto_classifier"] = self.classifier.load
        self.models = dict.fromkeys(loads, "loading")

        async def warm(key: str) -> bool:
            try:
                err = await asyncio.to_thread(loads[key])
            except Exception as exc:  # the auto classifier: auto then sends everything to the frontier as unknown_task
                err = f"{type(exc).__name__}: {exc}"
            self.models[key] = "ready" if err is None else err  # /readyz shows each model as it is ready
            if err is not None:
                log.error("model %s failed to load: %s", key, err)
            return err is None

        # xllamacpp holds the GIL while llama.cpp loads a GGUF (about 2 s, far longer on a busy
        # machine): nothing else in the process runs meanwhile. So the other models (the
        # classifier: under a second) load first, together, and in-process GGUF models after them.
        gguf = [k for k in keys if policy.models[k].provider == "llamacpp"]
        first = await asyncio.gather(*(warm(k) for k in loads if k not in gguf))
        then = [await warm(k) for k in gguf]
        self.ready = all(first) and all(then)
        self.metrics.ready.set(1 if self.ready else 0)

    # ------------------------------------------------------------------ the two APIs

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, openai_wire)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, anthropic_wire)

    async def _answer(self, request: web.Request, wire: ModuleType) -> web.StreamResponse:
        try:
            return await self._route(request, wire)
        except Exception:  # a bug answers in the caller's format, not aiohttp's text page
            log.exception("request failed")
            return _error(wire, 500, "internal error in smallfirst; see the server log")

    async def _route(self, request: web.Request, wire: ModuleType) -> web.StreamResponse:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(wire, 413, f"request body is larger than the limit of {self.max_body_bytes} bytes")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return _error(wire, 400, f"the request body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return _error(wire, 400, "the request body must be a JSON object")
        policy = self.router.policy
        try:
            req = wire.parse_request(body, request.headers)
            task_type = _task_type(request, req)
            group = _user_group(request, req, policy)
            task_id = _task_id(request)
            _check_schema(req)
        except (WireError, RequestError) as exc:
            return _error(wire, 400, str(exc), param=getattr(exc, "param", None))
        if task_type == AUTO:
            task_type = await self._classify(req, policy)
        metadata: dict[str, Any] = {"tools": req.has_tools, "protocol": wire.NAME}
        if self.router.telemetry is not None:
            # The caller's W3C trace context: the decision's span joins the caller's trace.
            metadata["trace_context"] = {h: request.headers[h] for h in TRACE_HEADERS if h in request.headers}
        task = Task(
            input=req.task_text,
            task_type=task_type,
            task_id=task_id,
            user_group=group,
            schema=req.schema,
            metadata=metadata,
        )
        msg_id = f"{random.getrandbits(96):024x}"  # a response id, not a secret (os.urandom costs 15 us here)
        exchange = Exchange(req, shadow=policy.rollout.mode_for(task_type, group) == "shadow", msg_id=msg_id)
        try:
            result = await self.router.aroute(task, stream=req.stream, frontier_call=exchange.call)
        except InputRejected as exc:
            headers = route_headers(exc.result) if exc.result is not None else None
            return _error(wire, 400, str(exc), headers=headers)
        headers = route_headers(result, exchange)
        if result.outcome == "streaming":
            return await self._stream(request, wire, result, exchange, headers)
        if result.outcome == "frontier_error":
            # The router already retried as the policy says; the SDKs must not multiply that.
            return _error(wire, exchange.failure_status(), result.error or "frontier failed",
                          headers={**headers, "x-should-retry": "false"})
        if result.outcome == "no_frontier":
            why = result.reason.value if result.reason else "shadow mode"
            return _error(wire, 503, f"the request left the local path ({why}) and no frontier model is configured; "
                          "set the frontier's API key in the environment", headers={**headers, "x-should-retry": "false"})
        if result.route == "frontier" and exchange.answer is not None:
            answer = exchange.answer
        else:
            local = result.local
            answer = Answer(text=result.answer or "", model=result.model or "local",
                            tokens_in=local.tokens_in if local else 0, tokens_out=local.tokens_out if local else 0)
        if req.stream:
            return _whole_stream(wire, req, answer, msg_id, headers)
        if exchange.raw_body is not None:
            body = exchange.raw_body  # the frontier's own answer, passed on as it came
        else:
            body = json.dumps(wire.render_answer(answer, msg_id), ensure_ascii=False).encode()
        return web.Response(body=body, headers=headers, content_type="application/json")

    async def _classify(self, req: ChatRequest, policy: Policy) -> str:
        """The task `auto` stands for; AUTO itself (an unknown task) when unclear."""
        try:
            choice = await asyncio.to_thread(self.classifier.classify, req.instructions, policy.tasks)
        except Exception:  # a classifier that cannot run leaves the task unknown: the frontier answers
            log.exception("smallfirst/auto: the task classifier failed")
            return AUTO
        return choice.task_type or AUTO

    async def _stream(self, request: web.Request, wire: ModuleType, result: RouteResult, exchange: Exchange,
                      headers: dict[str, str]) -> web.StreamResponse:
        assert result.stream is not None
        stream = result.stream
        try:
            # Peek before committing to a 200: a frontier that fails before its first event is
            # still answered with an error status. (The router records the decision either way.)
            await stream.__anext__()
        except StopAsyncIteration:
            pass
        except BackendError:
            return _error(wire, exchange.failure_status(), result_error(exchange),
                          headers={**headers, "x-should-retry": "false"})
        resp = web.StreamResponse(headers={**headers, "content-type": "text/event-stream; charset=utf-8",
                                           "cache-control": "no-cache"})
        try:
            await resp.prepare(request)
            await _drain(resp, exchange)
            async for _ in stream:
                await _drain(resp, exchange)
            await _drain(resp, exchange)
        except BackendError as exc:
            await _drain(resp, exchange)
            await resp.write(exchange.error_event(f"the frontier failed mid-answer: {exc}"))
        except ConnectionResetError:
            return resp  # the caller went away; closing the stream records it as client_closed
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        await resp.write_eof()
        return resp

    # ------------------------------------------------------------------ the rest

    async def models_list(self, request: web.Request) -> web.Response:
        names = [TASK_PREFIX + AUTO] + [TASK_PREFIX + t for t in self.router.policy.tasks]
        if "anthropic-version" in request.headers:
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_STARTED))
            return web.json_response(anthropic_wire.models_body(names, created))
        return web.json_response(openai_wire.models_body(names, _STARTED))

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        loading = self._warm_task is not None and not self._warm_task.done()
        status = "ready" if self.ready else ("loading" if loading else "failed")
        return web.json_response({"status": status, "models": self.models}, status=200 if self.ready else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"content-type": CONTENT_TYPE_LATEST})

    async def openapi_document(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.document(list(self.router.policy.tasks)))


# ---------------------------------------------------------------------- helpers


def route_headers(result: RouteResult, exchange: Exchange | None = None) -> dict[str, str]:
    model = result.model or (exchange.stream.model if exchange is not None and exchange.stream is not None else None)
    return {
        "x-smallfirst-route": result.route,
        "x-smallfirst-reason": result.reason.value if result.reason else "none",
        "x-smallfirst-decision-id": result.decision_id,
        "x-smallfirst-model": model or "none",
        "x-smallfirst-confidence": "none" if result.confidence is None else f"{result.confidence:.4f}",
        "x-smallfirst-mode": result.mode,
        "x-smallfirst-task": result.task_type or "none",
    }


def result_error(exchange: Exchange) -> str:
    return f"frontier failed: {exchange.failure}" if exchange.failure is not None else "frontier failed"


async def _drain(resp: web.StreamResponse, exchange: Exchange) -> None:
    if exchange.pending:
        data = b"".join(exchange.pending)
        exchange.pending.clear()
        if data:
            await resp.write(data)


def _error(wire: ModuleType, status: int, message: str, *, headers: Mapping[str, str] | None = None,
           param: str | None = None) -> web.Response:
    body = wire.error_body(message, status=status, param=param)
    return web.Response(body=json.dumps(body, ensure_ascii=False).encode(), status=status,
                        headers=dict(headers or {}), content_type="application/json")


def _whole_stream(wire: ModuleType, req: ChatRequest, answer: Answer, msg_id: str,
                  headers: Mapping[str, str]) -> web.Response:
    """A whole answer (local, already gate-checked) in the caller's stream format, in one body."""
    if wire is openai_wire:
        enc: Any = openai_wire.StreamEncoder(msg_id, answer.model, req.include_usage)
    else:
        enc = anthropic_wire.StreamEncoder(msg_id, answer.model, answer.tokens_in)
    body = enc.start() + enc.feed(TextDelta(answer.text)) + enc.feed(Finish(answer.finish, answer.tokens_in, answer.tokens_out))
    return web.Response(body=body, headers={**headers, "content-type": "text/event-stream; charset=utf-8",
                                            "cache-control": "no-cache"})


def _task_type(request: web.Request, req: ChatRequest) -> str | None:
    name = request.headers.get("x-smallfirst-task", "").strip()
    if not name and req.model.startswith(TASK_PREFIX):
        name = req.model[len(TASK_PREFIX):]
    if not name:
        return None  # any other model name: routed as an unknown task, to the frontier
    if not _NAME_RE.match(name):
        raise RequestError(f"task type {name[:80]!r} is not a plain name (letters, digits, _ . : -, at most 64)")
    return name


def _task_id(request: web.Request) -> str | None:
    task_id = request.headers.get("x-smallfirst-task-id") or None
    if task_id is not None and len(task_id) > 200:
        raise RequestError("X-Smallfirst-Task-Id is longer than 200 characters")
    return task_id


def _user_group(request: web.Request, req: ChatRequest, policy: Policy) -> str:
    # A group tied to the caller's API key outranks the header: the header is the caller's claim.
    if policy.api_key_groups:
        key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        group = policy.group_for_api_key(key)
        if group:
            return group
    header = request.headers.get("x-smallfirst-user-group", "").strip()
    if not header:
        return "default"
    if not _NAME_RE.match(header):
        raise RequestError(f"user group {header[:80]!r} is not a plain name (letters, digits, _ . : -, at most 64)")
    return header


def _check_schema(req: ChatRequest) -> None:
    if req.schema is None:
        return
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(req.schema)
    except SchemaError as exc:
        raise WireError(f"the response schema is not a valid JSON Schema: {exc.message}") from None


# ---------------------------------------------------------------------- the application


def create_app(policy: Policy, *, exposed: bool = False, read_token: str | None = None, **kwargs: Any) -> web.Application:
    """The aiohttp application. `exposed`: it listens beyond loopback, so the dashboard needs a
    token (access.py). Other keyword arguments are Service's (audit, backends, classifier,
    admin_token, policy_path, audit_path, max_body_bytes, warm, telemetry, learn)."""
    kwargs.setdefault("admin_token", os.environ.get("SMALLFIRST_ADMIN_TOKEN"))
    service = Service(policy, **kwargs)
    access = Access(service.admin_token, read_token or os.environ.get("SMALLFIRST_READ_TOKEN") or None, exposed)
    app = web.Application(client_max_size=service.max_body_bytes)
    app[SERVICE] = service
    app[ACCESS] = access
    app.router.add_post("/v1/chat/completions", service.chat_completions)
    app.router.add_post("/v1/messages", service.messages)
    app.router.add_get("/v1/models", service.models_list)
    app.router.add_get("/healthz", service.healthz)
    app.router.add_get("/readyz", service.readyz)
    app.router.add_get("/metrics", service.metrics_page)
    app.router.add_get("/openapi.json", service.openapi_document)
    admin.add_routes(app, service, access)
    register_dashboard(app, service, access)

    async def on_startup(app: web.Application) -> None:
        service.loop = asyncio.get_running_loop()
        await service.flags.start()
        if service.warm_on_start:
            service.start_warming()

    async def on_cleanup(app: web.Application) -> None:
        await service.flags.stop()
        if service._warm_task is not None and not service._warm_task.done():
            service._warm_task.cancel()
        await service.router.aclose()
        await http.aclose()
        if service.audit is not None:
            await asyncio.to_thread(service.audit.close)
        if service.learn is not None:
            await asyncio.to_thread(service.learn.close)
        if service.router.telemetry is not None:
            await asyncio.to_thread(service.router.telemetry.shutdown)  # exports the spans still queued

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def serve(policy_path: str | None, audit_path: str | None, host: str = "127.0.0.1", port: int = 8787,
          *, warm: bool = True, spill_path: str | None = None, learn_path: str | None = None) -> None:
    """`smallfirst serve`: load the policy, open the audit store (and the learn store when a task
    learns), serve until interrupted. The audit store is a SQLite file or a postgresql:// URL
    shared with other replicas."""
    from smallfirst.learn_store import LearnLog, learn_store_target
    from smallfirst.schema import check_store
    from smallfirst.store import describe, is_postgres

    policy = load_policy(policy_path)
    if audit_path:
        # Refuse a store that is behind the code; an unreachable one is not a reason to stop
        # answering (decisions spill until it is back).
        if (problem := check_store(audit_path)) is not None:
            log.error("%s: decisions spill to the spill file and admin changes wait until it answers", problem)
    audit = AuditLog.open(audit_path, spill_path=spill_path) if audit_path else None
    learn = None
    if any(t.learn is not None for t in policy.tasks.values()) and (learn_path or audit_path):
        target = learn_store_target(audit_path, learn_path)
        # In the audit's PostgreSQL database, examples spill beside the audit's spill file.
        spill = audit.spill_path.with_suffix(".learn.jsonl") if audit is not None and is_postgres(target) else None
        learn = LearnLog.open(target, spill_path=spill)
    app = create_app(policy, audit=audit, policy_path=policy_path or policy.source, warm=warm, learn=learn,
                     exposed=not is_loopback(host))
    service = app[SERVICE]
    admin_state = "on" if service.admin_token else "off (set SMALLFIRST_ADMIN_TOKEN)"
    store = f"{describe(audit_path)} (spill {audit.spill_path})" if audit is not None else "off"
    print(f"smallfirst serve: http://{host}:{port}/v1  policy {policy.source} ({policy.version_tag}); "
          f"audit {store}; learn store {describe(learn.target) if learn else 'off'}; admin API {admin_state}; "
          f"{app[ACCESS].describe()}; replica {service.replica}; "
          "models load in the background (GET /readyz)", flush=True)
    run(app, host, port)


def run(app: web.Application, host: str, port: int) -> None:
    """Serve `app` until interrupted, tuned for latency and CPU per request."""
    # The audit writer thread holds the GIL while it turns a batch into rows; at Python's default
    # 5 ms switch interval a request waits that long behind it. 1 ms cut p99 at concurrency 1
    # from ~20 ms to ~5 ms in bench/proxy.py, at no cost in throughput.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    tune_gc()
    web.run_app(app, host=host, port=port, access_log=None, print=None, handle_signals=True)


def tune_gc() -> None:
    """The cyclic garbage collector, set for a long-running server. What the process has built
    by now (modules, policy, hard-stop rules) lives as long as it does: frozen, it is never walked
    again. And a server keeps every in-flight request's objects young, so at the default
    threshold (700 allocations) each collection walked and promoted them all over again. Both
    together: a sixth less CPU per request and a fifth more requests a second on the forwarding
    path at concurrency 32 (bench/proxy.py's servers, 16 alternating rounds)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
