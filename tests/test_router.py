"""The pipeline, driven with in-process backends that implement the LocalBackend protocol.

(The real bundled models are exercised in test_embedding.py, test_llamacpp.py and test_cli.py;
the frontier at the wire in test_router_frontier.py.)
"""

from __future__ import annotations

import asyncio

import pytest

from smallfirst.audit import AuditLog, read_recent
from smallfirst.policy import parse_policy
from smallfirst.reasons import FallbackReason
from smallfirst.router import NO_FRONTIER, InputRejected, Router
from smallfirst.tasks import LocalOutput, Task

from conftest import MINIMAL_POLICY

REGISTRY_403 = """\
npm ERR! code E403
npm ERR! 403 403 Forbidden - GET https://<registry-host>/@acme%2fui-kit - You do not have permission to access this package
npm ERR! 403 In most cases, you or one of your dependencies are requesting
npm ERR! 403 a package version that is forbidden by your security policy, or
npm ERR! 403 on a server you do not have access to.
"""
ROUTINE = "[ERROR] COMPILATION ERROR :\n[ERROR] /src/main/java/App.java:[10,5] cannot find symbol\n[INFO] BUILD FAILURE\n"


class StubLocal:
    """A local backend that answers instantly with a fixed output (or fails, or hangs)."""

    name, sha256 = "stub-model", "0" * 64

    def __init__(self, label="dependency", confidence=0.97, answer=None, fail=None, delay=0.0, novel=False):
        self.label, self.confidence, self.answer, self.fail, self.delay, self.novel = label, confidence, answer, fail, delay, novel
        self.calls = 0

    async def complete(self, text, spec):
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        answer = self.answer if self.answer is not None else self.label
        return LocalOutput(answer=answer, model=self.name, label=self.label if spec.labels else None,
                           confidence=self.confidence, confidence_raw=self.confidence, model_sha256=self.sha256,
                           novel=self.novel)


def make_router(policy_text=MINIMAL_POLICY, audit=None, **local):
    policy = parse_policy(policy_text)
    stub = StubLocal(**local)
    return Router(policy, audit=audit, backends={"local_classifier": stub, "local_default": stub}), stub


def test_confident_routine_answer_stays_local():
    router, _ = make_router(label="build", confidence=0.95)
    r = router.route(Task(ROUTINE, "classify_issue"))
    assert (r.route, r.reason, r.label, r.answer, r.outcome) == ("local", None, "build", "build", "answered_local")
    assert r.model == "stub-model"


def test_registry_403_labelled_dependency_with_high_confidence_escalates_as_hard_stop_access():
    # The published failure: a package install that failed on a registry 403 looks like a routine
    # dependency problem to a small model. It is an access problem and must leave the local path.
    router, stub = make_router(label="dependency", confidence=0.99)
    r = router.route(Task(REGISTRY_403, "classify_issue"))
    assert r.route == "frontier"
    assert r.reason is FallbackReason.HARD_STOP_ACCESS
    assert r.hard_stop is not None and r.hard_stop.category == "access"
    assert stub.calls == 0  # decided before any model ran


def test_low_confidence_escalates_with_the_local_answer_in_the_packet():
    router, _ = make_router(label="test", confidence=0.5)
    r = router.route(Task(ROUTINE, "classify_issue"))
    assert r.reason is FallbackReason.CONFIDENCE_LOW and r.route == "frontier"
    assert r.answer == NO_FRONTIER and r.outcome == "no_frontier"
    packet = r.packet.to_dict()
    assert packet["reason"] == "confidence_low" and packet["local_label"] == "test"


def test_escalate_label_is_label_escalates():
    router, _ = make_router(label="unknown", confidence=0.99)
    assert router.route(Task(ROUTINE, "classify_issue")).reason is FallbackReason.LABEL_ESCALATES


def test_unknown_task_type_escalates_as_unknown_task():
    router, stub = make_router()
    r = router.route(Task(ROUTINE, "translate_haiku"))
    assert r.reason is FallbackReason.UNKNOWN_TASK and stub.calls == 0


def test_frontier_only_task_never_calls_the_local_model():
    router, stub = make_router()
    r = router.route(Task("def f(): pass", "propose_code_change"))
    assert r.reason is FallbackReason.POLICY_REQUIRES_FRONTIER and stub.calls == 0


def test_input_over_max_input_chars_escalates_as_input_too_large():
    router, stub = make_router()
    r = router.route(Task("x" * 6001, "classify_issue"))
    assert r.reason is FallbackReason.INPUT_TOO_LARGE and stub.calls == 0
    assert len(r.packet.input_excerpt) < 6001


def test_kill_switch_sends_everything_to_the_frontier_as_manual_override():
    router, stub = make_router(MINIMAL_POLICY.replace("kill_switch: false", "kill_switch: true"))
    r = router.route(Task(ROUTINE, "classify_issue"))
    assert r.reason is FallbackReason.MANUAL_OVERRIDE and stub.calls == 0


def test_group_outside_local_groups_is_manual_override():
    router, stub = make_router(MINIMAL_POLICY.replace("local_groups: ['*']", "local_groups: ['canary']"))
    assert router.route(Task(ROUTINE, "classify_issue", user_group="everyone")).reason is FallbackReason.MANUAL_OVERRIDE
    assert router.route(Task(ROUTINE, "classify_issue", user_group="canary")).route == "local"


def test_local_model_that_raises_escalates_with_local_error():
    router, _ = make_router(fail=RuntimeError("llama.cpp aborted"))
    r = router.route(Task(ROUTINE, "classify_issue"))
    assert r.reason is FallbackReason.LOCAL_ERROR and "llama.cpp aborted" in r.error


def test_local_model_that_hangs_escalates_with_local_error_after_its_timeout():
    text = MINIMAL_POLICY.replace("local_classifier: {provider: embedding}", "local_classifier: {provider: embedding, timeout_s: 0.05}")
    router, _ = make_router(text, delay=5.0)
    r = router.route(Task(ROUTINE, "classify_issue"))
    assert r.reason is FallbackReason.LOCAL_ERROR and "timed out" in r.error


def test_novel_input_flagged_by_the_model_is_hard_stop_novel():
    router, _ = make_router(label="build", confidence=0.99, novel=True)
    assert router.route(Task(ROUTINE, "classify_issue")).reason is FallbackReason.HARD_STOP_NOVEL


def test_shadow_mode_records_what_would_have_happened_and_answers_from_the_frontier(tmp_path):
    audit = AuditLog.sqlite(tmp_path / "a.db")
    router, _ = make_router(MINIMAL_POLICY.replace("mode: live", "mode: shadow"), audit=audit, label="build", confidence=0.95)
    r = router.route(Task(ROUTINE, "classify_issue"))
    router.close(); audit.close()
    assert r.route == "frontier" and r.route_candidate == "local" and r.mode == "shadow"
    rec = read_recent(tmp_path / "a.db")[0]
    assert rec["mode"] == "shadow" and rec["route_candidate"] == "local" and rec["route"] == "frontier"


def test_empty_input_is_rejected_with_a_message_and_audited(tmp_path):
    audit = AuditLog.sqlite(tmp_path / "a.db")
    router, _ = make_router(audit=audit)
    with pytest.raises(InputRejected, match="empty") as e:
        router.route(Task("  \n", "classify_issue"))
    router.close(); audit.close()
    assert e.value.result.route == "rejected"
    assert read_recent(tmp_path / "a.db")[0]["outcome"] == "rejected"


def test_binary_input_is_rejected_with_a_message():
    router, _ = make_router()
    with pytest.raises(InputRejected, match="binary"):
        router.route(Task(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00", "classify_issue"))


def test_log_with_a_few_invalid_utf8_bytes_is_still_routed():
    router, _ = make_router(label="build", confidence=0.95)
    r = router.route(Task(ROUTINE.encode() + b"\xff\xfe garbled \xc3\x28\n", "classify_issue"))
    assert r.route == "local"


def test_mostly_undecodable_bytes_are_rejected():
    router, _ = make_router()
    with pytest.raises(InputRejected, match="not UTF-8"):
        router.route(Task(bytes(range(128, 256)) * 10, "classify_issue"))


def test_every_decision_is_audited_exactly_once_with_the_contract_fields(tmp_path):
    audit = AuditLog.sqlite(tmp_path / "a.db")
    router, _ = make_router(audit=audit, label="build", confidence=0.95)
    ids = {router.route(Task(t, k, task_id=f"t{i}")).decision_id
           for i, (t, k) in enumerate([(ROUTINE, "classify_issue"), (REGISTRY_403, "classify_issue"), ("x", "nope")])}
    router.close(); audit.close()
    rows = read_recent(tmp_path / "a.db", limit=10)
    assert {r["decision_id"] for r in rows} == ids
    local = next(r for r in rows if r["route"] == "local")
    for key in ("decision_id", "ts", "task_id", "task_type", "mode", "route", "route_candidate", "reason", "hard_stop",
                "local_model", "local_model_sha256", "frontier_model", "confidence_raw", "confidence_calibrated", "checks",
                "latency_ms", "tokens", "cost_usd", "input_sha256", "preview", "answer_sha256",
                "frontier_answer_sha256", "user_group", "policy_version", "review_label", "outcome"):
        assert key in local
    assert local["local_model_sha256"] == "0" * 64 and local["answer_sha256"]
    assert set(local["latency_ms"]) == {"total", "local", "frontier"}
    hs = next(r for r in rows if r["reason"] == "hard_stop_access")
    assert hs["hard_stop"]["category"] == "access"


def test_a_thousand_decisions_in_a_row_agree():
    # Correctness only: a thousand decisions through the whole pipeline complete and agree.
    router, _ = make_router(label="build", confidence=0.95)
    routes = {router.route(Task(ROUTINE, "classify_issue")).route for _ in range(1000)}
    assert routes == {"local"}
