"""Who may read the dashboard and change the service, over real HTTP on 127.0.0.1.

`exposed=True` is what `smallfirst serve --host 0.0.0.0` passes: the service listens beyond
loopback. The tests bind 127.0.0.1 all the same and send what a browser or a script elsewhere
would send: no token, a wrong one, a session cookie without its CSRF token, another Origin.
"""

from __future__ import annotations

import http.client
import json
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from smallfirst.audit import AuditLog
from smallfirst.cli import main
from smallfirst.server.access import Access, is_loopback
from smallfirst.server.admin import read_admin_events
from test_router import ROUTINE
from test_server import ServerThread, anthropic_frontier, openai_client, server_policy, stub_backends, user  # noqa: F401

ADMIN = "admin-token-0123456789abcdef"
READER = "read-token-0123456789abcdef"


class Client:
    """Plain HTTP without redirects or a cookie jar: every header is the test's to choose."""

    def __init__(self, srv: ServerThread):
        self.port = srv.port
        self.origin = f"http://127.0.0.1:{srv.port}"
        self.cookie: str | None = None

    def request(self, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None,
                form: dict | None = None) -> tuple[int, dict[str, str], str]:
        h = dict(headers or {})
        if self.cookie and "Cookie" not in h:
            h["Cookie"] = self.cookie
        data = None
        if form is not None:
            data = urlencode(form).encode()
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, text
        finally:
            conn.close()

    def login(self, token: str) -> tuple[int, dict[str, str], str]:
        status, headers, text = self.request("POST", "/dashboard/login", form={"token": token, "next": "/dashboard"},
                                             headers={"Origin": self.origin})
        if "set-cookie" in headers:
            self.cookie = headers["set-cookie"].split(";", 1)[0]
        return status, headers, text

    def csrf(self) -> str:
        page = self.request("GET", "/dashboard")[2]
        m = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)
        assert m, "no CSRF token on the page"
        return m.group(1)


@pytest.fixture
def exposed(anthropic_frontier, tmp_path):  # noqa: F811
    audit = AuditLog.sqlite(tmp_path / "audit.db")
    srv = ServerThread(server_policy(anthropic_frontier), audit=audit, backends=stub_backends(),
                       admin_token=ADMIN, read_token=READER, exposed=True)
    openai_client(srv).chat.completions.create(model="smallfirst/classify_issue", messages=user(ROUTINE))
    yield srv, tmp_path / "audit.db"
    srv.stop()


def events(db) -> list[tuple[str, int, int, str | None]]:
    return [(e["action"], e["allowed"], e["status"], (e["detail"] or {}).get("refused"))
            for e in reversed(read_admin_events(db))]


def test_beyond_loopback_reads_need_a_token_pages_go_to_the_login_and_apis_answer_401(exposed):
    srv, _ = exposed
    c = Client(srv)
    status, headers, _ = c.request("GET", "/dashboard?window=all")
    login = urlsplit(headers["location"])
    assert status == 303 and login.path == "/dashboard/login" and parse_qs(login.query)["next"] == ["/dashboard?window=all"]
    for path in ("/dashboard/api/summary?window=all", "/dashboard/decisions?format=json"):
        status, headers, _ = c.request("GET", path)
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        assert c.request("GET", path, headers={"Authorization": "Bearer wrong-token-000000"})[0] == 401
    for token in (READER, ADMIN):
        status, _, body = c.request("GET", "/dashboard/api/summary?window=all", headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and json.loads(body)["total"]["decisions"] == 1


def test_login_sets_an_httponly_samestrict_cookie_and_a_wrong_token_is_refused_and_audited(exposed):
    srv, db = exposed
    c = Client(srv)
    status, headers, page = c.login("not-the-token-00000000")
    assert status == 401 and "set-cookie" not in headers and "not the admin or the read token" in page
    status, headers, _ = c.login(READER)
    assert status == 303 and headers["location"] == "/dashboard"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert READER not in cookie  # the cookie proves the token; it does not carry it
    status, _, page = c.request("GET", "/dashboard")
    assert status == 200 and "signed in (read)" in page and 'name="csrf-token"' not in page
    assert events(db) == [("login", 0, 401, "wrong token"), ("login", 1, 303, None)]


def test_a_read_session_cannot_change_anything(exposed):
    srv, db = exposed
    c = Client(srv)
    c.login(READER)
    h = {"Origin": c.origin, "X-CSRF-Token": "0" * 64}
    assert c.request("POST", "/admin/kill-switch", {"on": True}, headers=h)[0] == 401
    assert c.request("POST", "/dashboard/review", {"decision_id": "x", "label": "accept"}, headers=h)[0] == 401
    assert c.request("GET", "/admin/state")[0] == 401
    assert [e[:3] for e in events(db)][1:] == [("kill_switch", 0, 401), ("review", 0, 401), ("state", 0, 401)]


def test_an_admin_session_changes_state_only_with_its_csrf_token_from_its_own_origin(exposed):
    srv, db = exposed
    c = Client(srv)
    c.login(ADMIN)
    csrf = c.csrf()
    path, body = "/admin/kill-switch", {"on": True, "reason": "test"}
    assert c.request("POST", path, body, headers={"Origin": c.origin})[0] == 403  # no CSRF token
    assert c.request("POST", path, body, headers={"Origin": c.origin, "X-CSRF-Token": "f" * 64})[0] == 403
    status, _, text = c.request("POST", path, body, headers={"Origin": "https://evil.example", "X-CSRF-Token": csrf})
    assert status == 403 and "cross-origin" in text
    assert c.request("POST", path, body, headers={"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": csrf})[0] == 403
    assert srv.service.router.policy.rollout.kill_switch is False
    status, _, text = c.request("POST", path, body, headers={"Origin": c.origin, "X-CSRF-Token": csrf})
    assert status == 200 and json.loads(text)["rollout"]["kill_switch"] is True
    # the CSRF token belongs to the session: another admin session's token does not fit this one
    other = Client(srv)
    other.login(ADMIN)
    assert c.request("POST", path, {"on": False}, headers={"Origin": c.origin, "X-CSRF-Token": other.csrf()})[0] == 403
    refused = [e for e in events(db) if e[0] == "kill_switch"]
    assert [(e[1], e[2]) for e in refused] == [(0, 403), (0, 403), (0, 403), (0, 403), (1, 200), (0, 403)]
    assert [e[3] for e in refused][:4] == ["missing or wrong CSRF token", "missing or wrong CSRF token",
                                          "cross-origin request refused (Origin https://evil.example)",
                                          "cross-origin request refused (Sec-Fetch-Site: cross-site)"]


def test_a_review_needs_the_admin_session_and_csrf_and_is_audited(exposed):
    srv, db = exposed
    c = Client(srv)
    decision = json.loads(c.request("GET", "/dashboard/decisions?format=json",
                                    headers={"Authorization": f"Bearer {READER}"})[2])["decisions"][0]["decision_id"]
    c.login(ADMIN)
    body = {"decision_id": decision, "label": "escalate"}
    assert c.request("POST", "/dashboard/review", body, headers={"Origin": c.origin})[0] == 403
    status, _, text = c.request("POST", "/dashboard/review", body, headers={"Origin": c.origin, "X-CSRF-Token": c.csrf()})
    assert status == 200 and json.loads(text)["review_label"] == "escalate"
    assert [e[:3] for e in events(db) if e[0] == "review"] == [("review", 0, 403), ("review", 1, 200)]


def test_a_bearer_token_from_another_origin_is_refused_too(exposed):
    srv, db = exposed
    c = Client(srv)
    h = {"Authorization": f"Bearer {ADMIN}", "Origin": "http://attacker.example:8787"}
    assert c.request("POST", "/admin/kill-switch", {"on": True}, headers=h)[0] == 403
    assert c.request("POST", "/admin/kill-switch", {"on": True}, headers={"Authorization": f"Bearer {ADMIN}"})[0] == 200
    assert [e[:3] for e in events(db)] == [("kill_switch", 0, 403), ("kill_switch", 1, 200)]


def test_forged_and_expired_session_cookies_prove_nothing(exposed):
    srv, _ = exposed
    c = Client(srv)
    c.login(ADMIN)
    role, expires, nonce, mac = c.cookie.split("=", 1)[1].split(".")
    forged = {"Cookie": f"smallfirst_session=admin.{int(expires) + 999}.{nonce}.{mac}"}
    assert c.request("GET", "/dashboard/api/summary", headers=forged)[0] == 401
    expired = {"Cookie": f"smallfirst_session=read.1.{nonce}.{mac}"}
    assert c.request("GET", "/dashboard/api/summary", headers=expired)[0] == 401
    assert c.request("GET", "/dashboard/api/summary")[0] == 200  # the real one


def test_login_never_redirects_off_the_dashboard(exposed):
    srv, _ = exposed
    c = Client(srv)
    for target in ("https://evil.example/", "//evil.example", "/admin/kill-switch"):
        status, headers, _ = c.request("POST", "/dashboard/login", form={"token": ADMIN, "next": target})
        assert status == 303 and headers["location"] == "/dashboard"


def test_beyond_loopback_without_any_token_the_dashboard_is_not_served(anthropic_frontier, tmp_path):  # noqa: F811
    with ServerThread(server_policy(anthropic_frontier), audit=AuditLog.sqlite(tmp_path / "a.db"),
                      backends=stub_backends(), admin_token=None, exposed=True) as srv:
        c = Client(srv)
        for path in ("/dashboard", "/dashboard/api/summary", "/dashboard/login"):
            status, _, text = c.request("GET", path)
            assert status == 403 and "the dashboard is off" in text
        assert c.login("anything-at-all-000")[0] == 401


def test_on_loopback_reads_stay_open_unless_a_read_token_is_set(anthropic_frontier, tmp_path):  # noqa: F811
    with ServerThread(server_policy(anthropic_frontier), audit=AuditLog.sqlite(tmp_path / "a.db"),
                      backends=stub_backends(), admin_token=ADMIN) as srv:
        c = Client(srv)
        assert c.request("GET", "/dashboard/api/summary")[0] == 200
        assert c.request("GET", "/dashboard/api/summary", headers={"Host": f"localhost:{srv.port}"})[0] == 200
        # a page on another name that resolves here (DNS rebinding) reads nothing
        assert c.request("GET", "/dashboard/api/summary", headers={"Host": "attacker.example"})[0] == 401
    with ServerThread(server_policy(anthropic_frontier), audit=AuditLog.sqlite(tmp_path / "b.db"),
                      backends=stub_backends(), admin_token=ADMIN, read_token=READER) as srv:
        assert Client(srv).request("GET", "/dashboard/api/summary")[0] == 401


def test_a_fresh_audit_store_shows_an_empty_dashboard_not_an_error(anthropic_frontier, tmp_path):  # noqa: F811
    db = tmp_path / "new.db"
    with ServerThread(server_policy(anthropic_frontier), audit=AuditLog.sqlite(db), backends=stub_backends(),
                      admin_token=ADMIN) as srv:
        c = Client(srv)
        # the store is created (migrated) when the service opens it, and holds no decision yet
        status, _, page = c.request("GET", "/dashboard")
        assert status == 200 and "no decisions in this window" in page
        status, _, body = c.request("GET", "/dashboard/api/summary?window=all")
        summary = json.loads(body)
        assert status == 200 and summary["total"]["decisions"] == 0 and summary["routes"] == {}
        assert json.loads(c.request("GET", "/dashboard/decisions?format=json")[2]) == {"decisions": []}
        # a refused admin call writes admin_events only: still an empty dashboard
        assert c.request("POST", "/admin/kill-switch", {"on": True})[0] == 401
        assert db.exists() and c.request("GET", "/dashboard/api/summary")[0] == 200
        status, _, text = c.request("POST", "/dashboard/review", {"decision_id": "nope", "label": "accept"},
                                    headers={"Authorization": f"Bearer {ADMIN}"})
        assert status == 404 and "no decision" in text


def test_the_standalone_dashboard_refuses_to_listen_beyond_loopback_without_a_token(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SMALLFIRST_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("SMALLFIRST_READ_TOKEN", raising=False)
    assert main(["dashboard", "--audit", str(tmp_path / "a.db"), "--host", "0.0.0.0"]) == 2
    assert "refusing to serve the dashboard on 0.0.0.0" in capsys.readouterr().err


def test_loopback_means_127_0_0_0_slash_8_localhost_and_colon_colon_1_only():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "10.0.0.5", "example.com", "192.168.1.10"))
    assert Access(None, None, exposed=True).dashboard_served is False
    assert Access("a", None, exposed=True).dashboard_served is True
