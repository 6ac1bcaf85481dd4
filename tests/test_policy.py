from __future__ import annotations

import pytest

from smallfirst.cli import main
from smallfirst.policy import PolicyError, load_policy, parse_policy
from smallfirst.reasons import FallbackReason

from conftest import MINIMAL_POLICY


def test_published_example_policy_loads_with_its_thresholds(write_policy):
    policy = load_policy(write_policy())
    task = policy.tasks["classify_issue"]
    assert task.labels == ["build", "test", "dependency", "security", "access", "unknown"]
    assert task.min_confidence == 0.72
    assert task.escalate_labels == ["security", "access", "unknown"]
    assert task.kind == "classify"
    assert policy.tasks["summarize_log"].kind == "text" and policy.tasks["summarize_log"].grounding_on
    assert policy.tasks["shape_json"].kind == "json"
    assert not policy.tasks["propose_code_change"].local
    assert policy.version_tag.startswith("v1:")


def test_bundled_default_policy_embodies_the_published_example():
    policy = load_policy(None)
    task = policy.tasks["classify_issue"]
    # The published six labels plus issue 8's lint and infrastructure; the threshold departs from
    # the published 0.72 on purpose (policy.yaml: chosen on LogChunks' tune half for >= 95%).
    assert task.labels[:3] == ["build", "test", "dependency"]
    assert set(task.labels) == {"build", "test", "dependency", "lint", "infrastructure", "security", "access", "unknown"}
    assert task.min_confidence == 0.97
    assert set(task.escalate_labels) == {"security", "access", "unknown"}
    assert not policy.tasks["security_review"].local
    assert not policy.tasks["propose_code_change"].local
    assert policy.hard_stops["access"] == ["registry auth", "SSO"]


def test_unknown_key_names_file_line_and_field(write_policy):
    text = MINIMAL_POLICY.replace("    min_confidence: 0.72\n", "    min_confidense: 0.72\n")
    path = write_policy(text)
    with pytest.raises(PolicyError) as e:
        load_policy(path)
    line = text.splitlines().index("    min_confidense: 0.72") + 1
    assert e.value.file == str(path)
    assert e.value.line == line
    assert e.value.field == "tasks.classify_issue.min_confidense"
    assert str(e.value).startswith(f"{path}:{line}: tasks.classify_issue.min_confidense: unknown key")


def test_out_of_range_threshold_points_at_its_line(write_policy):
    text = MINIMAL_POLICY.replace("min_confidence: 0.72", "min_confidence: 1.7")
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(text))
    assert e.value.line == text.splitlines().index("    min_confidence: 1.7") + 1
    assert e.value.field == "tasks.classify_issue.min_confidence"


def test_escalate_label_outside_labels_is_rejected_at_that_key(write_policy):
    text = MINIMAL_POLICY.replace("escalate_labels: [security, access, unknown]", "escalate_labels: [securty]")
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(text))
    assert e.value.field == "tasks.classify_issue.escalate_labels"
    assert e.value.line == text.splitlines().index("    escalate_labels: [securty]") + 1
    assert "securty" in e.value.message


def test_task_model_must_exist(write_policy):
    text = MINIMAL_POLICY.replace("model: local_classifier", "model: local_clasifier")
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(text))
    assert e.value.field == "tasks.classify_issue.model"
    assert "local_clasifier" in str(e.value)


def test_yaml_syntax_error_names_line(write_policy):
    text = MINIMAL_POLICY.replace("  summarize_log: {local: true,", "  summarize_log: {local: true,,")
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(text))
    assert e.value.line is not None and "YAML" in str(e.value)


def test_duplicate_key_is_an_error_not_a_silent_override(write_policy):
    text = MINIMAL_POLICY.replace("rollout:", "tasks:\n  x: {local: false}\nrollout:")
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(text))
    assert "duplicate key" in str(e.value) and e.value.field == "tasks"


def test_unknown_hard_stop_category_is_rejected(write_policy):
    text = MINIMAL_POLICY.replace("  access: ['registry auth', 'SSO']", "  acess: ['x']")
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(text))
    assert e.value.field == "hard_stops"


def test_missing_version_is_reported(write_policy):
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(MINIMAL_POLICY.replace("version: 1\n", "")))
    assert e.value.field == "version" and "missing" in e.value.message


def test_cli_exits_2_with_file_line_field_on_malformed_policy(write_policy, capsys):
    path = write_policy(MINIMAL_POLICY.replace("min_confidence: 0.72", "min_confidence: high"))
    assert main(["policy", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "tasks.classify_issue.min_confidence" in err


def test_cli_policy_check_accepts_a_valid_file(write_policy, capsys):
    assert main(["policy", "check", str(write_policy())]) == 0
    assert "ok" in capsys.readouterr().out


def test_missing_policy_file_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyError) as e:
        load_policy(tmp_path / "nope.yaml")
    assert "cannot read policy" in str(e.value)


def test_not_a_mapping_is_rejected():
    with pytest.raises(PolicyError):
        parse_policy("- just\n- a list\n")


def test_fallback_reason_vocabulary_is_exactly_the_published_one():
    assert {r.value for r in FallbackReason} == {
        "unknown_task", "policy_requires_frontier", "input_too_large", "schema_invalid", "confidence_low",
        "hard_stop_security", "hard_stop_access", "hard_stop_production", "hard_stop_novel",
        "label_escalates", "local_error", "manual_override",
    }


def test_policy_check_lists_every_error_in_the_file_with_its_line_and_exits_2(write_policy, capsys):
    text = (MINIMAL_POLICY
            .replace("    min_confidence: 0.72\n", "    min_confidense: 0.72\n")
            .replace("max_input_chars: 12000}", "max_input_chars: -5}")
            .replace("model: local_default\n    min_confidence: 0.5", "model: local_defualt\n    min_confidence: 0.5")
            .replace("rollout: {mode: live,", "rollout: {mode: sometimes,"))
    path = write_policy(text)
    lines = text.splitlines()
    at = {key: next(i for i, ln in enumerate(lines, 1) if key in ln)
          for key in ("min_confidense", "max_input_chars: -5", "local_defualt", "mode: sometimes")}
    assert main(["policy", "check", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path}:{at['min_confidense']}: tasks.classify_issue.min_confidense: unknown key 'min_confidense'",
        f"{path}:{at['max_input_chars: -5']}: tasks.summarize_log.max_input_chars: Input should be greater than 0",
        f"{path}:{at['local_defualt']}: tasks.shape_json.model: 'local_defualt' is not defined under models",
        f"{path}:{at['mode: sometimes']}: rollout.mode: Input should be 'live' or 'shadow'",
        f"smallfirst: 4 errors in {path}",
    ]


def test_loading_a_policy_with_several_errors_names_the_first_and_carries_them_all(write_policy):
    text = MINIMAL_POLICY.replace("min_confidence: 0.72", "min_confidence: 7").replace("version: 1", "version: 2")
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(text))
    assert e.value.field == "version" and e.value.line == 1
    assert [err.field for err in e.value.errors] == ["version", "tasks.classify_issue.min_confidence"]
    assert str(e.value).count("\n") == 1  # one line per problem


def test_duplicate_keys_are_reported_with_the_other_errors(write_policy):
    text = MINIMAL_POLICY.replace("rollout:", "tasks:\n  x: {local: false}\nrollout:").replace(
        "min_confidence: 0.72", "min_confidence: high")
    with pytest.raises(PolicyError) as e:
        load_policy(write_policy(text))
    assert {err.message.split(":")[0] for err in e.value.errors} >= {"duplicate key"}
    assert len(e.value.errors) >= 1 and any(err.field == "tasks" for err in e.value.errors)
