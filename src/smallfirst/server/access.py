"""Who may read the dashboard and who may change the service.

Reads (GET /dashboard and its JSON APIs) are open on loopback, as an operator's own machine
expects, unless SMALLFIRST_READ_TOKEN is set (and only to requests addressed to a loopback name,
which keeps DNS-rebinding pages out). Once the service listens beyond loopback they need
a token: the admin token or the read token, as `Authorization: Bearer ...` or through a login
that sets an HttpOnly, SameSite=Strict session cookie. With no token configured there, the
dashboard is not served at all.

Changes (kill switch, rollout, policy reload, reviews) always need the admin token. A bearer
header is not sent by a browser on its own, so it needs nothing more; a session cookie is, so a
change made with one also needs the session's CSRF token (X-CSRF-Token). Every change must come
from the page's own origin: a request whose Origin, Referer or Sec-Fetch-Site says another site
is refused whatever it carries.

Sessions are stateless: the cookie carries role, expiry and a nonce, signed with HMAC keyed by
the token of that role, so any replica can check it and changing a token ends its sessions. The
CSRF token is an HMAC of the session's nonce under the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

from aiohttp import web

if TYPE_CHECKING:
    from smallfirst.audit import AuditLog
    from smallfirst.metrics import Metrics
    from smallfirst.policy import Policy
    from smallfirst.router import Router

Role = Literal["admin", "read"]
COOKIE = "smallfirst_session"
SESSION_S = 12 * 3600
CSRF_HEADER = "X-CSRF-Token"


class OperatedService(Protocol):
    """What the admin API and the dashboard need of the running service (server/app.py's
    Service); a protocol, so neither module imports the app that imports them."""

    router: "Router"
    metrics: "Metrics"
    audit: "AuditLog | None"
    audit_path: str | None
    policy_path: str | None
    base_policy: "Policy"
    overrides: Any
    warm_on_start: bool
    replica: str
    flags: Any  # smallfirst.flags.SharedFlags: the overrides as the shared store holds them

    def install(self, base: "Policy", overrides: Any) -> "Policy": ...
    def start_warming(self) -> None: ...
    async def change_flags(self, change: Any, event: dict[str, Any], *, base: "Policy | None" = None) -> bool: ...


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the service on this machine. An empty host, 0.0.0.0,
    :: and any name but localhost listen beyond it."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str  # recorded in admin_events and shown to the caller


@dataclass(frozen=True)
class Access:
    admin_token: str | None = None
    read_token: str | None = None
    exposed: bool = False  # listening beyond loopback

    @classmethod
    def from_env(cls, admin_token: str | None = None, *, exposed: bool = False) -> "Access":
        return cls(admin_token or os.environ.get("SMALLFIRST_ADMIN_TOKEN") or None,
                   os.environ.get("SMALLFIRST_READ_TOKEN") or None, exposed)

    # ------------------------------------------------------------------ what is allowed

    @property
    def dashboard_served(self) -> bool:
        """Beyond loopback without any token the dashboard would be open to all: it is off."""
        return not self.exposed or bool(self.admin_token or self.read_token)

    @property
    def reads_need_token(self) -> bool:
        return self.exposed or self.read_token is not None

    def describe(self) -> str:
        """One line for the startup message."""
        if not self.dashboard_served:
            return ("dashboard OFF: listening beyond loopback with no SMALLFIRST_READ_TOKEN or "
                    "SMALLFIRST_ADMIN_TOKEN (set one to serve it)")
        if self.reads_need_token:
            return "dashboard needs a token (log in at /dashboard/login or send a bearer token)"
        return "dashboard open on loopback"

    def role(self, request: web.Request) -> Role | None:
        """The role the request proves: a bearer token, else a valid session cookie."""
        given = request.headers.get("authorization", "")
        if given.startswith("Bearer "):
            return self._token_role(given[7:].strip())
        session = self._session(request)
        return session[0] if session is not None else None

    def fingerprint(self, request: web.Request) -> str | None:
        """Names the token a request proved (bearer or session) for the admin record: the first 8
        hex digits of its sha256, never the token itself."""
        role = self.role(request)
        key = self._key(role) if role is not None else None
        return None if key is None else "token:" + hashlib.sha256(key.encode()).hexdigest()[:8]

    def may_read(self, request: web.Request) -> bool:
        if self.role(request) is not None:
            return True
        # Open reads are for this machine's own browser: a page elsewhere whose name was made to
        # resolve to 127.0.0.1 (DNS rebinding) arrives with its own Host and reads nothing.
        return not self.reads_need_token and _loopback_host(request.host)

    def check_change(self, request: web.Request) -> Refusal | None:
        """None when `request` may change state: same origin, admin token, CSRF for a cookie."""
        if self.admin_token is None:
            return Refusal(404, "admin API off")
        cross = cross_site(request)
        if cross is not None:
            return Refusal(403, f"cross-origin request refused ({cross})")
        given = request.headers.get("authorization", "")
        if given.startswith("Bearer "):
            if self._token_role(given[7:].strip()) == "admin":
                return None
            return Refusal(401, "missing or wrong bearer token")
        session = self._session(request)
        if session is None or session[0] != "admin":
            return Refusal(401, "missing or wrong bearer token")
        if not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), self._csrf(*session).encode()):
            return Refusal(403, "missing or wrong CSRF token")
        return None

    def check_admin_read(self, request: web.Request) -> Refusal | None:
        """None when `request` may read admin state (GET /admin/state): the admin role."""
        if self.admin_token is None:
            return Refusal(404, "admin API off")
        if self.role(request) != "admin":
            return Refusal(401, "missing or wrong bearer token")
        return None

    def csrf_token(self, request: web.Request) -> str | None:
        """The CSRF token of the request's admin session, for the page to send back."""
        session = self._session(request)
        return self._csrf(*session) if session is not None and session[0] == "admin" else None

    # ------------------------------------------------------------------ login

    def login(self, token: str) -> Role | None:
        return self._token_role(token.strip())

    def set_session(self, response: web.StreamResponse, request: web.Request, role: Role) -> None:
        key = self._key(role)
        assert key is not None
        expires = int(time.time()) + SESSION_S
        nonce = secrets.token_urlsafe(16)
        value = f"{role}.{expires}.{nonce}.{_mac(key, 'session', role, str(expires), nonce)}"
        response.set_cookie(COOKIE, value, max_age=SESSION_S, path="/", httponly=True, samesite="Strict",
                            secure=_https(request))

    @staticmethod
    def end_session(response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/")

    # ------------------------------------------------------------------ internals

    def _key(self, role: str) -> str | None:
        return self.admin_token if role == "admin" else self.read_token if role == "read" else None

    def _token_role(self, given: str) -> Role | None:
        # Both comparisons always run: timing says nothing about which token was close.
        admin = self.admin_token is not None and hmac.compare_digest(given.encode(), self.admin_token.encode())
        read = self.read_token is not None and hmac.compare_digest(given.encode(), self.read_token.encode())
        return "admin" if admin else "read" if read else None

    def _session(self, request: web.Request) -> tuple[Role, str] | None:
        """(role, nonce) of a valid, unexpired session cookie."""
        parts = request.cookies.get(COOKIE, "").split(".")
        if len(parts) != 4:
            return None
        role, expires, nonce, mac = parts
        key = self._key(role)
        if key is None or not expires.isdigit() or int(expires) < time.time():
            return None
        if not hmac.compare_digest(mac.encode(), _mac(key, "session", role, expires, nonce).encode()):
            return None
        return role, nonce  # type: ignore[return-value]

    def _csrf(self, role: str, nonce: str) -> str:
        key = self._key(role)
        assert key is not None
        return _mac(key, "csrf", role, nonce)


def _loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    return is_loopback(name.strip("[]"))


def _mac(key: str, *parts: str) -> str:
    return hmac.new(key.encode(), "|".join(("smallfirst", *parts)).encode(), hashlib.sha256).hexdigest()


def _https(request: web.Request) -> bool:
    return request.secure or request.headers.get("x-forwarded-proto", "").lower() == "https"


def cross_site(request: web.Request) -> str | None:
    """Why `request` comes from another site, or None. Browsers send Origin (and Sec-Fetch-Site)
    with every POST; a client that sends neither is not a browser acting for someone else."""
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return "Sec-Fetch-Site: cross-site"
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value is None:
            continue
        if value == "null" or urlsplit(value).netloc.lower() != request.host.lower():
            return f"{header.capitalize()} {value[:100]}"
        return None  # the first one present decides
    return None
