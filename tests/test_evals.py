"""`smallfirst eval`: the real Router and a real SQLite audit, a stub local model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smallfirst import cli
from smallfirst.evals import EvalDataError, build_report, check_kill_switch, format_html, read_cases, run_eval
from smallfirst.policy import parse_policy
from smallfirst.router import Router

from conftest import MINIMAL_POLICY
from test_router import REGISTRY_403, ROUTINE, StubLocal


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    p = tmp_path / "cases.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def _eval(tmp_path: Path, rows: list[dict], **stub):
    policy = parse_policy(MINIMAL_POLICY)
    spec = policy.tasks["classify_issue"]
    router = Router(policy, backends={"local_classifier": StubLocal(**stub)})
    results = run_eval(router, "classify_issue", read_cases(_write(tmp_path, rows), spec.labels))
    router.close()
    return build_report(results, spec, check_kill_switch(policy, "classify_issue", ROUTINE))


def test_wrong_label_answered_locally_is_a_false_accept_and_fails_the_gate(tmp_path):
    report = _eval(tmp_path, [{"id": "a", "text": ROUTINE, "label": "test"}], label="build", confidence=0.95)
    assert report["false_accepts"] == ["a"] and report["label_accuracy_accepted"] == 0.0
    assert report["gate"]["passed"] is False


def test_must_escalate_case_that_stays_local_is_a_hard_stop_false_accept(tmp_path):
    report = _eval(tmp_path, [{"id": "m", "text": ROUTINE, "must_escalate": True}], label="build", confidence=0.95)
    assert report["hard_stop_false_accepts"] == ["m"] and report["false_accepts"] == ["m"]
    assert next(c for c in report["gate"]["checks"] if c["name"] == "hard_stop_false_accepts")["passed"] is False


def test_right_label_escalated_for_low_confidence_is_a_false_reject(tmp_path):
    rows = [{"id": "r", "text": ROUTINE, "label": "build"}, {"id": "h", "text": REGISTRY_403, "hard_stop": "access"}]
    report = _eval(tmp_path, rows, label="build", confidence=0.5)
    assert report["false_rejects"] == ["r"] and report["false_accepts"] == []
    assert report["local_acceptance_rate"] == 0.0 and report["gate"]["passed"] is True


def test_report_has_the_published_keys_and_a_reliability_diagram(tmp_path):
    report = _eval(tmp_path, [{"id": str(i), "text": ROUTINE + str(i), "label": "build"} for i in range(4)], label="build")
    for key in ("n", "local_acceptance_rate", "label_accuracy_accepted", "json_validity", "false_accepts", "false_rejects",
                "hard_stop_false_accepts", "ece", "cost_per_success", "gate"):
        assert key in report
    assert set(report["cost_per_success"]) == {"router", "frontier_only"}
    assert report["cost_per_success"]["router"] < report["cost_per_success"]["frontier_only"]
    assert "<svg" in format_html(report)


def test_kill_switch_check_routes_a_real_case_with_manual_override():
    ok, detail = check_kill_switch(parse_policy(MINIMAL_POLICY), "classify_issue", ROUTINE)
    assert ok and "manual_override" in detail


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": \n', encoding="utf-8")
    with pytest.raises(EvalDataError, match=r"bad.jsonl:2: malformed JSON"):
        read_cases(p)


def test_unknown_label_after_mapping_names_file_and_line(tmp_path):
    p = _write(tmp_path, [{"id": "a", "text": "x", "label": "COMPILATION_FAILURE"}, {"id": "b", "text": "y", "label": "WAT"}])
    with pytest.raises(EvalDataError, match=r"cases.jsonl:2: label 'WAT'"):
        read_cases(p, ["build", "test"], {"COMPILATION_FAILURE": "build"})


def test_eval_command_exits_2_on_bad_input(tmp_path, capsys):
    p = tmp_path / "bad.jsonl"
    p.write_text("not json\n", encoding="utf-8")
    assert cli.main(["eval", "--task", "classify_issue", "--data", str(p)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_command_on_the_demo_logs_with_the_bundled_model_passes_the_gate(tmp_path):
    out = tmp_path / "r.json"
    demo = Path(cli.DEMO_LOGS)
    label_map = Path(cli.__file__).parent / "data" / "label_maps" / "bump.json"
    rc = cli.main(["eval", "--task", "classify_issue", "--data", str(demo), "--label-map", str(label_map),
                   "--report", str(out), "--html", str(tmp_path / "r.html"), "--audit", str(tmp_path / "a.db")])
    report = json.loads(out.read_text())
    assert rc == 0 and report["gate"]["passed"] and report["n"] == 21
    assert (tmp_path / "a.db").exists()


def test_breakdown_by_a_data_field_counts_local_answers_and_their_accuracy_per_group(tmp_path):
    from smallfirst.evals import breakdown, format_breakdown

    policy = parse_policy(MINIMAL_POLICY)
    spec = policy.tasks["classify_issue"]
    rows = [{"id": "py1", "text": ROUTINE, "label": "build", "ecosystem": "python"},
            {"id": "py2", "text": ROUTINE, "label": "test", "ecosystem": "python"},
            {"id": "go1", "text": ROUTINE, "label": "build", "ecosystem": "go"},
            {"id": "x", "text": ROUTINE, "label": "build"}]
    router = Router(policy, backends={"local_classifier": StubLocal(label="build", confidence=0.95)})
    results = run_eval(router, "classify_issue", read_cases(_write(tmp_path, rows), spec.labels))
    router.close()
    groups = breakdown(results, {r["id"]: r.get("ecosystem") for r in rows})
    assert [(g["group"], g["n"], g["accepted"], g["accuracy_accepted"], g["false_accepts"]) for g in groups] == [
        ("python", 2, 2, 0.5, 1), ("-", 1, 1, 1.0, 0), ("go", 1, 1, 1.0, 0)]
    table = format_breakdown("ecosystem", groups)
    assert table.splitlines()[-1].split()[:4] == ["total", "4", "4", "(100.0%)"]
    assert "3/4 (75.0%)" in table.splitlines()[-1]


def test_eval_by_field_adds_the_breakdown_to_the_report(tmp_path, capsys):
    from smallfirst.evals import breakdown

    rows = [{"id": "a", "text": ROUTINE, "label": "build", "ecosystem": "rust"}]
    data = _write(tmp_path, rows)
    out = tmp_path / "r.json"
    cli.main(["eval", "--task", "classify_issue", "--data", str(data), "--by", "ecosystem", "--report", str(out)])
    report = json.loads(out.read_text())
    assert report["by"]["field"] == "ecosystem" and [g["group"] for g in report["by"]["groups"]] == ["rust"]
    assert "by ecosystem:" in capsys.readouterr().out
    assert breakdown([], {}) == []
