"""`smallfirst learn`: a candidate head from kept examples, proven on a held-back slice, handed over.

These tests work on embeddings directly (clusters on the unit sphere standing in for kinds of CI
log), which is all a learn run reads: the head, its training embeddings, the store. The policy file
and the store are real files; the end-to-end loop through the service on the real model is in
test_learn_service.py.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from smallfirst.audit import AuditLog, AuditRecord
from smallfirst.backends.embedding import embedding_identity, shared_encoder
from smallfirst.cli import main
from smallfirst.heads import DEFAULT_WINDOW, load_head, write_head
from smallfirst.learn import LearnError, run_learn
from smallfirst.learn_store import LearnStore
from smallfirst.policy import load_policy
from smallfirst.review import set_review_label
from smallfirst.train import fit_head

ENCODER = shared_encoder().sha256  # what serves a head: the int8 graph's pin
IDENTITY = embedding_identity(ENCODER, DEFAULT_WINDOW)
LABELS = ["build", "test", "dependency", "unknown"]
POLICY = """\
version: 1
models:
  clf: {{provider: embedding}}
tasks:
  triage:
    description: Why did the build fail?
    model: clf
    labels: [build, test, dependency, unknown]
    escalate_labels: [unknown]
    min_confidence: 0.7
    head: heads/triage.json
    learn: {learn}
"""


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class Space:
    """Kinds of input as tight clusters of unit vectors: the three the base head knows, and new
    ones it has never seen (another ecosystem's failures)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.centres = unit(self.rng.normal(size=(6, 384)))

    def sample(self, kind: int, n: int) -> np.ndarray:
        return unit(self.centres[kind] + 0.6 * unit(self.rng.normal(size=(n, 384))) * 1.0 / np.sqrt(1.0)).astype(np.float32)


@pytest.fixture
def space():
    return Space()


@pytest.fixture
def setup(tmp_path, space):
    """A policy whose task has a base head trained on kinds 0, 1, 2 (build, test, dependency)."""

    def make(learn: str = "{min_examples: 10, promote: gate, max_false_accept: 0.1}", per_label: int = 40) -> tuple[Path, LearnStore]:
        x = np.vstack([space.sample(k, per_label) for k in range(3)])
        y = np.repeat(np.arange(3), per_label)
        fit = fit_head(x, y, LABELS[:3], task="triage", embedding_sha256=ENCODER, folds=5)
        write_head(fit.head, tmp_path / "heads" / "triage.json")
        policy = tmp_path / "policy.yaml"
        policy.write_text(POLICY.format(learn=learn), encoding="utf-8")
        return policy, LearnStore(tmp_path / "learn.db")

    return make


def keep(store: LearnStore, x: np.ndarray, labels: list[str], *, start: float | None = None,
         identity: str = IDENTITY, prefix: str = "d") -> list[str]:
    """Examples as the learn writer stores them, oldest first."""
    t0 = (time.time() - 3600) if start is None else start
    ids = [f"{prefix}{i:04d}" for i in range(len(x))]
    store.write([{"decision_id": i, "task_type": "triage", "ts": t0 + n, "expires": t0 + n + 90 * 86400,
                  "label": lbl, "source": "frontier", "reason": "hard_stop_novel", "input_sha256": "0" * 64,
                  "embedding_identity": identity, "embedding": v} for n, (i, v, lbl) in enumerate(zip(ids, x, labels))])
    return ids


def head_of(policy: Path, field: str = "head"):
    spec = load_policy(policy).tasks["triage"]
    return load_head(load_policy(policy).resolve_path(getattr(spec, field)))


def test_a_new_kind_of_input_is_novel_until_learned_then_local_and_not_novel(setup, space):
    policy, store = setup()
    before = head_of(policy)
    new = space.sample(3, 60)  # another ecosystem's test failures
    probe = space.sample(3, 20)  # more of them, seen by neither head
    assert (before.similarity(probe) < before.novelty.threshold).all()
    keep(store, new, ["test"] * 60)
    result = run_learn(policy, "triage", store)
    assert result.outcome == "promoted", result.message
    spec = load_policy(policy).tasks["triage"]
    assert spec.head == result.head and spec.previous_head == "heads/triage.json"
    after = head_of(policy)
    assert not (after.similarity(probe) < after.novelty.threshold).any()
    p = after.probabilities(probe)
    assert [after.labels[i] for i in p.argmax(axis=1)] == ["test"] * 20
    # Its own floor, from the learned examples' out-of-fold evidence, is what the gate holds it to.
    assert after.min_confidence is not None and result.report["head_min_confidence"]["upper_bound"] <= 0.1
    assert (after.calibrator.apply(p.max(axis=1)) >= max(0.7, after.min_confidence)).all()
    # What it knew before it still knows, held to the policy's threshold alone: the floor is for
    # inputs whose nearest training example is a learned one.
    old = space.sample(0, 20)
    assert [after.labels[i] for i in after.probabilities(old).argmax(axis=1)] == ["build"] * 20
    assert after.floors(old) == [None] * 20 and set(after.floors(probe)) == {after.min_confidence}
    assert result.report["trained_on"] == {"base": 120, "learned": 48} and result.report["held_back"] == 12
    assert result.report["held_back_report"]["local_rate"] == 1.0
    assert result.report["current_on_held_back"]["local_rate"] == 0.0  # all novel to the old head
    (run,) = store.runs("triage")
    assert run["outcome"] == "promoted" and run["head"] == result.head and run["detail"]["bound"]["upper_bound"] <= 0.05


def test_by_default_a_learned_head_becomes_the_candidate_and_the_head_keeps_serving(setup, space):
    policy, store = setup("{min_examples: 10, max_false_accept: 0.1}")
    keep(store, space.sample(3, 60), ["test"] * 60)
    result = run_learn(policy, "triage", store)
    assert result.outcome == "candidate", result.message
    spec = load_policy(policy).tasks["triage"]
    assert (spec.head, spec.candidate, spec.candidate_head) == ("heads/triage.json", "clf", result.head)
    report = json.loads(Path(result.report["report_file"]).read_text())
    assert report["head_sha256"] == head_of(policy, "candidate_head").content_sha256


def test_too_little_data_changes_nothing_and_says_so(setup, space, capsys):
    policy, store = setup("{min_examples: 30}")
    keep(store, space.sample(3, 12), ["test"] * 12)
    before = policy.read_text()
    assert main(["learn", "--task", "triage", "--policy", str(policy), "--learn-db", str(store.target)]) == 1
    out = capsys.readouterr().out
    assert "too little data: 12 usable kept examples" in out and "current head keeps serving" in out
    assert policy.read_text() == before
    assert store.runs("triage")[0]["outcome"] == "too_little_data"


def test_a_candidate_that_fails_the_gate_is_not_handed_over(setup, space):
    policy, store = setup()
    before = policy.read_text()
    # The frontier changed its mind about a new kind: test at first, dependency lately. A head
    # trained on the older answers is confidently wrong on the newest, held-back ones.
    keep(store, space.sample(3, 80), ["test"] * 64 + ["dependency"] * 16)
    result = run_learn(policy, "triage", store)
    assert result.outcome == "rejected", result.report.get("held_back_report")
    assert "the current head keeps serving" in result.message
    assert policy.read_text() == before
    written = sorted(p.name for p in (policy.parent / "heads").glob("triage.learned-*"))
    assert len(written) == 1 and written[0].endswith(".report.json")  # no head written, only why


def test_a_reviewers_label_overrides_the_frontiers(setup, space, tmp_path):
    policy, store = setup()
    ids = keep(store, space.sample(3, 60), ["build"] * 60)  # the frontier said build
    audit = AuditLog.sqlite(tmp_path / "audit.db")
    for i in ids:
        audit.submit(AuditRecord(decision_id=i, ts=time.time(), task_type="triage", mode="live", route="frontier",
                                 route_candidate="frontier", reason="hard_stop_novel", label="build"))
    audit.close()
    for i in ids:
        set_review_label(tmp_path / "audit.db", i, None, "ana", gold="test")  # reviewers say test
    result = run_learn(policy, "triage", store, audit_path=tmp_path / "audit.db")
    assert result.outcome == "promoted" and result.report["counts"]["reviewed"] == 60
    after = head_of(policy)
    assert {after.labels[i] for i in after.probabilities(space.sample(3, 10)).argmax(axis=1)} == {"test"}


@pytest.mark.postgres
def test_learn_on_postgresql_reads_reviews_keeps_its_runs_and_records_the_event_in_that_database(
        setup, space, tmp_path, pg_url, capsys, monkeypatch):
    from smallfirst.server.admin import read_admin_events

    policy, _ = setup()
    store = LearnStore(pg_url)  # the learn_ tables beside the decisions, as `--audit URL` finds them
    ids = keep(store, space.sample(3, 60), ["build"] * 60)  # the frontier said build
    audit = AuditLog.open(pg_url, spill_path=tmp_path / "spill.jsonl")
    for i in ids:
        audit.submit(AuditRecord(decision_id=i, ts=time.time(), task_type="triage", mode="live", route="frontier",
                                 route_candidate="frontier", reason="hard_stop_novel", label="build"))
    audit.close()
    for i in ids:
        assert set_review_label(pg_url, i, None, "ana", gold="test")  # reviewers say test
    # A password in the URL (the test server trusts 127.0.0.1 and ignores it) must not be kept
    # with the run's command line.
    password = "Xq7vR2mPz9LwT4kB"
    url = pg_url.replace("smallfirst@", f"smallfirst:{password}@", 1)
    argv = ["learn", "--task", "triage", "--policy", str(policy), "--audit", url, "--json"]
    monkeypatch.setattr(sys, "argv", ["smallfirst", *argv])  # the run keeps its command line
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["outcome"] == "promoted", result
    after = head_of(policy)
    assert {after.labels[i] for i in after.probabilities(space.sample(3, 10)).argmax(axis=1)} == {"test"}
    (run,) = store.runs("triage")
    assert run["id"] == result["run_id"] and run["detail"]["counts"]["reviewed"] == 60
    assert "--audit postgresql://smallfirst:" in run["detail"]["command"] and password not in json.dumps(run)
    assert [e["detail"]["outcome"] for e in read_admin_events(pg_url) if e["action"] == "learn"] == ["promoted"]
    assert main(["learn", "--task", "triage", "--policy", str(policy), "--audit", url, "--status"]) == 0
    out = capsys.readouterr().out
    assert "#1" in out and "promoted" in out and password not in out


def test_unlabelled_answers_and_vectors_from_another_encoder_are_not_learned(setup, space):
    policy, store = setup("{min_examples: 10}")
    keep(store, space.sample(3, 5), [None] * 5, prefix="invalid")
    keep(store, space.sample(3, 5), ["test"] * 5, identity="some-other-encoder/last", prefix="other")
    result = run_learn(policy, "triage", store)
    assert result.outcome == "too_little_data"
    assert result.report["counts"] == {"stored": 10, "invalid_label": 5, "other_encoder": 5, "usable": 0, "purged": 0}


def test_a_corrupt_head_stops_the_run_with_its_name_and_changes_nothing(setup, space, capsys):
    policy, store = setup()
    keep(store, space.sample(3, 40), ["test"] * 40)
    head = policy.parent / "heads" / "triage.json"
    head.write_text(head.read_text().replace('"intercept": [', '"intercept": [1.5, '), encoding="utf-8")
    before = policy.read_text()
    assert main(["learn", "--task", "triage", "--policy", str(policy), "--learn-db", str(store.target)]) == 2
    err = capsys.readouterr().err
    assert str(head) in err and "content hash mismatch" in err
    assert policy.read_text() == before and store.runs("triage")[0]["outcome"] == "failed"
    with pytest.raises(LearnError):
        run_learn(policy, "triage", store)


def test_examples_past_retention_are_purged_before_training(setup, space):
    policy, store = setup("{min_examples: 10, retention_days: 30}")
    keep(store, space.sample(3, 40), ["test"] * 40, start=time.time() - 60 * 86400)
    result = run_learn(policy, "triage", store)
    assert result.outcome == "too_little_data" and result.report["counts"]["purged"] == 40
    assert store.examples("triage") == []


def test_learn_refuses_the_bundled_policy(tmp_path):
    store = LearnStore(tmp_path / "learn.db")
    with pytest.raises(LearnError, match="copy it"):
        run_learn(None, "classify_issue", store)  # type: ignore[arg-type]


def test_the_gate_holds_an_answer_to_its_heads_own_threshold_when_that_is_higher():
    from smallfirst.gate import check_gate
    from smallfirst.policy import parse_policy
    from smallfirst.tasks import LocalOutput

    spec = parse_policy(POLICY.replace("    head: heads/triage.json\n", "").format(learn="{}")).tasks["triage"]
    out = LocalOutput("test", "m", label="test", confidence=0.85, extra={"min_confidence": 0.9})
    result = check_gate(spec, out, "log")
    assert result.reason is not None and result.reason.value == "confidence_low"
    assert result.checks[-1].detail == "0.850 < the head's min_confidence 0.9"
    lower = LocalOutput("test", "m", label="test", confidence=0.85, extra={"min_confidence": 0.5})
    assert check_gate(spec, lower, "log").ok  # the policy's 0.7 is the floor; 0.85 clears it


@pytest.mark.slow
def test_kept_text_is_re_embedded_when_the_encoder_changed(setup, space):
    from test_learn_service import pytest_failure

    policy, store = setup("{min_examples: 10, keep_inputs: true}")
    rng = random.Random(3)
    texts = [pytest_failure(rng) for _ in range(12)]
    keep(store, space.sample(3, 12), ["test"] * 12, identity="an-older-encoder/last")
    conn = sqlite3.connect(store.target)
    with conn:
        conn.executemany("UPDATE learn_examples SET text = ? WHERE decision_id = ?", [(t, f"d{i:04d}") for i, t in enumerate(texts)])
    conn.close()
    result = run_learn(policy, "triage", store)
    assert result.report["counts"]["usable"] == 12 and result.report["counts"]["re_embedded"] == 12
    assert result.report["trained_on"]["learned"] == 10


def test_one_confident_mistake_ends_the_search_only_without_tolerance():
    from smallfirst.calibration import choose_threshold

    conf = np.linspace(1.0, 0.5, 300)
    wrong = np.zeros(300, dtype=bool)
    wrong[3] = True  # one mistake among the most confident; 299 right answers below it
    strict = choose_threshold(conf, wrong, np.ones(300, bool), max_false_accept=0.05)
    tolerant = choose_threshold(conf, wrong, np.ones(300, bool), max_false_accept=0.05, tolerate=1)
    assert strict.threshold is None and strict.steps[0].accepted == 59
    assert tolerant.threshold == pytest.approx(0.5) and tolerant.steps[0].accepted == 93


def test_the_gate_holds_training_rows_to_their_hard_stops_and_kept_escalations_to_their_gold_label():
    """A generated training row labelled access whose 401 line its excerpt cut off is a wrong label
    if answered locally; a kept escalation whose gold label is access must escalate."""
    from smallfirst.learn import _cases

    spec = load_policy(None).tasks["classify_issue"]
    labels = list(spec.labels)
    args = (spec, labels, np.array([labels.index("dependency")] * 3), np.array([0.99] * 3), np.zeros(3, bool),
            ["access", "access", "dependency"], [None, "access", None], ["a", "b", "c"], [spec.min_confidence] * 3)
    base = _cases(*args, gold_must_escalate=False)
    assert [(r.accepted, r.case.escalates, r.false_accept) for r in base] == [
        (True, False, True), (False, True, False), (True, False, False)]
    kept = _cases(*args)
    assert [(r.accepted, r.case.escalates) for r in kept][0] == (True, True)  # a hard-stop false accept
