"""The hard-stop corpus (tests/data/hard_stops.jsonl, from make_hard_stops.py) through the real
Router, with a local model that answers every case confidently with a routine label: the worst
case, so only the hard stops stand between a must-escalate input and a local answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smallfirst.evals import build_report, check_kill_switch, read_cases, run_eval
from smallfirst.policy import load_policy
from smallfirst.router import Router

from test_router import StubLocal

CORPUS = Path(__file__).parent / "data" / "hard_stops.jsonl"

# Known recall gaps, by the text that identifies their template; reported to the lead. The strict
# xfail below turns green the day the rules cover them, so this list must then shrink. Empty since
# a token split across two lines by a log wrapper is found (hardstops._wrapped_secret).
KNOWN_MISSES: tuple[str, ...] = ()
KNOWN_FALSE_STOPS: tuple[str, ...] = ()


def _known(text: str, markers: tuple[str, ...]) -> bool:
    return any(m in text for m in markers)


@pytest.fixture(scope="module")
def corpus_results():
    policy = load_policy()
    router = Router(policy, backends={"local_classifier": StubLocal(label="build", confidence=0.999)})
    cases = read_cases(CORPUS, policy.tasks["classify_issue"].labels)
    try:
        yield policy, run_eval(router, "classify_issue", cases)
    finally:
        router.close()


def test_corpus_has_300_must_escalate_cases_and_as_many_lookalikes():
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    must = [r for r in rows if r["must_escalate"]]
    assert len(must) >= 300 and len(rows) - len(must) >= len(must)
    assert {r["hard_stop"] for r in must} == {"security", "access", "production", "novel"}
    assert any(r["kind"] == "adversarial" for r in rows)


def test_every_must_escalate_case_is_hard_stopped_with_its_category_despite_a_confident_local_answer(corpus_results):
    from scipy.stats import beta

    _, results = corpus_results
    must = [r for r in results if r.case.must_escalate]
    wrong = [
        (r.case.id, r.route, r.hard_stop)
        for r in must
        if not _known(r.case.text, KNOWN_MISSES) and (r.accepted or r.hard_stop != r.case.hard_stop)
    ]
    assert wrong == []
    tested = [r for r in must if not _known(r.case.text, KNOWN_MISSES)]
    # 0 false accepts in n cases: the one-sided 95% Clopper-Pearson upper bound on the true rate.
    bound = float(beta.ppf(0.95, 1, len(tested)))
    print(f"\nhard-stop corpus: 0 false accepts in {len(tested)} cases; 95% upper bound {bound:.4f}")
    assert bound < 0.0125


@pytest.mark.xfail(strict=True, reason="known recall gaps in the hard-stop rules, reported to the lead")
def test_known_recall_gaps_are_hard_stopped(corpus_results):
    if not KNOWN_MISSES:
        pytest.skip("no known recall gaps")
    _, results = corpus_results
    assert all(r.hard_stop == r.case.hard_stop for r in results if r.case.must_escalate and _known(r.case.text, KNOWN_MISSES))


def test_routine_lookalikes_stay_local_eligible(corpus_results):
    _, results = corpus_results
    stopped = [(r.case.id, r.hard_stop) for r in results
               if not r.case.must_escalate and r.hard_stop and not _known(r.case.text, KNOWN_FALSE_STOPS)]
    assert stopped == []


def test_corpus_eval_reports_no_hard_stop_false_accepts_outside_the_known_gaps(corpus_results):
    policy, results = corpus_results
    clean = [r for r in results if not _known(r.case.text, KNOWN_MISSES + KNOWN_FALSE_STOPS)]
    report = build_report(clean, policy.tasks["classify_issue"], check_kill_switch(policy, "classify_issue", "x"))
    assert report["hard_stop_false_accepts"] == []
    assert report["gate"]["checks"][2]["passed"] is True
