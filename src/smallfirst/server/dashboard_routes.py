"""The operator dashboard: server-rendered HTML with inline SVG, no CDN, no framework.

    GET  /dashboard?window=hour|day|week|all   the six metrics, plots, kill switch, review queue
    GET  /dashboard/api/summary?window=...      the same numbers as JSON
    GET  /dashboard/decisions?task=&route=&reason=&user_group=&model=&window=[&format=json]
    GET  /dashboard/login, POST /dashboard/login (form: token), POST /dashboard/logout
    POST /dashboard/review  {"decision_id": "...", "label": "accept"|"escalate"}   (admin)

Who may read and change what is access.py's: reads are open on loopback and need a token beyond
it; the kill switch (posted to /admin/kill-switch) and reviews need the admin token, as a bearer
header or a login session with its CSRF token, from this page's origin. Every review, login and
refusal is written to admin_events. An audit store that does not exist yet (a fresh `serve
--audit NEW.db` before its first decision) shows an empty dashboard; one that cannot be reached
(PostgreSQL down or restarting) is answered 503 with what failed, while the service keeps
routing. All numbers come from smallfirst.dashboard (SQL over the audit store).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
import time
from html import escape
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import quote

from aiohttp import web

from smallfirst import dashboard as dash
from smallfirst.audit import ensure_schema
from smallfirst.review import REVIEW_LABELS
from smallfirst.server.access import CSRF_HEADER, Access, OperatedService, cross_site
from smallfirst.server.admin import record_admin_event, refusal_response
from smallfirst.store import describe, unreachable_errors

log = logging.getLogger("smallfirst.dashboard")
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# One colour per FallbackReason (stable across pages), readable on white.
_PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
            "#9c755f", "#bab0ac", "#1b9e77", "#7570b3")
_W, _H = 560, 200  # every chart has this fixed size, so the page never reflows as it loads
RETRY_AFTER_S = 5


class StoreUnreachable(Exception):
    """The audit store cannot be reached now; answered 503, and the service goes on routing."""


class Dashboard:
    """The handlers; `service` is None for `smallfirst dashboard` on a standalone audit file."""

    def __init__(self, audit_path: str | None, access: Access, service: OperatedService | None = None):
        self.audit_path = audit_path
        self.access = access
        self.service = service

    async def _query(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        if self.audit_path is None:
            raise web.HTTPNotFound(text="the dashboard needs an audit store (serve with --audit)")
        audit = self.service.audit if self.service is not None else None
        if audit is not None and not audit.failing:
            # What the router has submitted is on disk before we count it, so the page agrees with /metrics.
            await asyncio.to_thread(audit.flush, 5.0)

        def run() -> T:
            try:
                conn = dash.connect(self.audit_path, write=write)  # type: ignore[arg-type]
            except FileNotFoundError:
                if write:
                    raise
                conn = _empty_store()  # no decision recorded yet: an empty dashboard, not an error
            try:
                return fn(conn)
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc) or write:
                    raise
                conn.close()
                conn = _empty_store()  # the file exists (admin events only) but holds no decisions yet
                return fn(conn)
            finally:
                conn.close()
        try:
            return await asyncio.to_thread(run)
        except unreachable_errors() as exc:
            raise StoreUnreachable(
                f"the audit store {describe(self.audit_path)} is unreachable ({type(exc).__name__}: "
                f"{str(exc).strip()}); the service goes on routing and keeps its decisions (in memory, "
                "then in its spill file) until the store is back") from exc

    # ------------------------------------------------------------------ who may read

    def reader(self, handler: Handler, *, html: bool) -> Handler:
        """`handler` behind the read check: a page sends a browser to the login form, an API
        answers 401; with the dashboard off (beyond loopback, no token) both answer 403."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            page = html and request.query.get("format") != "json"
            if not self.access.dashboard_served:
                msg = ("the dashboard is off: this service listens beyond loopback and no SMALLFIRST_READ_TOKEN "
                       "or SMALLFIRST_ADMIN_TOKEN is set")
                return _page("smallfirst", f"<p>{escape(msg)}</p>", status=403) if page else _error(403, msg)
            if not self.access.may_read(request):
                if page:
                    return _see_other(f"/dashboard/login?next={quote(request.path_qs, safe='')}")
                return _error(401, "a token is required: Authorization: Bearer <read or admin token>",
                              {"www-authenticate": 'Bearer realm="smallfirst-dashboard"'})
            try:
                return await handler(request)
            except StoreUnreachable as exc:
                retry = {"retry-after": str(RETRY_AFTER_S)}
                if page:
                    resp = _page("smallfirst", f'<p class="alarm" role="alert">{escape(str(exc))}</p>', status=503)
                    resp.headers.update(retry)
                    return resp
                return _error(503, str(exc), retry)
        return guarded

    # ------------------------------------------------------------------ login

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if not self.access.dashboard_served:
            return await self.reader(self.page, html=True)(request)
        return _login_page(request.query.get("next", "/dashboard"), "")

    async def login(self, request: web.Request) -> web.StreamResponse:
        event: dict[str, Any] = {"ts": time.time(), "action": "login", "allowed": False, "remote": request.remote,
                                 "detail": {"method": "POST"}}
        form = await request.post()
        target = _safe_next(str(form.get("next", "/dashboard")))
        cross = cross_site(request)
        role = None if cross is not None or not self.access.dashboard_served else self.access.login(str(form.get("token", "")))
        if role is None:
            event["detail"]["refused"] = f"cross-origin request refused ({cross})" if cross else "wrong token"
            resp: web.StreamResponse = _login_page(target, "That token is not the admin or the read token.",
                                                   status=403 if cross else 401)
        else:
            event["allowed"], event["detail"]["role"] = True, role
            resp = _see_other(target)
            self.access.set_session(resp, request, role)
        event["status"] = resp.status
        await self._record(event)
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        resp = _see_other("/dashboard/login")
        self.access.end_session(resp)
        return resp

    # ------------------------------------------------------------------ JSON

    async def api_summary(self, request: web.Request) -> web.Response:
        window = _window(request)
        s = await self._query(lambda c: dash.summary(c, window))
        return web.json_response(s.to_dict(), headers=_HEADERS)

    async def review(self, request: web.Request) -> web.Response:
        event: dict[str, Any] = {"ts": time.time(), "action": "review", "allowed": False, "remote": request.remote,
                                 "detail": {"method": request.method}}
        refusal = self.access.check_change(request)
        if refusal is not None:
            resp = refusal_response(refusal)
            if refusal.status == 404:
                resp = web.json_response({"error": "reviews need the admin API: set SMALLFIRST_ADMIN_TOKEN"}, status=404)
            event["detail"]["refused"] = refusal.reason
        else:
            event["allowed"] = True
            resp = await self._store_review(request, event["detail"])
        event["status"] = resp.status
        if self.service is not None:
            self.service.metrics.admin_calls.labels("review", "true" if event["allowed"] else "false").inc()
        await self._record(event)
        return resp

    async def _record(self, event: dict[str, Any]) -> None:
        if self.service is not None:
            event["policy_before"] = event["policy_after"] = self.service.router.policy.version_tag
        if self.audit_path is None:
            return
        try:
            await asyncio.to_thread(record_admin_event, self.audit_path, event)
        except unreachable_errors() as exc:
            # As for admin calls: what was asked stands or failed on its own; say so loudly.
            log.error("dashboard event could not be written to %s: %s: %s", describe(self.audit_path), exc, event)

    async def _store_review(self, request: web.Request, detail: dict[str, Any]) -> web.Response:
        try:
            body = json.loads(await request.read())
            decision_id, label = str(body["decision_id"]), str(body["label"])
            if label not in REVIEW_LABELS:
                raise ValueError(f"label must be one of {', '.join(REVIEW_LABELS)}")
        except (ValueError, KeyError, TypeError) as exc:
            detail["error"] = f"bad review body: {exc}"
            return web.json_response({"error": detail["error"]}, status=400)
        detail["request"] = {"decision_id": decision_id, "label": label}
        try:
            found = await self._query(lambda c: dash.set_review_label(c, decision_id, label), write=True)
        except StoreUnreachable as exc:
            detail["error"] = str(exc)
            return _error(503, str(exc), {"retry-after": str(RETRY_AFTER_S)})
        except FileNotFoundError:
            found = False
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            found = False  # admin events only, no decision yet
        if not found:
            return web.json_response({"error": f"no decision {decision_id}"}, status=404)
        return web.json_response({"ok": True, "decision_id": decision_id, "review_label": label})

    # ------------------------------------------------------------------ HTML

    async def page(self, request: web.Request) -> web.Response:
        window = _window(request)
        s, queue, choices = await self._query(
            lambda c: (dash.summary(c, window), dash.review_queue(c), dash.filter_choices(c)))
        csrf = self.access.csrf_token(request)  # set only for an admin session
        body = "\n".join([
            _header(window, self._switch_state(), self._who(request)),
            _metrics_table(s),
            _charts(s),
            self._kill_switch_form(csrf is not None),
            _review_section(queue, enabled=csrf is not None, admin_api=self.access.admin_token is not None),
            _explorer_form(choices, {}, window),
        ])
        return _page("smallfirst dashboard", body, csrf=csrf)

    async def decisions(self, request: web.Request) -> web.Response:
        q = request.query
        window = q.get("window", "all")
        try:
            f = dash.Filters(task=q.get("task") or None, route=q.get("route") or None, reason=q.get("reason") or None,
                             user_group=q.get("user_group") or None, model=q.get("model") or None, window=window,
                             limit=int(q.get("limit", "50")))
            rows, choices = await self._query(lambda c: (dash.decisions(c, f), dash.filter_choices(c)))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        if q.get("format") == "json":
            return web.json_response({"decisions": rows}, headers=_HEADERS)
        body = "\n".join([
            '<header><h1><a href="/dashboard">smallfirst</a> · decisions</h1></header>',
            _explorer_form(choices, dict(q), window),
            _decision_table(rows),
        ])
        return _page("smallfirst decisions", body)

    def _who(self, request: web.Request) -> str:
        role = self.access.role(request)
        if role is not None:
            return (f'signed in ({role}) <form method="post" action="/dashboard/logout" class="inline">'
                    '<button type="submit">Log out</button></form>')
        return '<a href="/dashboard/login" id="login-link">Log in</a>'

    def _switch_state(self) -> dict[str, Any] | None:
        if self.service is None:
            return None
        r = self.service.router.policy.rollout
        return {"kill_switch": r.kill_switch, "reason": r.kill_switch_reason, "mode": r.mode,
                "task_modes": r.task_modes, "group_modes": r.group_modes, "local_groups": r.local_groups,
                "policy": self.service.router.policy.version_tag}

    def _kill_switch_form(self, admin: bool) -> str:
        head = '<section aria-labelledby="ks"><h2 id="ks">Kill switch</h2>'
        if self.service is None:
            return head + "<p>Standalone audit file: no service to switch (use <code>smallfirst serve</code>).</p></section>"
        if self.access.admin_token is None:
            return head + "<p>The admin API is off: set SMALLFIRST_ADMIN_TOKEN to toggle it here.</p></section>"
        if not admin:
            return head + '<p><a href="/dashboard/login">Log in with the admin token</a> to toggle it.</p></section>'
        on = self.service.router.policy.rollout.kill_switch
        return f"""{head}
<form id="kill-switch-form" data-on="{'false' if on else 'true'}">
 <label for="ks-reason">Reason</label> <input id="ks-reason" name="reason" maxlength="500">
 <button id="ks-toggle" type="submit">{'Turn kill switch off' if on else 'Turn kill switch on'}</button>
 <output id="ks-result" for="ks-toggle" role="status"></output>
</form></section>"""


def register_dashboard(app: web.Application, service: OperatedService, access: Access) -> None:
    """The dashboard routes on the service's app, reading the service's audit store."""
    _add_routes(app, Dashboard(service.audit_path, access, service))


def create_dashboard_app(audit_path: str, admin_token: str | None = None, *, exposed: bool = False) -> web.Application:
    """`smallfirst dashboard --audit DB`: the dashboard alone, over an audit file."""
    app = web.Application()
    _add_routes(app, Dashboard(audit_path, Access.from_env(admin_token, exposed=exposed)))
    return app


def _add_routes(app: web.Application, d: Dashboard) -> None:
    app.router.add_get("/dashboard", d.reader(d.page, html=True))
    app.router.add_get("/dashboard/api/summary", d.reader(d.api_summary, html=False))
    app.router.add_get("/dashboard/decisions", d.reader(d.decisions, html=True))
    app.router.add_get("/dashboard/login", d.login_form)
    app.router.add_post("/dashboard/login", d.login)
    app.router.add_post("/dashboard/logout", d.logout)
    app.router.add_post("/dashboard/review", d.review)


def _empty_store() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    ensure_schema(conn)
    return conn


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={**_HEADERS, "location": location})


def _safe_next(target: str) -> str:
    # Only back into the dashboard: never an open redirect to another site.
    return target if target.startswith("/dashboard") and not target.startswith("//") else "/dashboard"


def _window(request: web.Request) -> str:
    window = request.query.get("window", "day")
    if window not in dash.WINDOWS:
        raise web.HTTPBadRequest(text=f"window must be one of {', '.join(dash.WINDOWS)}")
    return window


# ---------------------------------------------------------------------- formatting (shared with the tests)


def fmt_rate(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f}%"


def fmt_ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f} ms"


def fmt_usd(x: float | None) -> str:
    return "–" if x is None else f"${x:.6f}"


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + "Z"


# ---------------------------------------------------------------------- page parts


# No framing, no third-party anything, nothing cached; the one inline script runs by its nonce.
_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff", "x-frame-options": "DENY",
            "referrer-policy": "same-origin"}


def _page(title: str, body: str, *, status: int = 200, csrf: str | None = None) -> web.Response:
    nonce = secrets.token_urlsafe(16)
    meta = f'<meta name="csrf-token" content="{escape(csrf)}">' if csrf else ""
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src 'self' data:; "
           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    return web.Response(text=f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">{meta}
<style>{_CSS}</style></head>
<body>{body}
<script nonce="{nonce}">{_JS}</script></body></html>""", content_type="text/html", status=status,
                        headers={**_HEADERS, "content-security-policy": csp})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers={**_HEADERS, **(headers or {})})


def _login_page(target: str, message: str, status: int = 200) -> web.Response:
    note = f'<p class="alarm" role="alert">{escape(message)}</p>' if message else ""
    body = f"""<header><h1>smallfirst</h1></header>
<section aria-labelledby="login"><h2 id="login">Log in</h2>{note}
<p>The admin token can read and change (kill switch, reviews); the read token can only read.</p>
<form method="post" action="/dashboard/login">
 <input type="hidden" name="next" value="{escape(_safe_next(target))}">
 <label for="token">Token</label> <input id="token" name="token" type="password" autocomplete="off" required>
 <button id="login-submit" type="submit">Log in</button>
</form></section>"""
    return _page("smallfirst login", body, status=status)


def _header(window: str, state: dict[str, Any] | None, who: str) -> str:
    links = " ".join(
        f'<a href="/dashboard?window={w}"{" aria-current=page class=on" if w == window else ""}>{label}</a>'
        for w, label in (("hour", "last hour"), ("day", "last day"), ("week", "last week"), ("all", "all")))
    if state is None:
        st = "<span>standalone audit file</span>"
    else:
        ks = ("<strong class=alarm>KILL SWITCH ON</strong>" + (f" ({escape(state['reason'])})" if state["reason"] else "")
              if state["kill_switch"] else "<strong class=ok>kill switch off</strong>")
        extra = "".join(f"; {k} {escape(json.dumps(state[k]))}" for k in ("task_modes", "group_modes") if state[k])
        st = (f'<span id="switch-state" data-kill-switch="{str(state["kill_switch"]).lower()}">{ks}</span> · '
              f"rollout {escape(state['mode'])}, local groups {escape(', '.join(state['local_groups']))}{extra} · "
              f"policy {escape(state['policy'])}")
    return (f'<header><h1>smallfirst</h1><nav aria-label="window">Window: {links}</nav>'
            f'<span class="who">{who}</span><p class="state">{st}</p></header>')


def _cell(metric: str, task: str, text: str) -> str:
    return f'<td data-metric="{metric}" data-task="{escape(task)}">{escape(text)}</td>'


def _metrics_table(s: dash.Summary) -> str:
    routes = ", ".join(f'<span data-route="{escape(r)}">{escape(r)} {n}</span>' for r, n in s.routes.items()) or "none"
    rows = []
    for m in [*s.tasks, s.total]:
        name = "all tasks" if m.task_type == dash.ALL else m.task_type
        reasons = ", ".join(f"{k} {v}" for k, v in m.reasons.items()) or "none"
        defect = "no reviews yet" if m.defect_rate is None else f"{fmt_rate(m.defect_rate)} of {m.reviewed_local}"
        rows.append(
            f'<tr{" class=total" if m.task_type == dash.ALL else ""}><th scope="row">{escape(name)}</th>'
            + _cell("decisions", m.task_type, str(m.decisions))
            + _cell("acceptance_rate", m.task_type, fmt_rate(m.acceptance_rate))
            + _cell("escalation_rate", m.task_type, fmt_rate(m.escalation_rate))
            + _cell("reasons", m.task_type, reasons)
            + _cell("defect_rate", m.task_type, defect)
            + _cell("frontier_latency", m.task_type, f"{fmt_ms(m.frontier_p50_ms)} / {fmt_ms(m.frontier_p95_ms)}")
            + _cell("cost_per_success", m.task_type,
                    f"{fmt_usd(m.cost_per_success_usd)} vs {fmt_usd(m.frontier_only_cost_per_success_usd)}")
            + "</tr>")
    return f"""<section aria-labelledby="six"><h2 id="six">Routing metrics</h2>
<p>Decisions by route: <span id="routes">{routes}</span></p>
<table class="metrics"><thead><tr><th scope="col">task type</th><th scope="col">decisions</th>
<th scope="col">local acceptance</th><th scope="col">escalation</th><th scope="col">validation failure reasons</th>
<th scope="col">local defect rate (reviews)</th><th scope="col">frontier latency p50 / p95</th>
<th scope="col">cost per successful task vs frontier-only</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table></section>"""


# ---------------------------------------------------------------------- SVG charts


def _svg(title: str, inner: str, legend: list[tuple[str, str]]) -> str:
    leg = "".join(f'<li><span class="sw" style="background:{c}"></span>{escape(n)}</li>' for n, c in legend)
    return (f'<figure><svg role="img" aria-label="{escape(title)}" width="{_W}" height="{_H}" '
            f'viewBox="0 0 {_W} {_H}"><title>{escape(title)}</title>{inner}</svg>'
            f'<figcaption>{escape(title)}<ul class="legend">{leg}</ul></figcaption></figure>')


def _axis(label_lo: str, label_hi: str, max_text: str) -> str:
    return (f'<line x1="40" y1="{_H - 20}" x2="{_W - 10}" y2="{_H - 20}" stroke="#999"/>'
            f'<text x="36" y="16" text-anchor="end" class="ax">{escape(max_text)}</text>'
            f'<text x="36" y="{_H - 20}" text-anchor="end" class="ax">0</text>'
            f'<text x="40" y="{_H - 5}" class="ax">{escape(label_lo)}</text>'
            f'<text x="{_W - 10}" y="{_H - 5}" text-anchor="end" class="ax">{escape(label_hi)}</text>')


def _empty(title: str) -> str:
    return _svg(title, f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" class="ax">no decisions in this window</text>', [])


def _charts(s: dash.Summary) -> str:
    return ('<section aria-labelledby="plots"><h2 id="plots">Plots</h2><div class="charts">'
            + _volume_chart(s) + _reasons_chart(s) + _latency_chart(s) + _cost_chart(s) + "</div></section>")


def _volume_chart(s: dash.Summary) -> str:
    title = "Local acceptances and escalations over time"
    if not s.series:
        return _empty(title)
    top = max(b.accepted_local + b.escalated for b in s.series) or 1
    plot_w, plot_h = _W - 50, _H - 40
    bw = plot_w / len(s.series)
    bars = []
    for i, b in enumerate(s.series):
        x = 40 + i * bw
        ha, he = plot_h * b.accepted_local / top, plot_h * b.escalated / top
        tip = f"{_ts(b.start)}: {b.accepted_local} local, {b.escalated} escalated"
        bars.append(f'<g><title>{tip}</title>'
                    f'<rect x="{x:.1f}" y="{_H - 20 - ha:.1f}" width="{max(bw - 1, 1):.1f}" height="{ha:.1f}" fill="#59a14f"/>'
                    f'<rect x="{x:.1f}" y="{_H - 20 - ha - he:.1f}" width="{max(bw - 1, 1):.1f}" height="{he:.1f}" fill="#f28e2b"/></g>')
    return _svg(title, _axis(_ts(s.series[0].start), _ts(s.series[-1].start), str(top)) + "".join(bars),
                [("accepted locally", "#59a14f"), ("escalated", "#f28e2b")])


def _reasons_chart(s: dash.Summary) -> str:
    title = "Validation failure reasons per task type (stacked)"
    tasks = [t for t in s.tasks if t.reasons]
    if not tasks:
        return _empty(title)
    colour = {r: _PALETTE[i % len(_PALETTE)] for i, r in enumerate(s.reasons)}
    top = max(sum(t.reasons.values()) for t in tasks)
    row_h = min(30.0, (_H - 30) / len(tasks))
    out = []
    for i, t in enumerate(tasks):
        y, x = 10 + i * row_h, 130.0
        out.append(f'<text x="125" y="{y + row_h * 0.6:.1f}" text-anchor="end" class="ax">{escape(t.task_type[:20])}</text>')
        for reason, n in t.reasons.items():
            w = (_W - 140) * n / top
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{row_h - 4:.1f}" fill="{colour[reason]}">'
                       f'<title>{escape(t.task_type)}: {escape(reason)} {n}</title></rect>')
            x += w
    out.append(f'<text x="{_W - 10}" y="{_H - 5}" text-anchor="end" class="ax">max {top} decisions</text>')
    return _svg(title, "".join(out), [(r, colour[r]) for r in s.reasons])


def _latency_chart(s: dash.Summary) -> str:
    title = "Latency per tier, p50 and p95 (ms)"
    tiers = [t for t in s.latency if t.count]
    if not tiers:
        return _empty(title)
    top = max(t.p95_ms or 0 for t in tiers) or 1.0
    out, slot = [], (_W - 50) / len(s.latency)
    for i, t in enumerate(s.latency):
        x0 = 40 + i * slot + slot * 0.15
        for j, (name, v, c) in enumerate((("p50", t.p50_ms, "#4e79a7"), ("p95", t.p95_ms, "#e15759"))):
            h = (_H - 40) * (v or 0) / top
            out.append(f'<rect x="{x0 + j * slot * 0.35:.1f}" y="{_H - 20 - h:.1f}" width="{slot * 0.3:.1f}" '
                       f'height="{h:.1f}" fill="{c}"><title>{t.tier} {name}: {fmt_ms(v)}</title></rect>')
        out.append(f'<text x="{x0 + slot * 0.35:.1f}" y="{_H - 5}" text-anchor="middle" class="ax">'
                   f'{t.tier} (n={t.count}): {fmt_ms(t.p50_ms)} / {fmt_ms(t.p95_ms)}</text>')
    out.append(f'<line x1="40" y1="{_H - 20}" x2="{_W - 10}" y2="{_H - 20}" stroke="#999"/>'
               f'<text x="36" y="16" text-anchor="end" class="ax">{top:.0f}</text>')
    return _svg(title, "".join(out), [("p50", "#4e79a7"), ("p95", "#e15759")])


def _cost_chart(s: dash.Summary) -> str:
    title = "Cost over time: actual vs frontier-only (USD)"
    if not s.series:
        return _empty(title)
    top = max(max(b.cost_usd, b.frontier_only_cost_usd) for b in s.series) or 1.0
    n = len(s.series)

    def points(values: list[float]) -> str:
        step = (_W - 50) / max(n - 1, 1)
        return " ".join(f"{40 + i * step:.1f},{_H - 20 - (_H - 40) * v / top:.1f}" for i, v in enumerate(values))
    # Dots as well as lines: a window with a single bucket still shows its two values.
    lines = "".join(
        f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{points(vals)}"/>'
        + "".join(f'<circle cx="{pt.split(",")[0]}" cy="{pt.split(",")[1]}" r="3" fill="{c}"/>' for pt in points(vals).split())
        for vals, c in (([b.frontier_only_cost_usd for b in s.series], "#e15759"), ([b.cost_usd for b in s.series], "#4e79a7")))
    return _svg(title, _axis(_ts(s.series[0].start), _ts(s.series[-1].start), f"${top:.4f}") + lines,
                [("actual", "#4e79a7"), ("frontier-only", "#e15759")])


# ---------------------------------------------------------------------- review queue and explorer


def _review_section(queue: list[dict[str, Any]], *, enabled: bool, admin_api: bool) -> str:
    if not queue:
        items = "<p>Nothing to review: every local answer in the store has a review label.</p>"
    else:
        rows = []
        for d in queue:
            did = escape(d["decision_id"])
            buttons = "".join(
                f'<button type="button" class="review" data-decision="{did}" data-label="{lab}"'
                f'{"" if enabled else " disabled"}>{lab}</button>' for lab in REVIEW_LABELS)
            rows.append(f'<tr data-decision="{did}"><td><code>{did[:12]}</code></td><td>{escape(d["task_type"] or "")}</td>'
                        f'<td>{escape(str(d["label"]))}</td><td>{_conf(d)}</td><td class="preview">{escape(d["preview"] or "")[:160]}</td>'
                        f'<td>{buttons}</td><td class="review-state" role="status"></td></tr>')
        items = ('<table><thead><tr><th scope="col">decision</th><th scope="col">task</th><th scope="col">label</th>'
                 '<th scope="col">confidence</th><th scope="col">preview (redacted)</th><th scope="col">review</th>'
                 '<th scope="col">stored</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")
    note = ("" if enabled else "<p>Reviews need the admin API (SMALLFIRST_ADMIN_TOKEN).</p>" if not admin_api
            else '<p><a href="/dashboard/login">Log in with the admin token</a> to review.</p>')
    return f'<section aria-labelledby="rq"><h2 id="rq">Review queue (sampled local answers)</h2>{note}{items}</section>'


def _conf(d: dict[str, Any]) -> str:
    c = d.get("confidence_calibrated")
    return "–" if c is None else f"{c:.3f}"


def _explorer_form(choices: dict[str, list[str]], current: dict[str, str], window: str) -> str:
    def select(name: str, label: str) -> str:
        opts = ['<option value="">any</option>'] + [
            f'<option value="{escape(v)}"{" selected" if current.get(name) == v else ""}>{escape(v)}</option>'
            for v in choices.get(name, [])]
        return f'<label>{label} <select name="{name}">{"".join(opts)}</select></label>'
    wsel = "".join(f'<option value="{w}"{" selected" if w == window else ""}>{w}</option>' for w in dash.WINDOWS)
    return (f'<section aria-labelledby="ex"><h2 id="ex">Decision explorer</h2>'
            f'<form action="/dashboard/decisions" method="get" class="filters">'
            f'{select("task", "task")}{select("route", "route")}{select("reason", "reason")}'
            f'{select("user_group", "user group")}{select("model", "model")}'
            f'<label>window <select name="window">{wsel}</select></label>'
            f'<button type="submit">Show decisions</button></form></section>')


def _decision_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No decisions match.</p>"
    out = []
    for d in rows:
        checks = ", ".join(f"{c.get('name')}: {'pass' if c.get('ok') else 'fail'}" for c in d["checks"] or [])
        hs = d["hard_stop"]
        hard = f"{hs.get('category')} / {hs.get('rule')}" if hs else "none"
        lat = d["latency_ms"] or {}
        model = d["frontier_model"] if d["route"] == "frontier" else d["local_model"]
        out.append(
            f'<tr><td><code>{escape(d["decision_id"][:12])}</code><br>{_ts(d["ts"])}</td>'
            f'<td>{escape(d["task_type"] or "unknown")}<br>{escape(d["user_group"] or "")}</td>'
            f'<td>{escape(d["route"])} ({escape(d["mode"])})<br>{escape(d["reason"] or "none")}</td>'
            f'<td>{escape(str(model or ""))}<br>label {escape(str(d["label"]))}, conf {_conf(d)}</td>'
            f'<td>{escape(checks or "none")}</td><td>{escape(hard)}</td>'
            f'<td>{", ".join(f"{k} {v:.0f} ms" for k, v in lat.items() if isinstance(v, (int, float)))}</td>'
            f'<td>{fmt_usd(d["cost_usd"])}<br>vs {fmt_usd(d["frontier_only_cost_usd"])}</td>'
            f'<td>{escape(d["review_label"] or "")}</td>'
            f'<td class="preview">{escape(d["preview"] or "")}</td></tr>')
    return ('<table class="decisions"><thead><tr><th scope="col">decision</th><th scope="col">task / group</th>'
            '<th scope="col">route / reason</th><th scope="col">model</th><th scope="col">checks</th>'
            '<th scope="col">hard stop</th><th scope="col">latency</th><th scope="col">cost</th>'
            '<th scope="col">review</th><th scope="col">preview (redacted)</th></tr></thead><tbody>'
            + "".join(out) + "</tbody></table>")


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px 24px;color:#222;max-width:1280px}
h1{margin:0 8px 0 0;display:inline;font-size:22px} h2{font-size:17px;margin:20px 0 8px}
header nav{display:inline} header nav a{margin:0 4px;padding:2px 6px} a.on{background:#222;color:#fff;border-radius:3px}
.state{margin:6px 0} .alarm{color:#fff;background:#c00;padding:1px 6px} .ok{color:#275d27}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
tr.total{font-weight:600;background:#f4f4f4}
.charts{display:grid;grid-template-columns:repeat(2,580px);gap:12px}
figure{margin:0} figcaption{font-size:12px} .ax{font-size:10px;fill:#555}
.legend{list-style:none;padding:0;margin:2px 0;display:flex;flex-wrap:wrap;gap:8px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
.preview{font-family:monospace;font-size:12px;max-width:420px;overflow-wrap:anywhere}
form.filters label{margin-right:10px} :focus-visible{outline:3px solid #4e79a7}
.who{float:right} form.inline{display:inline}
button{padding:3px 10px}
"""

_JS = """
var csrf = document.querySelector('meta[name=csrf-token]');
function post(path, body) {
  return fetch(path, {method: 'POST', credentials: 'same-origin', headers: {'content-type': 'application/json',
    'x-csrf-token': csrf ? csrf.content : ''}, body: JSON.stringify(body)});
}
var ks = document.getElementById('kill-switch-form');
if (ks) ks.addEventListener('submit', function (e) {
  e.preventDefault();
  var out = document.getElementById('ks-result');
  var body = {on: ks.dataset.on === 'true'};
  var reason = document.getElementById('ks-reason').value;
  if (reason) body.reason = reason;
  post('/admin/kill-switch', body).then(function (r) {
    if (r.ok) { location.reload(); } else { r.json().then(function (j) { out.textContent = r.status + ': ' + j.error; }); }
  });
});
document.querySelectorAll('button.review').forEach(function (b) {
  b.addEventListener('click', function () {
    var row = b.closest('tr'), state = row.querySelector('.review-state');
    post('/dashboard/review', {decision_id: b.dataset.decision, label: b.dataset.label}).then(function (r) {
      r.json().then(function (j) { state.textContent = r.ok ? 'stored: ' + j.review_label : r.status + ': ' + j.error; });
    });
  });
});
"""
