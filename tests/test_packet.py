import json

import pytest

from smallfirst.hardstops import HardStops
from smallfirst.packet import SYSTEM_PROMPT, EscalationPacket, build_packet
from smallfirst.reasons import FallbackReason
from smallfirst.tasks import LocalOutput

TOKEN = "ghp_" + "Q7w9E2r4T6y8U1i3O5p7A9s2D4f6G8h1J3k5"
AWS_KEY = "AKIA" + "Q7W9E2R4T6Y8U1I3"


def total_size(packet: EscalationPacket) -> int:
    system, messages = packet.messages()
    return len(system) + sum(len(m["content"]) for m in messages)


def big_log(n_chars: int = 100_000) -> str:
    lines, size, i = [], 0, 0
    while size < n_chars:
        line = f"[INFO] step {i}: compiled module-{i % 97} into target/classes ({i * 7 % 1000} ms)"
        lines.append(line)
        size += len(line) + 1
        i += 1
    lines[len(lines) // 2] = f"[ERROR] upload failed: export GITHUB_TOKEN={TOKEN}"
    lines.append("[ERROR] BUILD FAILURE: 403 Forbidden")
    return "\n".join(lines)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("max_chars", [1500, 6000])
def test_packet_for_a_100k_input_stays_within_max_chars(compress, max_chars):
    text = big_log()
    assert len(text) >= 100_000
    packet = build_packet(
        "summarize_log", "Summarise a CI log.", text, reason=FallbackReason.INPUT_TOO_LARGE,
        detail=f"{len(text)} chars > max_input_chars 32000", compress=compress, max_chars=max_chars,
    )
    assert total_size(packet) <= max_chars
    assert packet.input_chars == len(text)
    assert "[ERROR] BUILD FAILURE: 403 Forbidden" in packet.input_excerpt  # the tail survives


def test_no_raw_secret_reaches_the_frontier_from_any_field():
    text = f"deploy step\nexport AWS_ACCESS_KEY_ID={AWS_KEY}\ngit push https://ci:{TOKEN}@github.com/o/r.git\n"
    local = LocalOutput(answer=f"The key {AWS_KEY} and token {TOKEN} leaked", model="gemma", label="security", confidence=0.9)
    hard_stop = HardStops().first(text)
    assert hard_stop is not None and hard_stop.category == "security"
    packet = build_packet(
        "classify_issue", f"Classify (uses {TOKEN})", text, reason=hard_stop.reason,
        detail=f"saw {AWS_KEY}", local=local, hard_stop=hard_stop,
    )
    system, messages = packet.messages()
    wire = system + json.dumps(messages) + json.dumps(packet.to_dict())
    for secret in (TOKEN, AWS_KEY):
        for i in range(len(secret) - 11):
            assert secret[i : i + 12] not in wire


def test_a_local_answer_quoting_part_of_an_input_secret_is_masked_in_the_packet():
    # A model reads a compressed log whose long line was cut mid-key and quotes what it saw:
    # no shape matches the fragment, but the input's own secret does.
    private_key_id = "4f0e" * 10
    text = f'{{"private_key_id": "{private_key_id}", "type": "service_account"}}\n[ERROR] upload failed'
    local = LocalOutput(answer=f"The upload used key {private_key_id[6:30]}, then failed.", model="gemma",
                        label=f"x{private_key_id[:12]}", confidence=0.3)
    packet = build_packet("summarize_log", "", text, reason=FallbackReason.CONFIDENCE_LOW, local=local,
                          detail=f"not in input: {private_key_id[2:14]}")
    wire = json.dumps(packet.to_dict()) + json.dumps(packet.messages())
    for i in range(len(private_key_id) - 7):
        assert private_key_id[i : i + 8] not in wire
    assert "[REDACTED:fragment]" in packet.local_answer and packet.local_answer.endswith(", then failed.")


def test_messages_say_what_the_task_is_what_the_local_model_said_and_why_it_was_rejected():
    local = LocalOutput(answer="test", model="minilm", label="test", confidence=0.41)
    packet = build_packet(
        "classify_issue", "Classify why a CI build failed.", "Tests run: 3, Failures: 1\nBUILD FAILURE",
        reason=FallbackReason.CONFIDENCE_LOW, detail="0.41 < min_confidence 0.72", local=local,
    )
    system, messages = packet.messages()
    assert system == SYSTEM_PROMPT
    assert [m["role"] for m in messages] == ["user"]
    content = messages[0]["content"]
    for expected in ("classify_issue", "Classify why a CI build failed.", "confidence_low", "0.41 < min_confidence 0.72",
                     "label test", "confidence 0.41", "Tests run: 3, Failures: 1\nBUILD FAILURE"):
        assert expected in content


def test_short_input_is_passed_whole():
    packet = build_packet("shape_json", "", "just a short input", reason=FallbackReason.SCHEMA_INVALID)
    assert packet.input_excerpt == "just a short input"
    assert packet.local_answer is None and packet.local_label is None


def test_uncompressed_long_input_keeps_head_and_tail_with_a_marker():
    text = "HEAD-" + "x" * 50_000 + "-TAIL"
    packet = build_packet("summarize_log", "", text, reason=FallbackReason.INPUT_TOO_LARGE, max_chars=3000)
    assert packet.input_excerpt.startswith("HEAD-")
    assert packet.input_excerpt.endswith("-TAIL")
    assert "chars] ..." in packet.input_excerpt


def test_to_dict_is_json_ready_and_uses_the_stable_reason_value():
    hard_stop = HardStops().first("npm ERR! 403 Forbidden - GET https://<registry-host>/@org%2fpkg")
    packet = build_packet("summarize_log", "", "npm ERR! 403 Forbidden", reason=hard_stop.reason, hard_stop=hard_stop)
    d = json.loads(json.dumps(packet.to_dict()))
    assert d["reason"] == "hard_stop_access"
    assert d["hard_stop"]["category"] == "access" and d["hard_stop"]["rule"] == "access.http_403"
    assert d["input_sha256"] == packet.input_sha256 and len(d["input_sha256"]) == 64


def test_long_local_answer_is_cut_to_its_share():
    local = LocalOutput(answer="word " * 5000, model="gemma")
    packet = build_packet("summarize_log", "", "log", reason=FallbackReason.CONFIDENCE_LOW, local=local, max_chars=2000)
    assert total_size(packet) <= 2000
    assert len(packet.local_answer or "") <= 400
