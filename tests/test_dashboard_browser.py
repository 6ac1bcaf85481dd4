"""The dashboard in a real browser: Debian's chromium, headless, driven by selenium.

The service runs on 127.0.0.1 with the bundled policy and the real bundled embedding model, its
frontier faked at the wire; 200 real BUMP CI logs are routed through it first. Screenshots go to
test-artifacts/. CI installs chromium (scripts/test.sh), so a missing browser fails, never skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from itertools import islice
from pathlib import Path

import pytest

from smallfirst.audit import AuditLog
from smallfirst.server.admin import read_admin_events
from smallfirst.policy import DEFAULT_POLICY_PATH, parse_policy
from smallfirst.server.dashboard_routes import fmt_ms, fmt_rate, fmt_usd
from test_dashboard import metric_counts_by_route
from test_router import ROUTINE
from test_server import KEY_ENV, ServerThread, anthropic_frontier, openai_client, user  # noqa: F401

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
from conftest import SHARED_DATA  # noqa: E402

BUMP = SHARED_DATA / "bump" / "bump_failures.jsonl"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TOKEN = "admin-token-0123456789"
CASES = 200


def bundled_policy_with_fake_frontier(frontier) -> object:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^  frontier_default:.*$",
                  f"  frontier_default: {{provider: anthropic, name: claude-sonnet-4-6, base_url: '{frontier.base_url}', "
                  f"api_key_env: {KEY_ENV}, retries: 0, timeout_s: 10}}", text)
    return parse_policy(text, source=str(DEFAULT_POLICY_PATH))


def browser(tmp_path):
    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), f"{path} is missing: apt-get install chromium chromium-driver (scripts/test.sh does)"
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never try to download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1300,1800"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=opts)


def cell(driver, metric: str, task: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'td[data-metric="{metric}"][data-task="{task}"]').text


def shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


@pytest.mark.slow
def test_dashboard_in_chromium_shows_the_api_numbers_logs_in_toggles_the_kill_switch_and_stores_a_review(
        anthropic_frontier, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    audit = AuditLog.sqlite(tmp_path / "audit.db")
    srv = ServerThread(bundled_policy_with_fake_frontier(anthropic_frontier), audit=audit, admin_token=TOKEN)
    driver = browser(tmp_path)
    try:
        client = openai_client(srv)
        with BUMP.open(encoding="utf-8") as f:
            for i, line in enumerate(islice(f, CASES)):
                client.chat.completions.create(model="smallfirst/classify_issue", messages=user(json.loads(line)["text"]),
                                               extra_headers={"x-smallfirst-user-group": ("default", "beta")[i % 2]})
        summary = srv.get("/dashboard/api/summary?window=all")[2]
        assert summary["total"]["decisions"] == CASES
        assert summary["routes"] == metric_counts_by_route(srv.get("/metrics")[2])

        driver.get(srv.base_url + "/dashboard?window=all")
        for m in [*summary["tasks"], summary["total"]]:
            t = m["task_type"]
            assert cell(driver, "decisions", t) == str(m["decisions"])
            assert cell(driver, "acceptance_rate", t) == fmt_rate(m["acceptance_rate"])
            assert cell(driver, "escalation_rate", t) == fmt_rate(m["escalation_rate"])
            assert cell(driver, "reasons", t) == (", ".join(f"{k} {v}" for k, v in m["reasons"].items()) or "none")
            assert cell(driver, "defect_rate", t) == "no reviews yet"
            assert cell(driver, "frontier_latency", t) == f"{fmt_ms(m['frontier_p50_ms'])} / {fmt_ms(m['frontier_p95_ms'])}"
            assert cell(driver, "cost_per_success", t) == (
                f"{fmt_usd(m['cost_per_success_usd'])} vs {fmt_usd(m['frontier_only_cost_per_success_usd'])}")
        for route, n in summary["routes"].items():
            assert driver.find_element(By.CSS_SELECTOR, f'[data-route="{route}"]').text == f"{route} {n}"
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg[role=img]")) == 4
        shot(driver, "dashboard-all.png")

        # Reads are open on loopback; changes need a login with the admin token first.
        assert driver.find_elements(By.ID, "ks-toggle") == []
        assert all(not b.is_enabled() for b in driver.find_elements(By.CSS_SELECTOR, "button.review"))
        driver.find_element(By.ID, "login-link").click()
        driver.find_element(By.ID, "token").send_keys("not-the-token-000000")
        driver.find_element(By.ID, "login-submit").click()
        WebDriverWait(driver, 10).until(
            EC.text_to_be_present_in_element((By.CSS_SELECTOR, "[role=alert]"), "not the admin or the read token"))
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        shot(driver, "dashboard-login.png")
        driver.find_element(By.ID, "login-submit").click()
        WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".who"), "signed in (admin)"))
        assert all(c["httpOnly"] and c["sameSite"] == "Strict" for c in driver.get_cookies())
        driver.get(srv.base_url + "/dashboard?window=all")

        # The kill switch: the page sends the session's CSRF token with the cookie.
        driver.find_element(By.ID, "ks-reason").send_keys("browser test")
        driver.find_element(By.ID, "ks-toggle").click()
        WebDriverWait(driver, 10).until(
            EC.text_to_be_present_in_element((By.ID, "switch-state"), "KILL SWITCH ON"))
        raw = client.chat.completions.with_raw_response.create(model="smallfirst/classify_issue", messages=user(ROUTINE))
        assert (raw.headers["x-smallfirst-route"], raw.headers["x-smallfirst-reason"]) == ("frontier", "manual_override")
        shot(driver, "dashboard-kill-switch-on.png")

        # A review from the queue lands in the store and in the defect rate.
        button = driver.find_element(By.CSS_SELECTOR, 'button.review[data-label="escalate"]')
        decision = button.get_attribute("data-decision")
        button.click()
        row = f'tr[data-decision="{decision}"] .review-state'
        WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, row), "stored: escalate"))
        shot(driver, "dashboard-review.png")
        stored = srv.get(f"/dashboard/decisions?format=json&limit=500")[2]["decisions"]
        assert [d["review_label"] for d in stored if d["decision_id"] == decision] == ["escalate"]
        driver.get(srv.base_url + "/dashboard?window=all")
        assert cell(driver, "defect_rate", "*").startswith("100.0% of 1")

        driver.get(srv.base_url + "/dashboard/decisions?route=frontier&window=all")
        assert "manual_override" in driver.page_source
        shot(driver, "decisions-frontier.png")
        events = read_admin_events(tmp_path / "audit.db")
        assert [(e["action"], e["allowed"]) for e in reversed(events)] == [
            ("login", 0), ("login", 1), ("kill_switch", 1), ("review", 1)]
    finally:
        driver.quit()
        srv.stop()
