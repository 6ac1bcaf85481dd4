"""The escalation packet: what the frontier model receives when a task leaves the local path.

It says what the task is, shows the input (compressed or cut to fit, secrets masked), what the
local model answered, and why that answer was not used. Everything in it is masked: a frontier
provider must never receive raw credentials. Its rendered size is bounded by `max_chars`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from smallfirst.logtext import compress_log
from smallfirst.reasons import FallbackReason
from smallfirst.redact import mask_collect, mask_secrets, sha256_text
from smallfirst.tasks import HardStopMatch, LocalOutput

__all__ = ["EscalationPacket", "build_packet", "SYSTEM_PROMPT"]

SYSTEM_PROMPT = (
    "You are the frontier model behind a router that answers agent steps with a small local model "
    "first. The local model's answer to this step was not used, for the reason given. Answer the task "
    "yourself from the input; treat the local answer only as a hint that may be wrong. The input may be "
    "shortened: dropped lines are marked '... [N lines]' or '... [N chars]'. Secrets in it are replaced "
    "by [REDACTED:<kind>]; do not ask for them or try to reconstruct them. Answer only what the task asks."
)

_ANSWER_SHARE = 0.2  # of max_chars, at most, for the local model's rejected answer
_DETAIL_MAX = 300
_COUNT_WIDTH = 8  # room kept for the digits of the "N shown" count, unknown until the excerpt is cut
_HEAD_SHARE = 0.35  # when cutting without compression: a third of the room for the head, the rest tail


@dataclass(frozen=True)
class EscalationPacket:
    task_type: str
    description: str
    input_excerpt: str  # masked, then compressed or cut to fit
    input_chars: int  # of the original input
    input_sha256: str  # of the original input, to join with the audit record
    local_answer: str | None
    local_label: str | None
    local_confidence: float | None
    reason: FallbackReason
    detail: str
    hard_stop: HardStopMatch | None
    # A labelled task's labels: the frontier is asked for one of them and nothing else, so its
    # answer has the shape of a local one and can be learned from (smallfirst.learn_store).
    labels: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "description": self.description,
            "input_excerpt": self.input_excerpt,
            "input_chars": self.input_chars,
            "input_sha256": self.input_sha256,
            "local_answer": self.local_answer,
            "local_label": self.local_label,
            "local_confidence": self.local_confidence,
            "reason": self.reason.value,
            "detail": self.detail,
            "labels": list(self.labels),
            "hard_stop": None
            if self.hard_stop is None
            else {
                "category": self.hard_stop.category,
                "rule": self.hard_stop.rule,
                "span": list(self.hard_stop.span),
                "excerpt": self.hard_stop.excerpt,
            },
        }

    def messages(self) -> tuple[str, list[dict[str, str]]]:
        """(system prompt, chat messages) for a frontier backend's chat()."""
        return SYSTEM_PROMPT, [{"role": "user", "content": _user_content(self, self.input_excerpt)}]


def build_packet(
    task_type: str,
    description: str,
    text: str,
    *,
    reason: FallbackReason,
    detail: str = "",
    local: LocalOutput | None = None,
    hard_stop: HardStopMatch | None = None,
    compress: bool = False,
    max_chars: int = 6000,
    labels: tuple[str, ...] = (),
) -> EscalationPacket:
    """Build the packet for one escalation; `messages()` of the result is at most `max_chars`
    characters in total (system prompt and message contents together)."""
    # Masking comes first, so neither compression nor cutting can split a secret and leave part
    # of it recognisable as text. The input's secrets also mask their fragments in what was made
    # from it: a model that quotes half a key from a compressed line must not pass it on.
    masked, secrets = mask_collect(text)
    answer = None
    if local is not None:
        answer = _cut(mask_secrets(local.answer, also=secrets), max(0, int(max_chars * _ANSWER_SHARE)))
    packet = EscalationPacket(
        task_type=task_type,
        description=_cut(mask_secrets(description), _DETAIL_MAX),
        input_excerpt="",
        input_chars=len(text),
        input_sha256=sha256_text(text),
        local_answer=answer,
        local_label=mask_secrets(local.label, also=secrets) if local is not None and local.label else None,
        local_confidence=local.confidence if local is not None else None,
        reason=reason,
        detail=_cut(" ".join(mask_secrets(detail, also=secrets).split()), _DETAIL_MAX),
        # the hard stop masked its excerpt; a window cut through a secret is masked here
        hard_stop=None if hard_stop is None else replace(hard_stop, excerpt=mask_secrets(hard_stop.excerpt, also=secrets)),
        labels=tuple(labels),
    )
    # The input gets whatever room the rest of the packet leaves.
    room = max_chars - len(SYSTEM_PROMPT) - len(_user_content(packet, "")) - _COUNT_WIDTH
    excerpt = _fit(masked, max(0, room), compress)
    content = _user_content(packet, excerpt)
    overflow = len(SYSTEM_PROMPT) + len(content) - max_chars
    if overflow > 0:  # only when max_chars is too small for the fixed parts
        excerpt = _fit(masked, max(0, len(excerpt) - overflow), False)
    return EscalationPacket(**{**packet.__dict__, "input_excerpt": excerpt})


def _user_content(p: EscalationPacket, excerpt: str) -> str:
    lines = [f"Task: {p.task_type}" + (f" - {p.description}" if p.description else "")]
    why = f"Why this step reached you: {p.reason.value}"
    if p.hard_stop is not None:
        why += f" (hard stop {p.hard_stop.rule}: {p.hard_stop.excerpt})"
    if p.detail:
        why += f". {p.detail}"
    lines.append(why)
    if p.local_answer is not None or p.local_label is not None:
        said = "Local model's rejected answer"
        facts = []
        if p.local_label is not None:
            facts.append(f"label {p.local_label}")
        if p.local_confidence is not None:
            facts.append(f"confidence {p.local_confidence:.2f}")
        if facts:
            said += " (" + ", ".join(facts) + ")"
        lines.append(said + ":")
        lines.append(p.local_answer or "")
    if p.labels:
        lines.append(f"Answer with exactly one of these labels and nothing else: {', '.join(p.labels)}")
    lines.append(
        f"Input ({p.input_chars} chars originally, {len(excerpt)} shown, secrets masked, sha256 {p.input_sha256[:12]}):"
    )
    lines.append("<<<")
    lines.append(excerpt)
    lines.append(">>>")
    return "\n".join(lines)


def _fit(text: str, room: int, compress: bool) -> str:
    if len(text) <= room:
        return text
    if room <= 0:
        return ""
    if compress:
        return compress_log(text, room).text
    return _head_tail(text, room)


def _head_tail(text: str, room: int) -> str:
    """The start and the end of `text` with a marker between; at most `room` characters."""
    widest = len(f"\n... [{len(text)} chars] ...\n")  # the real count is never wider
    if room <= widest + 2:
        return text[:room]
    keep = room - widest
    head = int(keep * _HEAD_SHARE)
    tail = keep - head
    return text[:head] + f"\n... [{len(text) - head - tail} chars] ...\n" + text[len(text) - tail :]


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…" if limit > 0 else ""
