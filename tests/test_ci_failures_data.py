"""The classify_issue data under data/ci-failures: the generated training rows, the scripts that
assemble them, and the hand-labelled evaluation set kept apart from them.

The training file is what `smallfirst train` reads for classify_issue; these tests guard what the
lead relies on: the label set, unique ids, provenance on every row, sizes a CI log tail holds,
coverage of every label, that no path of the machine that made it leaked into the text, that the
CI wrapper says nothing about the label, and that no evaluation text reached the training rows.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from smallfirst.evals import read_cases
from smallfirst.train import read_examples

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "ci-failures"
TRAIN = DATA_DIR / "train" / "all.jsonl"
LOGCHUNKS = SHARED_DATA / "logchunks-dev" / "logchunks_dev.jsonl"
LABELS = {"build", "test", "dependency", "lint", "infrastructure", "security", "access", "unknown"}
# One ecosystem vocabulary for every file under data/ci-failures (README.md); `ci` (CI-runner and
# hosted-service messages) appears in training only.
ECOSYSTEMS = {
    "python", "javascript", "go", "rust", "jvm", "c-cpp", "ruby", "dotnet", "docker", "php", "swift",
    "haskell", "erlang-elixir", "shell", "other",
}

sys.path.insert(0, str(DATA_DIR / "generate"))


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


build_eval = _load("build_eval", DATA_DIR / "eval" / "build_eval.py")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return _jsonl(TRAIN)


# ---------------------------------------------------------------- the training rows


def test_every_row_has_a_known_label_and_its_provenance(rows):
    keys = {"id", "text", "label", "ecosystem", "tool", "origin", "source", "licence", "wrapper", "fault", "command", "body_lines"}
    for r in rows:
        assert set(r) == keys, r["id"]
        assert r["label"] in LABELS, r["id"]
        assert r["origin"] in ("generated", "exemplar"), r["id"]
        assert r["text"].strip() or r["label"] == "unknown", r["id"]
        for field in ("ecosystem", "tool", "source", "licence"):
            assert isinstance(r[field], str) and r[field], (r["id"], field)
        if r["origin"] == "exemplar":
            assert r["source"].startswith("exemplar written from the documented message format of "), r["id"]
        else:
            assert " output on a synthetic project (data/ci-failures/generate/fam_" in r["source"], r["id"]


def test_rows_use_the_ecosystem_names_of_the_evaluation_sets(rows):
    assert {r["ecosystem"] for r in rows} <= ECOSYSTEMS | {"ci"}


def test_smallfirst_train_reads_every_row(rows):
    examples = read_examples(TRAIN, sorted(LABELS))
    assert len(examples) == len(rows)
    assert Counter(e.label for e in examples) == Counter(r["label"] for r in rows)


def test_ids_are_unique(rows):
    dup = [k for k, n in Counter(r["id"] for r in rows).items() if n > 1]
    assert not dup


def test_texts_fit_what_a_ci_log_tail_holds(rows):
    assert max(len(r["text"]) for r in rows) <= 12_000
    assert max(r["text"].count("\n") for r in rows) <= 400


def test_routine_labels_have_enough_rows_and_the_escalating_ones_are_present(rows):
    counts = Counter(r["label"] for r in rows)
    for label in ("build", "test", "dependency", "lint", "infrastructure"):
        assert counts[label] >= 150, counts
    for label in ("security", "access", "unknown"):
        assert counts[label] >= 50, counts


def test_no_ecosystem_dominates(rows):
    counts = Counter(r["ecosystem"] for r in rows)
    assert max(counts.values()) <= 0.2 * len(rows), counts


def test_no_path_of_the_generating_machine_leaks_into_the_text(rows):
    leak = re.compile(r"/tmp/sfgen|/tmp/tiny/|/tmp/ws/|\{WS\}|\{HOME\}|\{SITE\}|\{GOROOT\}|tools/(?:node5?|js2)/node_modules|tools/py(?:bare|2)?/")
    bad = [r["id"] for r in rows if leak.search(r["text"])]
    assert not bad, bad[:5]


def _capture(body: str, label: str = "test", **kw) -> dict:
    cap = {"family": "python", "ecosystem": "python", "tool": "pytest", "label": label, "fault": "x", "command": "pytest -q", "body": body, "exit_code": 1, "tool_version": "pytest 9", "origin": "generated", "extra": {}}
    cap.update(kw)
    return cap


def test_bodies_that_differ_only_in_random_names_and_numbers_are_one_failure():
    from assemble import dedupe

    a = _capture("FAILED tests/test_invoice.py::test_parse_invoice - assert 41 == 42\n1 failed, 3 passed in 0.05s")
    b = _capture("FAILED tests/test_ledger.py::test_parse_ledger - assert 7 == 9\n1 failed, 12 passed in 0.11s")
    c = _capture("E   ModuleNotFoundError: No module named 'yaml'\nERROR tests/test_config.py\n1 error in 0.2s", label="dependency")
    assert [x["body"] for x in dedupe([a, b, c])] == [a["body"], c["body"]]


def test_names_joined_in_camel_case_are_random_names_too():
    from assemble import dedupe

    a = _capture("** (Mix) Could not find an SCM for dependency :jason from EmployeeEmployee.MixProject", label="dependency", tool="mix deps")
    b = _capture("** (Mix) Could not find an SCM for dependency :jason from ZoneAlert.MixProject", label="dependency", tool="mix deps")
    c = _capture("** (Mix) Could not find an SCM for dependency :jason from HTTPGateway.MixProject", label="dependency", tool="mix deps")
    assert len(dedupe([a, b, c])) == 1


CI_SYSTEMS = ["gha", "gitlab", "jenkins", "circleci", "travis", "azure", "buildkite", "drone", "appveyor", "teamcity", "plain", "docker"]


@pytest.mark.parametrize("ci", CI_SYSTEMS)
def test_every_ci_wrapper_keeps_the_failure_and_fills_the_workspace(ci):
    from wrap import wrap

    cap = _capture("{WS}/tests/test_x.py:3: AssertionError\nFAILED tests/test_x.py::test_y - assert 1 == 2")
    w = wrap(cap, random.Random(3), "acme", "billing-api", "long", ci=ci)
    text, name = w
    assert "FAILED tests/test_x.py::test_y - assert 1 == 2" in text
    assert "{WS}" not in text and "\x02" not in text and name.startswith(ci)


@pytest.mark.parametrize("ci", CI_SYSTEMS)
def test_body_lines_name_exactly_the_lines_the_failure_printed(ci):
    from wrap import wrap

    body = ["tests/test_x.py:3: AssertionError", "FAILED tests/test_x.py::test_y - assert 1 == 2", "1 failed in 0.2s"]
    for seed in range(6):
        w = wrap(_capture("\n".join(body)), random.Random(seed), "acme", "billing-api", "long", ci=ci)
        lines = w.text.split("\n")
        marked = [lines[i] for a, b in w.body_lines for i in range(a, b)]
        # Every marked line holds a body line (a CI system may prefix a timestamp or repeat the
        # last lines in a summary), and no unmarked line does.
        assert all(any(s in m for s in body) for m in marked), marked
        unmarked = [s for i, s in enumerate(lines) if not any(a <= i < b for a, b in w.body_lines)]
        assert not any(s in u for s in body for u in unmarked), unmarked


@pytest.mark.parametrize("runner", ["npm", "yarn", "pnpm", "make", "just", "script", "rake", "tox", "nox", "ninja", "mvn", "gradle", "composer"])
def test_a_runner_prints_the_same_failure_lines_whatever_the_label(runner):
    """The runner's closing lines depend on the runner, never on what failed under it."""
    from wrap import wrap

    def closing(label: str, seed: int) -> str:
        w = wrap(_capture("some output\nthe failure", label=label), random.Random(seed), "acme", "billing-api", "medium", ci="plain", runner=runner)
        lines = w.text.split("\n")
        last_body = max(b for a, b in w.body_lines)
        return "\n".join(lines[last_body:])

    for seed in range(5):
        assert closing("test", seed) == closing("dependency", seed) == closing("lint", seed)


def test_wrappers_are_drawn_independently_of_the_label():
    from wrap import wrap

    def draws(label: str) -> Counter:
        return Counter(wrap(_capture("x", label=label), random.Random(seed), "acme", "api", "medium").wrapper for seed in range(400))

    assert draws("test") == draws("lint") == draws("infrastructure")


def test_rows_name_their_body_lines_and_command(rows):
    for r in rows:
        n = r["text"].count("\n") + 1
        assert all(0 <= a < b <= n for a, b in r["body_lines"]), r["id"]
        assert isinstance(r["command"], str), r["id"]


# ---------------------------------------------------------------- the evaluation set


def test_logchunks_labels_cover_every_dev_log_once_with_guide_labels():
    labels = _jsonl(build_eval.LOGCHUNKS_LABELS)
    ids = [r["id"] for r in labels]
    assert len(ids) == len(set(ids)) == 398
    assert all(set(r) == {"id", "label", "ecosystem", "note"} for r in labels), "no text is stored beside the labels"
    assert {r["label"] for r in labels} <= LABELS == set(build_eval.LABELS)
    assert {r["ecosystem"] for r in labels} <= ECOSYSTEMS
    assert all(r["note"].strip() for r in labels), "every label says what it was read from"
    assert set(ids) == {r["id"] for r in _jsonl(LOGCHUNKS)}


def test_built_eval_file_joins_the_text_and_reads_as_smallfirst_eval_data(tmp_path, capsys):
    out = tmp_path / "eval.jsonl"
    assert build_eval.main(["--out", str(out), "--logchunks", str(LOGCHUNKS)]) == 0
    built = _jsonl(out)
    assert len(built) == 398
    assert all(set(r) == {"id", "text", "label", "ecosystem", "source"} and r["text"] for r in built)
    cases = read_cases(out, sorted(LABELS))
    assert [c.label for c in cases] == [r["label"] for r in _jsonl(build_eval.LOGCHUNKS_LABELS)]
    table = capsys.readouterr().err
    assert re.search(r"^total\s+(\d+\s+){8}\s*398$", table, re.M), table


def test_an_extra_evaluation_set_is_appended_and_its_ids_must_not_clash(tmp_path):
    extra = tmp_path / "local.jsonl"
    extra.write_text(json.dumps({"id": "local-1", "text": "npm ERR! code ERESOLVE", "label": "dependency", "ecosystem": "javascript", "source": "kept locally"}) + "\n")
    built = build_eval.build(LOGCHUNKS, [extra])
    assert len(built) == 399 and built[-1]["id"] == "local-1"
    with pytest.raises(build_eval.EvalBuildError, match="duplicate id 'local-1'"):
        build_eval.build(LOGCHUNKS, [extra, extra])


def test_a_label_outside_the_guide_is_refused_with_file_and_line(tmp_path):
    bad = tmp_path / "local.jsonl"
    bad.write_text(
        json.dumps({"id": "a", "text": "x", "label": "test", "ecosystem": "go", "source": "s"}) + "\n"
        + json.dumps({"id": "b", "text": "y", "label": "flaky", "ecosystem": "go", "source": "s"}) + "\n"
    )
    with pytest.raises(build_eval.EvalBuildError, match=r"local\.jsonl:2: label: 'flaky'"):
        build_eval.extra_rows(bad)


def test_a_label_row_without_its_log_is_refused_with_file_and_line(tmp_path):
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"id": "logchunks-nope", "label": "test", "ecosystem": "go", "note": "n"}) + "\n")
    with pytest.raises(build_eval.EvalBuildError, match=r"labels\.jsonl:1: id 'logchunks-nope' is not in"):
        build_eval.build(LOGCHUNKS, labels=labels)


def test_the_builder_exits_2_with_the_file_when_the_logchunks_text_is_missing(tmp_path, capsys):
    assert build_eval.main(["--out", str(tmp_path / "e.jsonl"), "--logchunks", str(tmp_path / "absent.jsonl")]) == 2
    assert "absent.jsonl: LogChunks text not found" in capsys.readouterr().err
    assert not (tmp_path / "e.jsonl").exists()


# Six consecutive lines that hold at least this much text are one log's, not boilerplate.
_WINDOW, _WINDOW_CHARS = 6, 240


def _windows(text: str) -> set[str]:
    lines = [re.sub(r"\s+", " ", s).strip() for s in text.split("\n")]
    lines = [s for s in lines if s]
    out = set()
    for i in range(len(lines) - _WINDOW + 1):
        w = lines[i : i + _WINDOW]
        if len(set(w)) == _WINDOW and sum(map(len, w)) >= _WINDOW_CHARS:
            out.add(hashlib.sha1("\n".join(w).encode()).hexdigest())
    return out


def test_no_evaluation_log_reaches_the_training_rows(rows):
    """Training rows are generated here; a run of an evaluation log's lines in one would mean that
    evaluation text was copied into training (the score would then measure memory)."""
    evaluation: set[str] = set()
    for r in _jsonl(LOGCHUNKS):
        evaluation |= _windows(r["text"])
    assert evaluation
    shared = [r["id"] for r in rows if _windows(r["text"]) & evaluation]
    assert not shared, shared[:5]


def test_the_overlap_check_finds_an_evaluation_log_pasted_into_a_row():
    log = _jsonl(LOGCHUNKS)[5]["text"]
    pasted = "some preamble\n" + "\n".join(log.split("\n")[-40:]) + "\nexit 1"
    assert _windows(pasted) & _windows(log)


def test_the_tune_and_report_halves_split_logchunks_by_repository():
    tune, report = build_eval.build(LOGCHUNKS, half="tune"), build_eval.build(LOGCHUNKS, half="report")
    everything = build_eval.build(LOGCHUNKS)
    assert sorted(r["id"] for r in tune + report) == sorted(r["id"] for r in everything)
    repo = {r["id"]: r["repo"] for r in _jsonl(LOGCHUNKS)}
    assert not {repo[r["id"]] for r in tune} & {repo[r["id"]] for r in report}
    assert abs(len(tune) - len(report)) < len(everything) // 4
