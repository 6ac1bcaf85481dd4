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
`{"keep_overrides": false}` drops them. With an audit store the overrides are shared: every
replica on the same store applies a change within a second (smallfirst.flags), and a restart
keeps them. Every call is written to the `admin_events` table of the audit store, once: a change
in the same transaction as the change itself, with who (X-Smallfirst-Actor, else a fingerprint of
the token), why (the body's reason) and which replica took it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smallfirst.flags import Overrides, insert_admin_event
from smallfirst.policy import PolicyError, load_policy
from smallfirst.schema import open_for_writing
from smallfirst.server.access import Access, OperatedService
from smallfirst.store import connect, dialect_of

log = logging.getLogger("smallfirst.admin")

_ACTIONS = {"/admin/kill-switch": "kill_switch", "/admin/rollout": "rollout",
            "/admin/policy/reload": "policy_reload", "/admin/state": "state"}
_MAX_BODY = 64 * 1024


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
    reason: str | None = Field(None, max_length=500)


class ReloadBody(_Body):
    keep_overrides: bool = True
    reason: str | None = Field(None, max_length=500)


# ---------------------------------------------------------------------- the audit table


def record_admin_event(target: str | Path, event: dict[str, Any]) -> None:
    """One admin event, in its own short transaction in the audit store."""
    conn = open_for_writing(target)
    try:
        with conn:
            insert_admin_event(conn, event)
    finally:
        conn.close()


def read_admin_events(target: str | Path, limit: int = 50) -> list[dict[str, Any]]:
    conn = connect(target)
    try:
        if not dialect_of(conn).has_table(conn, "admin_events"):
            return []  # no admin call yet
        rows = conn.execute("SELECT * FROM admin_events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
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
                                 "policy_before": s.router.policy.version_tag, "detail": {"method": request.method},
                                 "actor": _actor(request, self.access), "replica": s.replica}
        read = request.method in ("GET", "HEAD")
        refusal = self.access.check_admin_read(request) if read else self.access.check_change(request)
        if refusal is not None:
            resp = refusal_response(refusal)
            event["detail"]["refused"] = refusal.reason
        else:
            event["allowed"] = True
            resp = await self._authorised_call(request, action, event)
        event["status"] = resp.status
        event["policy_after"] = s.router.policy.version_tag
        s.metrics.admin_calls.labels(action, "true" if event["allowed"] else "false").inc()
        audited = await self._record(event)
        if not audited and resp.status < 400:
            resp = _json({**json.loads(resp.body), "audited": False}, resp.status)  # type: ignore[arg-type]
        return resp

    async def _record(self, event: dict[str, Any]) -> bool:
        if event.pop("recorded", False):
            return True  # a change: written with the change itself (smallfirst.flags)
        path = self.service.audit_path
        if path is None:
            log.warning("admin call not stored (no audit database): %s", event)
            return False
        try:
            await asyncio.to_thread(record_admin_event, path, event)
            return True
        except Exception as exc:
            # The change itself stands: a kill switch must work with the disk full. Say so loudly.
            log.error("admin event could not be written to %s: %s: %s", path, exc, event)
            return False

    async def _authorised_call(self, request: web.Request, action: str, event: dict[str, Any]) -> web.Response:
        detail = event["detail"]
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
        event["reason"] = getattr(body, "reason", None)
        return await handler(body, event)

    async def kill_switch(self, body: KillSwitchBody, event: dict[str, Any]) -> web.Response:
        reason = body.reason or ("kill switch on (admin API)" if body.on else None)
        shared = await self.service.change_flags(
            lambda o: replace(o, kill_switch=body.on, kill_switch_reason=reason), event)
        return _json(self._state(shared))

    async def rollout(self, body: RolloutBody, event: dict[str, Any]) -> web.Response:
        s = self.service
        given = body.model_fields_set
        if body.task is not None and body.group is not None:
            return _json({"error": "give task or group, not both"}, 400)
        if "mode" not in given and "local_groups" not in given:
            return _json({"error": "nothing to change: give mode and/or local_groups"}, 400)
        if "mode" in given and body.task is None and body.group is None and body.mode is None:
            return _json({"error": "mode null clears a task's or a group's mode; the default mode needs live or shadow"}, 400)
        if "mode" in given and body.task is not None and body.task not in s.router.policy.tasks:
            return _json({"error": f"unknown task {body.task!r}; the policy has {sorted(s.router.policy.tasks)}"}, 400)

        # Applied to the overrides as they are in the store when the change lands, so a change
        # made at the same moment on another replica is kept.
        def change(o: Overrides) -> Overrides:
            if "mode" in given:
                if body.task is not None:
                    o = replace(o, task_modes={**o.task_modes, body.task: body.mode})
                elif body.group is not None:
                    o = replace(o, group_modes={**o.group_modes, body.group: body.mode})
                else:
                    o = replace(o, mode=body.mode)
            if body.local_groups is not None:
                o = replace(o, local_groups=tuple(body.local_groups))
            return o

        shared = await s.change_flags(change, event)
        return _json(self._state(shared))

    async def reload(self, body: ReloadBody, event: dict[str, Any]) -> web.Response:
        s = self.service
        try:
            # The file is validated in full first; a policy that fails leaves the old one in force.
            new = load_policy(s.policy_path)
        except PolicyError as exc:
            event["detail"]["error"] = str(exc)
            return _json({"error": f"policy rejected, the old one stays: {exc}"}, 422)
        keep = body.keep_overrides
        shared = await s.change_flags(lambda o: o if keep else Overrides(), event, base=new)
        if s.warm_on_start:
            s.start_warming()  # models the new policy names load in the background
        return _json(self._state(shared))

    def _state(self, shared: bool | None = None) -> dict[str, Any]:
        s = self.service
        p = s.router.policy
        out = {
            "ok": True,
            "policy_version": p.version_tag,
            "policy_source": p.source,
            "rollout": p.rollout.model_dump(),
            "tool_use": p.tool_use,
            "overrides": s.overrides.to_dict(),
            # The shared flags: their version in the store, and whether the store answers.
            "flags": {"version": s.flags.stored.version, "store_reachable": s.flags.reachable,
                      "pending_changes": len(s.flags.pending)},
        }
        if shared is not None:
            out["shared"] = shared  # False: applied on this replica; the others follow when the store is back
        return out


_ACTOR_RE = re.compile(r"^[\w.@:+-]{1,64}$")


def _actor(request: web.Request, access: Access) -> str | None:
    """Who made the call: the X-Smallfirst-Actor header when it is a plain name, else a short
    fingerprint of the token (or the session's token) presented, never the token."""
    name = request.headers.get("x-smallfirst-actor", "").strip()
    if _ACTOR_RE.match(name):
        return name
    return access.fingerprint(request)


def _json(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        return f"{loc}: {err['msg']}"
    return f"the request body is not valid JSON: {exc}"
