"""The hard-stop rule files: every rule's own examples, and the loader's validation.

Each rule in src/smallfirst/data/hardstops/*.yaml carries examples it must fire on and
look-alikes nothing may fire on; these tests run all of them through the real scanner."""

from __future__ import annotations

from pathlib import Path

import pytest

from smallfirst.hardstops import RULES_DIR, HardStops, RuleFileError, builtin_rules, load_rules
from smallfirst.reasons import HARD_STOP_CATEGORIES

RULES = builtin_rules()
BUILT_IN = HardStops()
FIRE = [pytest.param(r, text, id=f"{r.id}-{i}") for r in RULES for i, text in enumerate(r.fire)]
PASS = [pytest.param(r, text, id=f"{r.id}-{i}") for r in RULES for i, text in enumerate(r.pass_)]


@pytest.mark.parametrize(("rule", "text"), FIRE)
def test_each_rule_fires_on_its_own_examples_and_its_category_stops(rule, text):
    assert rule.fires(text), f"{rule.id} ({rule.source}) does not fire on {text!r}"
    assert rule.category in {m.category for m in BUILT_IN.scan(text)}


@pytest.mark.parametrize(("rule", "text"), PASS)
def test_no_rule_stops_any_rules_look_alikes(rule, text):
    found = BUILT_IN.scan(text)
    assert found == [], f"look-alike of {rule.id} ({rule.source}) stopped by {[m.rule for m in found]}: {text!r}"


def test_rule_files_cover_every_category_with_unique_ids_and_families():
    assert {r.category for r in RULES} == set(HARD_STOP_CATEGORIES)
    assert len({r.id for r in RULES}) == len(RULES)
    assert all(r.family and r.fire and r.pass_ for r in RULES)
    assert {p.name for p in RULES_DIR.glob("*.yaml")} == {f"{c}.yaml" for c in HARD_STOP_CATEGORIES}


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "access.yaml"
    path.write_text(body, encoding="utf-8")
    return path


GOOD_RULE = """\
category: access
families:
  demo:
    about: a demo family
    rules:
      - id: access.demo
        cues: [denied]
        pattern: '\\bdemo\\s+denied\\b'
        fire: ["demo denied"]
        pass: ["demo allowed"]
"""


def test_a_valid_rule_file_loads_and_its_rule_works_alone(tmp_path):
    (rule,) = load_rules([_write(tmp_path, GOOD_RULE)])
    assert rule.id == "access.demo" and rule.family == "demo" and rule.source == "access.yaml:6"
    hs = HardStops(rules=[rule])
    assert hs.first("the demo denied us").rule == "access.demo"
    assert hs.first("Demo   DENIED") is not None
    assert hs.first("demo allowed") is None


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (("category: access", "category: billing"), 1, "'billing' is not one of"),
        (("    about: a demo family\n", "    about: a demo family\n    owner: me\n"), 5, "unknown key"),
        (("        pattern: '\\bdemo\\s+denied\\b'", "        pattern: 'demo (denied'"), 8, "bad regex"),
        (("        pattern: '\\bdemo\\s+denied\\b'", "        pattern: 'Demo denied'"), 8, "lower case"),
        (("        pattern: '\\bdemo\\s+denied\\b'", "        pattern: '{{nope}} denied'"), 8, "unknown fragment"),
        (("        cues: [denied]", "        cues: [demo denied]"), 7, "not one word"),
        (("        cues: [denied]", "        cues: [de*]"), 7, "at least 3 bytes"),
        (("        cues: [denied]", "        cues: [denied, no]"), 7, "quote 'no' (YAML reads it as bool)"),
        (("        cues: [denied]", "        cues: ['*abc*']"), 7, "non-ASCII"),
        (("        fire: [\"demo denied\"]\n", ""), 6, "fire: missing"),
        (("        cues: [denied]\n", ""), 7, "cues: missing"),
        (("        pass: [\"demo allowed\"]", "        pass: []"), 10, "non-empty list"),
        (("        pattern: '\\bdemo\\s+denied\\b'\n", "        pattern: 'x'\n        patterns: ['y']\n"), 6, "exactly one of"),
        (("        cues: [denied]\n", "        cues: [denied]\n        context: [not_a_thing]\n"), 8, "unknown context check"),
        (("      - id: access.demo", "      - id: security.demo"), 6, "must start with 'access.'"),
    ],
)
def test_a_broken_rule_file_is_rejected_with_its_file_line_and_field(tmp_path, change, line, message):
    body = GOOD_RULE.replace(*change)
    assert body != GOOD_RULE
    with pytest.raises(RuleFileError) as e:
        load_rules([_write(tmp_path, body)])
    assert e.value.file == "access.yaml" and e.value.line == line, str(e.value)
    assert message in str(e.value) and str(e.value).startswith(f"access.yaml:{line}: ")


def test_a_duplicate_rule_id_names_both_places(tmp_path):
    first = _write(tmp_path, GOOD_RULE)
    second = tmp_path / "more.yaml"
    second.write_text(GOOD_RULE, encoding="utf-8")
    with pytest.raises(RuleFileError, match=r"more.yaml:6: id: 'access.demo' is already defined at access.yaml:6"):
        load_rules([first, second])


def test_yaml_syntax_errors_name_the_line(tmp_path):
    with pytest.raises(RuleFileError, match=r"^access.yaml:\d+: YAML syntax"):
        load_rules([_write(tmp_path, GOOD_RULE + "  - [unclosed\n")])


def test_literal_first_alternatives_find_what_the_patterns_as_written_find():
    # The loader splits each pattern into alternatives that start with a literal (and checks a
    # leading \b in code) for speed; on every example they must agree with the pattern as written.
    import re

    from smallfirst.hardstops import _first_hit, normalise

    for rule in RULES:
        whole = re.compile("|".join(f"(?:{p})" for p in rule.patterns))
        all_cues = sorted({c for _, _, gate in rule.matchers for c in gate})
        for text in rule.fire + rule.pass_:
            norm, _ = normalise(text)
            expected = next((m.start() for m in whole.finditer(norm) if rule.accepts(norm, m)), None)
            found = _first_hit(rule, norm, [c for c in all_cues if c in norm])
            assert (found[0] if found else None) == expected, (rule.id, text)
