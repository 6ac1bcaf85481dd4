"""The data that flows through the pipeline: plain frozen dataclasses, validated at the edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from smallfirst.reasons import FallbackReason


@dataclass(frozen=True)
class Task:
    """One agent step to answer. `input` may be bytes straight off a file or socket: the input
    guard decodes it and rejects what is not text."""

    input: str | bytes
    task_type: str | None = None
    task_id: str | None = None
    user_group: str = "default"
    schema: Mapping[str, Any] | None = None  # overrides the task's schema from the policy
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalOutput:
    """What a local backend answered, with the signals the gate needs.

    `confidence` is a probability computed from the model's own scores (label probabilities,
    token log-probabilities), calibrated where a calibrator exists; never a number the model
    wrote in its answer. `confidence_raw` is the uncalibrated score it came from.
    """

    answer: str
    model: str
    label: str | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    confidence: float | None = None
    confidence_raw: float | None = None
    model_sha256: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    # Out-of-distribution signal from a trained head: the input is unlike anything the head was
    # trained on, so its label probabilities mean little. The gate turns it into hard_stop_novel.
    novel: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FrontierAnswer:
    text: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    response_id: str | None = None  # the frontier's id for the answer, where it gave one


@dataclass(frozen=True)
class HardStopMatch:
    category: str  # security | access | production | novel
    rule: str  # stable rule id, e.g. "access.http_403" or "policy.access[0]"
    span: tuple[int, int]  # character offsets in the decoded input
    excerpt: str  # the matched text, redacted before it is ever stored

    @property
    def reason(self) -> FallbackReason:
        return FallbackReason.for_hard_stop(self.category)


@dataclass(frozen=True)
class Check:
    """One gate check's result, stored in the audit record as structured data."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class GateResult:
    ok: bool
    reason: FallbackReason | None
    checks: tuple[Check, ...] = ()
