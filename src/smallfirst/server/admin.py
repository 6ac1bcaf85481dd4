"""The admin API: kill switch, rollout, policy reload; each call audited, allowed or refused.

    POST /admin/kill-switch     {"on": true|false, "reason": "..."}
    POST /admin/rollout         {"mode": "live"|"shadow"|null, "task"?: "...", "group"?: "...",
                                 "local_groups"?: ["..."]}   (null with a task or group clears it)
    POST /admin/policy/reload   {"keep_overrides": true}      (body optional)
    GET  /admin/state

The admin token (SMALLFIRST_ADMIN_TOKEN) guards it, as a bearer token or the dashboard's admin
session with its CSRF token (access.py); a change from another origin is refused. Without the
token the admin API is off and every /admin path answers 404, as if it did not exist, so a scan
cannot tell a guarded admin API from none; a missing or wrong token answers 401, a cross-origin
or CSRF failure 403. A change applies to the next request.

Changes made here are overrides kept on top of the policy file, and they survive a reload: a
kill switch thrown during an incident must not be undone by someone reloading an edited file.
`{"keep_overrides": false}` drops them. Every call is written to the `admin_events` table of the
audit database, in its own short transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smallfirst.audit import open_readonly
from smallfirst.policy import Policy, PolicyError, load_policy
from smallfirst.server.access import Access, OperatedService

log = logging.getLogger("smallfirst.admin")

ADMIN_EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS admin_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts REAL NOT NULL,
  action TEXT NOT NULL,        -- kill_switch | rollout | policy_reload | state | unknown
  allowed INTEGER NOT NULL,    -- 1 the call was authorised, 0 refused
  status INTEGER NOT NULL,     -- the HTTP status answered
  remote TEXT,                 -- the caller's address
  detail TEXT,                 -- JSON: what was asked, what changed, or why it was refused
  policy_before TEXT,          -- policy_version before and after the call
  policy_after TEXT
)
"""
_ACTIONS = {"/admin/kill-switch": "kill_switch", "/admin/rollout": "rollout",
            "/admin/policy/reload": "policy_reload", "/admin/state": "state"}
_MAX_BODY = 64 * 1024


# ---------------------------------------------------------------------- overrides


@dataclass(frozen=True)
class Overrides:
    """What admin calls changed, applied on top of whatever policy file is loaded."""

    kill_switch: bool | None = None
    kill_switch_reason: str | None = None
    mode: Literal["live", "shadow"] | None = None
    task_modes: dict[str, Literal["live", "shadow"] | None] = field(default_factory=dict)  # None: the file's
    group_modes: dict[str, Literal["live", "shadow"] | None] = field(default_factory=dict)
    local_groups: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.kill_switch is not None:
            out["kill_switch"] = self.kill_switch
            out["kill_switch_reason"] = self.kill_switch_reason
        if self.mode is not None:
            out["mode"] = self.mode
        if self.task_modes:
            out["task_modes"] = dict(self.task_modes)
        if self.group_modes:
            out["group_modes"] = dict(self.group_modes)
        if self.local_groups is not None:
            out["local_groups"] = list(self.local_groups)
        return out

    def apply(self, policy: Policy) -> Policy:
        d = self.to_dict()
        if not d:
            return policy
        r = policy.rollout
        task_modes = {**r.task_modes, **{k: v for k, v in self.task_modes.items() if v is not None}}
        for k, v in self.task_modes.items():
            if v is None:
                task_modes.pop(k, None)
        group_modes = {**r.group_modes, **{k: v for k, v in self.group_modes.items() if v is not None}}
        for k, v in self.group_modes.items():
            if v is None:
                group_modes.pop(k, None)
        rollout = r.model_copy(update={
            "mode": self.mode or r.mode,
            "kill_switch": r.kill_switch if self.kill_switch is None else self.kill_switch,
            "kill_switch_reason": r.kill_switch_reason if self.kill_switch is None else self.kill_switch_reason,
            # A task the reloaded file no longer has keeps no mode.
            "task_modes": {k: v for k, v in task_modes.items() if k in policy.tasks},
            "group_modes": group_modes,
            "local_groups": list(self.local_groups) if self.local_groups is not None else r.local_groups,
        })
        # The audit's policy_version names the policy in force, overrides included.
        digest = hashlib.sha256(f"{policy.digest}:{json.dumps(d, sort_keys=True)}".encode()).hexdigest()
        return policy.model_copy(update={"rollout": rollout, "digest": digest})


# ---------------------------------------------------------------------- request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KillSwitchBody(_Body):
    on: bool
    reason: str | None = Field(None, max_length=500)


class RolloutBody(_Body):
    mode: Literal["live", "shadow"] | None = None
    task: str | None = Field(None, min_length=1, max_length=64)
    group: str | None = Field(None, min_length=1, max_length=64)
    local_groups: list[str] | None = Field(None, max_length=1000)


class ReloadBody(_Body):
    keep_overrides: bool = True


# ---------------------------------------------------------------------- the audit table


def record_admin_event(db_path: str | Path, event: dict[str, Any]) -> None:
    """One admin event, in its own short transaction in the audit database."""
    conn = sqlite3.connect(db_path, timeout=5.0)
    try:
        with conn:
            conn.execute(ADMIN_EVENTS_SCHEMA)
            conn.execute(
                "INSERT INTO admin_events (ts, action, allowed, status, remote, detail, policy_before, policy_after) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (event["ts"], event["action"], int(event["allowed"]), event["status"], event.get("remote"),
                 json.dumps(event.get("detail"), ensure_ascii=False), event.get("policy_before"), event.get("policy_after")),
            )
    finally:
        conn.close()


def read_admin_events(db_path: str | Path, limit: int = 50) -> list[dict[str, Any]]:
    conn = open_readonly(db_path)
    try:
        rows = conn.execute("SELECT * FROM admin_events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    except sqlite3.OperationalError:  # no admin call yet: no table
        return []
    finally:
        conn.close()
    return [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows]


# ---------------------------------------------------------------------- handlers


def add_routes(app: web.Application, service: OperatedService, access: Access) -> None:
    handler = _Admin(service, access)
    app.router.add_route("*", "/admin/{tail:.*}", handler.dispatch)


def refusal_response(refusal: Any) -> web.Response:
    """The answer to a refused admin call (shared with the dashboard's review endpoint)."""
    if refusal.status == 404:
        return _json({"error": "not found (the admin API is off: set SMALLFIRST_ADMIN_TOKEN to turn it on)"}, 404)
    if refusal.status == 401:
        return _json({"error": "a valid bearer token is required (Authorization: Bearer $SMALLFIRST_ADMIN_TOKEN)"},
                     401, {"www-authenticate": 'Bearer realm="smallfirst-admin"'})
    return _json({"error": refusal.reason}, refusal.status)


class _Admin:
    def __init__(self, service: OperatedService, access: Access):
        self.service = service
        self.access = access

    async def dispatch(self, request: web.Request) -> web.Response:
        s = self.service
        action = _ACTIONS.get(request.path, "unknown")
        event: dict[str, Any] = {"ts": time.time(), "action": action, "allowed": False, "remote": request.remote,
                                 "policy_before": s.router.policy.version_tag, "detail": {"method": request.method}}
        read = request.method in ("GET", "HEAD")
        refusal = self.access.check_admin_read(request) if read else self.access.check_change(request)
        if refusal is not None:
            resp = refusal_response(refusal)
            event["detail"]["refused"] = refusal.reason
        else:
            event["allowed"] = True
            resp = await self._authorised_call(request, action, event["detail"])
        event["status"] = resp.status
        event["policy_after"] = s.router.policy.version_tag
        s.metrics.admin_calls.labels(action, "true" if event["allowed"] else "false").inc()
        audited = await self._record(event)
        if not audited and resp.status < 400:
            resp = _json({**json.loads(resp.body), "audited": False}, resp.status)  # type: ignore[arg-type]
        return resp

    async def _record(self, event: dict[str, Any]) -> bool:
        path = self.service.audit_path
        if path is None:
            log.warning("admin call not stored (no audit database): %s", event)
            return False
        try:
            await asyncio.to_thread(record_admin_event, path, event)
            return True
        except sqlite3.Error as exc:
            # The change itself stands: a kill switch must work with the disk full. Say so loudly.
            log.error("admin event could not be written to %s: %s: %s", path, exc, event)
            return False

    async def _authorised_call(self, request: web.Request, action: str, detail: dict[str, Any]) -> web.Response:
        routes = {
            ("POST", "kill_switch"): (KillSwitchBody, self.kill_switch),
            ("POST", "rollout"): (RolloutBody, self.rollout),
            ("POST", "policy_reload"): (ReloadBody, self.reload),
            ("GET", "state"): (None, None),
        }
        if action == "unknown":
            return _json({"error": f"no admin endpoint {request.path}"}, 404)
        if (request.method, action) not in routes:
            return _json({"error": f"{request.method} is not allowed on {request.path}"}, 405)
        model, handler = routes[(request.method, action)]
        if model is None or handler is None:
            return _json(self._state())
        try:
            raw: bytes | None = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raw = None
        if raw is None or len(raw) > _MAX_BODY:
            detail["error"] = "body too large"
            return _json({"error": f"admin request body is larger than {_MAX_BODY} bytes"}, 413)
        try:
            data = json.loads(raw) if raw.strip() else {}
            body = model.model_validate(data)
        except ValueError as exc:  # malformed JSON or a ValidationError
            detail["error"] = _short_error(exc)
            return _json({"error": detail["error"]}, 400)
        detail["request"] = body.model_dump(exclude_unset=True)
        return handler(body, detail)

    def kill_switch(self, body: KillSwitchBody, detail: dict[str, Any]) -> web.Response:
        s = self.service
        reason = body.reason or ("kill switch on (admin API)" if body.on else None)
        s.install(s.base_policy, replace(s.overrides, kill_switch=body.on, kill_switch_reason=reason))
        return _json(self._state())

    def rollout(self, body: RolloutBody, detail: dict[str, Any]) -> web.Response:
        s = self.service
        given = body.model_fields_set
        if body.task is not None and body.group is not None:
            return _json({"error": "give task or group, not both"}, 400)
        if "mode" not in given and "local_groups" not in given:
            return _json({"error": "nothing to change: give mode and/or local_groups"}, 400)
        o = s.overrides
        if "mode" in given:
            if body.task is not None:
                if body.task not in s.router.policy.tasks:
                    return _json({"error": f"unknown task {body.task!r}; the policy has {sorted(s.router.policy.tasks)}"}, 400)
                o = replace(o, task_modes={**o.task_modes, body.task: body.mode})
            elif body.group is not None:
                o = replace(o, group_modes={**o.group_modes, body.group: body.mode})
            elif body.mode is None:
                return _json({"error": "mode null clears a task's or a group's mode; the default mode needs live or shadow"}, 400)
            else:
                o = replace(o, mode=body.mode)
        if body.local_groups is not None:
            o = replace(o, local_groups=tuple(body.local_groups))
        s.install(s.base_policy, o)
        return _json(self._state())

    def reload(self, body: ReloadBody, detail: dict[str, Any]) -> web.Response:
        s = self.service
        try:
            # The file is validated in full first; a policy that fails leaves the old one in force.
            new = load_policy(s.policy_path)
        except PolicyError as exc:
            detail["error"] = str(exc)
            return _json({"error": f"policy rejected, the old one stays: {exc}"}, 422)
        s.install(new, s.overrides if body.keep_overrides else Overrides())
        if s.warm_on_start:
            s.start_warming()  # models the new policy names load in the background
        return _json(self._state())

    def _state(self) -> dict[str, Any]:
        s = self.service
        p = s.router.policy
        return {
            "ok": True,
            "policy_version": p.version_tag,
            "policy_source": p.source,
            "rollout": p.rollout.model_dump(),
            "tool_use": p.tool_use,
            "overrides": s.overrides.to_dict(),
        }


def _json(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        return f"{loc}: {err['msg']}"
    return f"the request body is not valid JSON: {exc}"
