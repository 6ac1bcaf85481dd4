"""The learning loop end to end, through the real service on the real embedding model (slow).

A head trained on Maven failures meets pytest failures it has never seen: novel, so they
escalate; the frontier (faked at the wire, OpenAI protocol) answers each with its label; the
service keeps the answers, runs `smallfirst learn` in the background every few of them, the
candidate passes the release gate and is promoted (`learn: {promote: gate}`), and the same kind of
input is then answered locally and no longer novel.
"""

from __future__ import annotations

import random
import time

import pytest

from fakes import FakeOpenAI, Reply
from smallfirst.audit import AuditLog
from smallfirst.learn_store import LearnLog, LearnStore, learn_store_target
from smallfirst.policy import load_policy
from smallfirst.server.admin import read_admin_events
from smallfirst.train import train_head
from test_server import KEY, KEY_ENV, ServerThread, openai_client, user
from test_train import UPPER, _synthetic_rows, _write_jsonl

POLICY = """\
version: 1
models:
  clf: {{provider: embedding}}
  frontier_default: {{provider: openai_compat, name: gpt-frontier, base_url: '{url}', api_key_env: {key_env}, retries: 0, timeout_s: 10}}
tasks:
  triage:
    description: Why did the CI build fail?
    model: clf
    labels: [build, test, dependency, unknown]
    escalate_labels: [unknown]
    min_confidence: 0.7
    head: heads/triage.json
    learn: {{every: 70, promote: gate, min_examples: 10, max_false_accept: 0.1}}
"""


def pytest_failure(rng: random.Random) -> str:
    """A Python project's failing test run: a kind of log the Maven-trained head never saw."""
    mod, fn = rng.choice(["orders", "billing", "auth", "cache", "search"]), rng.choice(["total", "refund", "expiry", "merge"])
    a, b = rng.randint(1, 99), rng.randint(100, 999)
    return (f"============================= test session starts ==============================\n"
            f"collected {rng.randint(20, 400)} items\n\ntests/test_{mod}.py ..F..\n\n"
            f"=================================== FAILURES ===================================\n"
            f"_____________________________ test_{fn}_{mod} _____________________________\n"
            f"    def test_{fn}_{mod}():\n>       assert compute_{fn}({a}) == {b}\nE       assert {a * 3} == {b}\n\n"
            f"tests/test_{mod}.py:{rng.randint(10, 300)}: AssertionError\n"
            f"=========================== short test summary info ============================\n"
            f"FAILED tests/test_{mod}.py::test_{fn}_{mod} - assert {a * 3} == {b}\n"
            f"========================= 1 failed, {rng.randint(5, 300)} passed in {rng.random() * 9:.2f}s =========================\n")


@pytest.fixture
def one_blas_thread():
    """As `smallfirst serve` runs (cmd_serve): on a busy machine several BLAS threads per model
    call thrash, and a request can take longer than the local model's timeout."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_escalations_teach_the_service_a_new_kind_of_failure(store, request, tmp_path, monkeypatch, one_blas_thread):
    monkeypatch.setenv(KEY_ENV, KEY)
    # The audit store, and the learn store beside it: a SQLite file of its own, or the learn_
    # tables of the same PostgreSQL database (the learn run, a child process, finds both).
    audit_target = str(tmp_path / "audit.db") if store == "sqlite" else request.getfixturevalue("pg_url")
    learn_target = learn_store_target(audit_target)
    data = _write_jsonl(tmp_path / "maven.jsonl", _synthetic_rows(per_label=20))
    with FakeOpenAI.start_in_thread(api_key=KEY) as frontier:
        policy_path = tmp_path / "policy.yaml"
        policy_path.write_text(POLICY.format(url=frontier.base_url, key_env=KEY_ENV), encoding="utf-8")
        policy_text = policy_path.read_text().replace("    head: heads/triage.json\n", "")
        from smallfirst.policy import parse_policy

        train_head(parse_policy(policy_text).tasks["triage"], data, tmp_path / "heads" / "triage.json",
                   label_map=UPPER, command="pytest")
        policy = load_policy(policy_path)
        audit = AuditLog.open(audit_target, spill_path=tmp_path / "audit.spill.jsonl")
        learn = LearnLog.open(learn_target, spill_path=tmp_path / "learn.spill.jsonl")
        rng = random.Random(7)
        frontier.reply_fn = lambda body: Reply("test")  # the frontier's answer: the case's gold label
        with ServerThread(policy, audit=audit, learn=learn, policy_path=policy_path) as srv:
            client = openai_client(srv)

            def ask(text: str) -> dict[str, str]:
                raw = client.chat.completions.with_raw_response.create(model="smallfirst/triage", messages=user(text))
                return {**raw.headers, "answer": raw.parse().choices[0].message.content}

            # 70: the newest 14 are held back, and the candidate's own threshold for this kind needs
            # about 48 out-of-fold answers (one mistake tolerated at 95% Clopper-Pearson, <= 0.1).
            first = [ask(pytest_failure(rng)) for _ in range(70)]
            assert {h["x-smallfirst-reason"] for h in first} == {"hard_stop_novel"}
            assert {h["answer"] for h in first} == {"test"}  # the frontier answered each
            assert learn.flush(timeout=60)
            assert srv.service.learning.wait(timeout=600)
            deadline = time.monotonic() + 30
            while srv.service.router.policy.tasks["triage"].head == "heads/triage.json" and time.monotonic() < deadline:
                time.sleep(0.1)  # the service loads the promoted head for the next request
            spec = srv.service.router.policy.tasks["triage"]
            runs = LearnStore(learn_target).runs("triage")
            assert spec.head != "heads/triage.json" and spec.previous_head == "heads/triage.json", [(r["message"], r["detail"].get("head_min_confidence"), r["detail"].get("held_back_report"), r["detail"].get("base_out_of_fold_report")) for r in runs]
            later = [ask(pytest_failure(rng)) for _ in range(10)]
            metrics = srv.get("/metrics")[2]
        assert [h["x-smallfirst-route"] for h in later] == ["local"] * 10, [h["x-smallfirst-reason"] for h in later]
        assert {h["answer"] for h in later} == {"test"}
        assert 'smallfirst_learn_runs_total{outcome="promoted",task_type="triage"}' in metrics
        assert 'smallfirst_learn_examples_total{state="kept",task_type="triage"}' in metrics
    run = LearnStore(learn_target).runs("triage")[-1]
    assert run["outcome"] == "promoted" and run["detail"]["held_back_report"]["n"] >= 3
    assert any(e["action"] == "learn" and e["detail"]["outcome"] == "promoted" for e in read_admin_events(audit_target))


def test_a_tampered_candidate_head_is_refused_on_reload_and_the_current_policy_keeps_serving(tmp_path, monkeypatch):
    import numpy as np

    from smallfirst.backends.minilm import MINILM_SHA256
    from smallfirst.heads import write_head
    from smallfirst.train import fit_head
    from test_server import stub_backends

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 384))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    fit = fit_head(x, np.repeat([0, 1, 2], 10), ["build", "test", "dependency"], task="triage",
                   embedding_sha256=MINILM_SHA256, folds=3)
    for name in ("triage.json", "learned.json"):
        write_head(fit.head, tmp_path / "heads" / name)
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(url="http://127.0.0.1:9/v1", key_env="SMALLFIRST_TEST_NO_SUCH_KEY"), encoding="utf-8")
    token = "admin-token-0123456789"
    with ServerThread(load_policy(path), backends={"clf": stub_backends()["local_classifier"]}, admin_token=token,
                      policy_path=path) as srv:
        before = srv.service.router.policy.version_tag
        learned = tmp_path / "heads" / "learned.json"
        learned.write_text(learned.read_text().replace('"intercept": [', '"intercept": [0.25, '), encoding="utf-8")
        path.write_text(path.read_text().replace("    head: heads/triage.json\n",
                                                 "    head: heads/triage.json\n    candidate: clf\n"
                                                 "    candidate_head: heads/learned.json\n"), encoding="utf-8")
        status, _, body = srv.post("/admin/policy/reload", {}, {"Authorization": f"Bearer {token}"})
        assert status == 422 and "candidate_head" in body["error"] and "content hash mismatch" in body["error"]
        assert srv.service.router.policy.version_tag == before
        raw = openai_client(srv).chat.completions.with_raw_response.create(model="smallfirst/triage",
                                                                           messages=user("[ERROR] cannot find symbol"))
        assert raw.headers["x-smallfirst-route"] == "local"
