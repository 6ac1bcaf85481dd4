"""The gate: mechanical checks that decide whether a local answer may be used.

The model never decides whether it is trusted. Checks run in a fixed order and the first
failure names the reason; every check that ran is recorded for the audit trail.

    novelty -> schema -> labels -> escalate_labels -> calibrated confidence
            -> refusal markers -> output length -> grounding

Reason mapping (the vocabulary is fixed, so several checks share a reason; `checks` keeps
the exact one):
- novelty (a trained head says the input is out of distribution) -> hard_stop_novel. It runs
  first because a hard stop overrides any answer, however confident.
- schema, label membership, output length -> schema_invalid: the answer breaks its contract.
- escalate_labels -> label_escalates.
- confidence, refusal markers, grounding -> confidence_low: the evidence that the answer is
  right is too weak (a refusal is the model saying so; an ungrounded citation shows it).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Iterable, Mapping

from smallfirst.policy import TaskSpec
from smallfirst.reasons import FallbackReason
from smallfirst.tasks import Check, GateResult, LocalOutput

# Phrases with which small models decline or hedge. Matched case-insensitively anywhere in a
# free-text answer; policies add their own under gate.refusal_markers.
BUILTIN_REFUSAL_MARKERS = (
    "i cannot",
    "i can't",
    "i can not",
    "i am unable",
    "i'm unable",
    "i'm sorry",
    "i am sorry",
    "as an ai",
    "as a language model",
    "i don't know",
    "i do not know",
    "not enough information",
    "cannot determine",
    "unable to determine",
)


@lru_cache(maxsize=64)
def _refusal_regex(extra: tuple[str, ...]) -> re.Pattern[str]:
    phrases = sorted({p.lower() for p in (*BUILTIN_REFUSAL_MARKERS, *extra) if p.strip()}, key=len, reverse=True)
    return re.compile("|".join(re.escape(p) for p in phrases), re.IGNORECASE)


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


def check_gate(
    spec: TaskSpec,
    out: LocalOutput,
    input_text: str,
    *,
    schema: Mapping[str, Any] | None = None,
    refusal_markers: Iterable[str] = (),
) -> GateResult:
    checks: list[Check] = []

    def fail(name: str, reason: FallbackReason, detail: str) -> GateResult:
        checks.append(Check(name, False, detail))
        return GateResult(False, reason, tuple(checks))

    if out.novel:
        return fail("novelty", FallbackReason.HARD_STOP_NOVEL, _novelty_detail(out))
    checks.append(Check("novelty", True))

    schema = schema if schema is not None else spec.schema
    if schema is not None and not spec.labels:
        try:
            doc = json.loads(out.answer)
        except ValueError as exc:
            return fail("schema", FallbackReason.SCHEMA_INVALID, f"answer is not JSON: {exc}")
        errors = sorted(_validator(json.dumps(schema, sort_keys=True)).iter_errors(doc), key=lambda e: e.path)
        if errors:
            e = errors[0]
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            return fail("schema", FallbackReason.SCHEMA_INVALID, f"{where}: {e.message}"[:300])
        checks.append(Check("schema", True))

    if spec.labels:
        if out.label not in spec.labels:
            return fail("labels", FallbackReason.SCHEMA_INVALID, f"label {out.label!r} is not one of {spec.labels}")
        checks.append(Check("labels", True, out.label))
        if out.label in spec.escalate_labels:
            return fail("escalate_labels", FallbackReason.LABEL_ESCALATES, f"label {out.label!r} always escalates")
        checks.append(Check("escalate_labels", True))

    if out.confidence is None:
        # A backend that cannot produce a probability (no logprobs) is never trusted by default.
        return fail("confidence", FallbackReason.CONFIDENCE_LOW, "no calibrated confidence available")
    # A learned head carries the lowest threshold its own evidence supports (smallfirst.learn);
    # the policy's min_confidence stays a floor under it.
    head_floor = out.extra.get("min_confidence") if out.extra else None
    threshold, named = spec.min_confidence, "min_confidence"
    if head_floor is not None and head_floor > threshold:
        threshold, named = float(head_floor), "the head's min_confidence"
    if out.confidence < threshold:
        return fail("confidence", FallbackReason.CONFIDENCE_LOW, f"{out.confidence:.3f} < {named} {threshold:g}")
    checks.append(Check("confidence", True, f"{out.confidence:.3f} >= {threshold:g}"))

    if not spec.labels:
        m = _refusal_regex(tuple(refusal_markers)).search(out.answer)
        if m:
            return fail("refusal", FallbackReason.CONFIDENCE_LOW, f"refusal marker {m.group(0)!r}")
        checks.append(Check("refusal", True))

    if len(out.answer) > spec.max_output_chars:
        return fail(
            "length", FallbackReason.SCHEMA_INVALID, f"{len(out.answer)} chars > max_output_chars {spec.max_output_chars}"
        )
    if not out.answer.strip():
        return fail("length", FallbackReason.SCHEMA_INVALID, "empty answer")
    checks.append(Check("length", True))

    if spec.grounding_on:
        missing = ungrounded(out.answer, input_text)
        if missing:
            return fail("grounding", FallbackReason.CONFIDENCE_LOW, "not in input: " + ", ".join(missing[:5]))
        checks.append(Check("grounding", True))

    return GateResult(True, None, tuple(checks))


def ungrounded(answer: str, input_text: str) -> list[str]:
    """File names, error codes and identifiers the answer cites that the input never mentions."""
    from smallfirst.logtext import extract_identifiers

    haystack = input_text.casefold()
    # Identifiers are normalised on extraction ("403 Forbidden" -> "HTTP 403"), so a cited one
    # counts as grounded when the input yields it too, or when it appears in the input verbatim.
    known = {i.casefold() for i in extract_identifiers(input_text)}
    return sorted(i for i in extract_identifiers(answer) if i.casefold() not in known and i.casefold() not in haystack)


def _novelty_detail(out: LocalOutput) -> str:
    sim = out.extra.get("similarity") if out.extra else None
    thr = out.extra.get("novelty_threshold") if out.extra else None
    if sim is not None and thr is not None:
        return f"input unlike the head's training data: similarity {sim:.3f} < {thr:.3f}"
    return "input unlike the head's training data"
