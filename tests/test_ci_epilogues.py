"""The runner-epilogue rules (data/ci_epilogues.yaml): every rule's examples, and what the rules
must never drop."""

from __future__ import annotations

import pytest
import yaml

from smallfirst.logtext import EPILOGUES, compress_log, drop_epilogues

RULES = yaml.safe_load(EPILOGUES.read_text(encoding="utf-8"))
EXAMPLES = [pytest.param(ex["log"], ex["keeps"], id=f"{r['name']}-{i}") for r in RULES for i, ex in enumerate(r["examples"])]


def test_every_rule_has_a_runner_and_examples():
    for r in RULES:
        assert r.get("runner") and r.get("examples"), r["name"]
        assert not (r.get("to_end") and r.get("end")), f"{r['name']}: to_end and end both given"


@pytest.mark.parametrize("log,keeps", EXAMPLES)
def test_compress_log_drops_the_runner_epilogue(log, keeps):
    assert compress_log(log).text == keeps.rstrip("\n")


def test_a_log_without_any_epilogue_comes_back_as_the_same_lines():
    lines = ["$ pytest -q", "FAILED tests/test_a.py::test_b", "1 failed in 0.2s"]
    assert drop_epilogues(lines) is lines


def test_a_section_whose_end_never_comes_runs_to_the_end_of_the_log():
    lines = ["npm ERR! code ELIFECYCLE", "store build cache", "change detected:", "/home/travis/.npm/a"]
    assert drop_epilogues(lines) == ["npm ERR! code ELIFECYCLE"]


def test_a_tool_line_that_only_mentions_a_runner_phrase_is_kept():
    # Rules anchor at the line's start: a tool quoting the phrase mid-line is not the runner.
    lines = ["error: test 'Post job cleanup.' failed", "  expected: store build cache"]
    assert drop_epilogues(lines) == lines


def test_the_failure_before_a_long_cache_upload_reaches_the_compressed_tail():
    cached = [f"/home/travis/.cache/pip/wheels/{i:04x}/pkg-{i}.whl" for i in range(3000)]
    log = "\n".join(["E   ImportError: No module named 'yaml'", 'The command "pytest" exited with 1.',
                     "store build cache", "change detected (content changed, file is created, or file is deleted):",
                     *cached, "changes detected, packing new archive", "cache uploaded", "Done. Your build exited with 1."])
    out = compress_log(log, 500).text
    assert out.endswith('The command "pytest" exited with 1.') and "ImportError" in out and ".whl" not in out
