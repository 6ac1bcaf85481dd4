"""Eval harness and release gate: every case through the real router, then the numbers.

A case is `{"id", "text", "label"?, "must_escalate"?, "hard_stop"?, "reference"?}` (JSONL).

- false accept: answered locally although it must escalate (must_escalate or hard_stop), or
  answered locally with the wrong label.
- false reject: escalated although the local model ran and its label was right (and the case
  did not have to escalate).
- hard-stop false accept: a must_escalate / hard_stop case that stayed local.

"Answered locally" is the router's route_candidate, so a policy in shadow mode is measured by
what it would have done. Costs: the router's machine time for every local call plus the
frontier for every escalation (estimated from the policy prices when no frontier is configured,
as `smallfirst demo` does); frontier-only is every case at frontier prices. Escalated cases count
as successes (the frontier is the baseline the gate compares against); false accepts do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from smallfirst.calibration import expected_calibration_error, reliability_bins
from smallfirst.jsonl import label_mapping, map_label, read_jsonl
from smallfirst.policy import Policy, TaskSpec
from smallfirst.reasons import FallbackReason
from smallfirst.tasks import Task

# The release gate's bars (issue 4): what a task must show before its local path goes live.
GATE_JSON_VALIDITY = 0.99
GATE_LABEL_ACCURACY = 0.95


class EvalDataError(Exception):
    """Eval data that cannot be used; `str()` names the file and line."""


class _CaseRow(BaseModel):
    # Extra fields (BUMP's "source", ...) are carried by real data files and are ignored.
    model_config = ConfigDict(extra="ignore", strict=True)

    id: str | int | None = None
    text: str
    label: str | None = None
    must_escalate: bool = False
    hard_stop: Literal["security", "access", "production", "novel"] | None = None
    reference: str | None = None


@dataclass(frozen=True)
class EvalCase:
    id: str
    text: str
    label: str | None = None  # after the label map
    must_escalate: bool = False
    hard_stop: str | None = None
    reference: str | None = None
    line: int = 0

    @property
    def escalates(self) -> bool:
        return self.must_escalate or self.hard_stop is not None


def read_cases(path: Path, labels: Sequence[str] = (), label_map: Mapping[str, str] | None = None) -> list[EvalCase]:
    """Parse and check eval JSONL; labels are mapped, then must be labels of the task."""
    mapping = label_mapping(label_map)
    cases: list[EvalCase] = []
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(path, EvalDataError, "eval data"):
        try:
            row = _CaseRow.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise EvalDataError(f"{path}:{lineno}: {where}: {err['msg']}") from None
        label = row.label
        if label is not None and labels:
            label = map_label(label, mapping, labels, f"{path}:{lineno}", EvalDataError)
        case_id = str(row.id) if row.id is not None else f"{Path(path).name}:{lineno}"
        if case_id in seen:
            raise EvalDataError(f"{path}:{lineno}: duplicate id {case_id!r} (first on line {seen[case_id]})")
        seen[case_id] = lineno
        cases.append(EvalCase(case_id, row.text, label, row.must_escalate, row.hard_stop, row.reference, lineno))
    if not cases:
        raise EvalDataError(f"{path}: no cases")
    return cases


@dataclass(frozen=True)
class CaseResult:
    case: EvalCase
    accepted: bool  # the router answered (or, in shadow, would have answered) locally
    route: str
    reason: str | None
    label: str | None
    confidence: float | None
    latency_ms: float
    local_ran: bool
    json_valid: bool | None  # schema tasks: did the local answer pass the schema check
    hard_stop: str | None  # category the router matched, if any
    cost_usd: float
    frontier_only_cost_usd: float

    @property
    def label_correct(self) -> bool | None:
        if self.case.label is None or not self.local_ran:
            return None
        return self.label == self.case.label

    @property
    def false_accept(self) -> bool:
        return self.accepted and (self.case.escalates or self.label_correct is False)

    @property
    def false_reject(self) -> bool:
        return not self.accepted and not self.case.escalates and self.label_correct is True


def run_eval(
    router: Any,
    task_type: str,
    cases: Sequence[EvalCase],
    *,
    group: str = "default",
    progress: Callable[[int, int], None] | None = None,
) -> list[CaseResult]:
    """Route every case through `router` (a real Router) and keep what the numbers need."""
    from smallfirst.router import InputRejected

    out: list[CaseResult] = []
    for i, case in enumerate(cases, 1):
        try:
            r = router.route(Task(input=case.text, task_type=task_type, task_id=case.id, user_group=group))
        except InputRejected as exc:
            r = exc.result
            if r is None:
                raise
        schema = next((c for c in r.checks if c.name == "schema"), None)
        out.append(
            CaseResult(
                case=case,
                accepted=r.route_candidate == "local" and r.route != "rejected",
                route=r.route,
                reason=r.reason.value if r.reason else None,
                label=r.label,
                confidence=r.confidence,
                latency_ms=r.latency_ms,
                local_ran=r.local is not None,
                json_valid=None if schema is None and r.local is None else (schema.ok if schema else False),
                hard_stop=r.hard_stop.category if r.hard_stop else None,
                cost_usd=r.cost_usd + (r.frontier_only_cost_usd if r.route != "local" and r.frontier is None else 0.0),
                frontier_only_cost_usd=r.frontier_only_cost_usd,
            )
        )
        if progress is not None:
            progress(i, len(cases))
    return out


def check_kill_switch(policy: Policy, task_type: str, text: str) -> tuple[bool, str]:
    """Route one case with the kill switch thrown on a copy of the policy: it must leave the
    local path with manual_override before any model runs."""
    from smallfirst.router import Router

    killed = policy.model_copy(update={"rollout": policy.rollout.model_copy(update={"kill_switch": True})})

    class _MustNotRun:
        name, sha256 = "kill-switch-probe", None

        async def complete(self, text: str, spec: TaskSpec) -> Any:
            raise AssertionError("the local model ran with the kill switch on")

    spec = policy.tasks.get(task_type)
    probe = {spec.model: _MustNotRun()} if spec and spec.model else {}
    router = Router(killed, backends=probe)
    try:
        r = router.route(Task(input=text, task_type=task_type, user_group="default"))
    finally:
        router.close()
    ok = r.reason is FallbackReason.MANUAL_OVERRIDE and r.route != "local" and r.local is None
    return ok, f"route {r.route}, reason {r.reason.value if r.reason else None}"


def _pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def build_report(results: Sequence[CaseResult], spec: TaskSpec, kill_switch: tuple[bool, str]) -> dict[str, Any]:
    n = len(results)
    accepted = [r for r in results if r.accepted]
    labelled = [r for r in results if r.label_correct is not None]
    labelled_accepted = [r for r in labelled if r.accepted]
    low_risk_accepted = [r for r in labelled_accepted if not r.case.escalates]
    json_checked = [r for r in results if r.json_valid is not None] if spec.kind == "json" else []
    scored = [r for r in labelled if r.confidence is not None]
    probs = np.array([r.confidence for r in scored], dtype=np.float64)
    correct = np.array([bool(r.label_correct) for r in scored])
    failures = sum(1 for r in results if r.false_accept)
    successes = n - failures
    router_cost = sum(r.cost_usd for r in results)
    frontier_cost = sum(r.frontier_only_cost_usd for r in results)

    json_validity = _rate(sum(1 for r in json_checked if r.json_valid), len(json_checked))
    acc_low_risk = _rate(sum(1 for r in low_risk_accepted if r.label_correct), len(low_risk_accepted))
    hs_false = [r.case.id for r in results if r.accepted and r.case.escalates]
    checks = [
        _gate_check("json_validity", ">= 99% (schema tasks)", json_validity,
                    None if spec.kind != "json" else (json_validity is not None and json_validity >= GATE_JSON_VALIDITY)),
        _gate_check("label_accuracy_accepted_low_risk", ">= 95% on accepted low-risk cases", acc_low_risk,
                    None if not spec.labels or acc_low_risk is None else acc_low_risk >= GATE_LABEL_ACCURACY),
        _gate_check("hard_stop_false_accepts", "0", len(hs_false), not hs_false),
        _gate_check("kill_switch", "present and working", kill_switch[1], kill_switch[0]),
    ]
    by_reason: dict[str, int] = {}
    for r in results:
        key = r.reason or "accepted"
        by_reason[key] = by_reason.get(key, 0) + 1
    return {
        "task": spec.name,
        "n": n,
        "local_acceptance_rate": _rate(len(accepted), n),
        "label_accuracy": _rate(sum(1 for r in labelled if r.label_correct), len(labelled)),
        "label_accuracy_accepted": _rate(sum(1 for r in labelled_accepted if r.label_correct), len(labelled_accepted)),
        "label_accuracy_accepted_low_risk": acc_low_risk,
        "json_validity": json_validity,
        # Listed first in every rendering: these are the cases that would have hurt someone.
        "false_accepts": [r.case.id for r in results if r.false_accept],
        "hard_stop_false_accepts": hs_false,
        "false_rejects": [r.case.id for r in results if r.false_reject],
        "counts": {
            "accepted": len(accepted),
            "local_ran": sum(1 for r in results if r.local_ran),
            "labelled": len(labelled),
            "must_escalate": sum(1 for r in results if r.case.escalates),
            "hard_stopped": sum(1 for r in results if r.hard_stop),
        },
        "reasons": dict(sorted(by_reason.items(), key=lambda kv: -kv[1])),
        "ece": round(expected_calibration_error(probs, correct), 4) if len(scored) else None,
        "reliability": reliability_bins(probs, correct) if len(scored) else [],
        "latency_ms": {
            "local": {"p50": _pct([r.latency_ms for r in accepted], 50), "p95": _pct([r.latency_ms for r in accepted], 95)},
            "escalated": {
                "p50": _pct([r.latency_ms for r in results if not r.accepted], 50),
                "p95": _pct([r.latency_ms for r in results if not r.accepted], 95),
            },
        },
        "cost_usd": {"router": round(router_cost, 6), "frontier_only": round(frontier_cost, 6)},
        "cost_per_success": {
            "router": round(router_cost / successes, 8) if successes else None,
            "frontier_only": round(frontier_cost / n, 8) if n else None,
        },
        "gate": {"passed": all(c["passed"] is not False for c in checks), "checks": checks},
    }


def breakdown(results: Sequence[CaseResult], group_of: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per group of cases (`group_of`: case id -> a field of its data row, e.g. its ecosystem):
    how many, how many answered locally, how many of those right, false accepts, and cases that
    had to escalate but did not. Groups by size, then name; cases without the field are "-"."""
    groups: dict[str, list[CaseResult]] = {}
    for r in results:
        groups.setdefault(str(group_of.get(r.case.id) or "-"), []).append(r)
    rows = []
    for name, rs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        acc = [r for r in rs if r.accepted]
        right = sum(1 for r in acc if r.label_correct)
        rows.append({"group": name, "n": len(rs), "accepted": len(acc), "local_rate": _rate(len(acc), len(rs)),
                     "correct_accepted": right, "accuracy_accepted": _rate(right, len(acc)),
                     "false_accepts": sum(1 for r in rs if r.false_accept),
                     "must_escalate_accepted": sum(1 for r in acc if r.case.escalates)})
    return rows


def format_breakdown(field: str, rows: Sequence[Mapping[str, Any]]) -> str:
    width = max([len(field), 5, *(len(r["group"]) for r in rows)])
    lines = [f"  {field:<{width}} {'n':>5} {'local':>13} {'accuracy on local':>18} {'false accepts':>14} {'must-escalate accepted':>23}"]
    keys = ("n", "accepted", "correct_accepted", "false_accepts", "must_escalate_accepted")
    for r in rows:
        lines.append(_breakdown_line(width, r["group"], *(r[k] for k in keys)))
    lines.append(_breakdown_line(width, "total", *(sum(r[k] for r in rows) for k in keys)))
    return "\n".join(lines)


def _breakdown_line(width: int, name: str, n: int, accepted: int, right: int, false_accepts: int, must: int) -> str:
    local = f"{accepted} ({_fmt(_rate(accepted, n))})"
    accuracy = f"{right}/{accepted} ({_fmt(_rate(right, accepted))})" if accepted else "-"
    return f"  {name:<{width}} {n:>5} {local:>13} {accuracy:>18} {false_accepts:>14} {must:>23}"


def _gate_check(name: str, bar: str, value: Any, passed: bool | None) -> dict[str, Any]:
    # passed None: the bar does not apply to this task (e.g. JSON validity for a classifier).
    return {"name": name, "bar": bar, "value": value, "passed": passed}


# ---------------------------------------------------------------- rendering


def format_text(report: Mapping[str, Any]) -> str:
    lines = [f"eval {report['task']}: {report['n']} cases"]
    if report["false_accepts"]:
        lines.append(f"  FALSE ACCEPTS ({len(report['false_accepts'])}): " + ", ".join(report["false_accepts"][:50]))
    if report["hard_stop_false_accepts"]:
        lines.append("  HARD-STOP FALSE ACCEPTS: " + ", ".join(report["hard_stop_false_accepts"][:50]))
    lines += [
        f"  local acceptance {_fmt(report['local_acceptance_rate'])}   label accuracy {_fmt(report['label_accuracy'])}"
        f" (accepted {_fmt(report['label_accuracy_accepted'])})   JSON validity {_fmt(report['json_validity'])}",
        f"  false rejects {len(report['false_rejects'])}   ECE {report['ece']}   reasons {report['reasons']}",
        f"  latency ms local p50/p95 {report['latency_ms']['local']['p50']}/{report['latency_ms']['local']['p95']}"
        f"   escalated p50/p95 {report['latency_ms']['escalated']['p50']}/{report['latency_ms']['escalated']['p95']}",
        f"  cost per successful task: router ${report['cost_per_success']['router']} vs frontier-only "
        f"${report['cost_per_success']['frontier_only']}",
        "  release gate: " + ("PASS" if report["gate"]["passed"] else "FAIL"),
    ]
    for c in report["gate"]["checks"]:
        mark = {True: "pass", False: "FAIL", None: "n/a "}[c["passed"]]
        lines.append(f"    [{mark}] {c['name']:<34} {c['bar']:<36} {c['value']}")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def reliability_svg(bins: Sequence[Mapping[str, Any]], size: int = 240) -> str:
    """A reliability diagram as inline SVG (no plotting library): one bar per confidence bin at
    its accuracy, the diagonal is perfect calibration."""
    pad = 30
    w = size - 2 * pad
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" aria-label="reliability diagram">',
        f'<rect x="{pad}" y="{pad}" width="{w}" height="{w}" fill="none" stroke="#999"/>',
        f'<line x1="{pad}" y1="{pad + w}" x2="{pad + w}" y2="{pad}" stroke="#bbb" stroke-dasharray="4"/>',
    ]
    for b in bins:
        if not b["n"]:
            continue
        x = pad + b["lo"] * w
        h = b["accuracy"] * w
        parts.append(
            f'<rect x="{x:.1f}" y="{pad + w - h:.1f}" width="{(b["hi"] - b["lo"]) * w - 1:.1f}" height="{h:.1f}" '
            f'fill="#4a7ab5"><title>{b["lo"]:.1f}-{b["hi"]:.1f}: n={b["n"]}, accuracy {b["accuracy"]:.3f}, '
            f'confidence {b["confidence"]:.3f}</title></rect>'
        )
    parts += [
        f'<text x="{pad + w / 2}" y="{size - 6}" font-size="11" text-anchor="middle">confidence</text>',
        f'<text x="10" y="{pad + w / 2}" font-size="11" transform="rotate(-90 10 {pad + w / 2})" text-anchor="middle">accuracy</text>',
        "</svg>",
    ]
    return "".join(parts)


def format_html(report: Mapping[str, Any]) -> str:
    from html import escape

    def row(*cells: Any, tag: str = "td") -> str:
        return "<tr>" + "".join(f"<{tag}>{escape(str(c))}</{tag}>" for c in cells) + "</tr>"

    gate = "".join(
        row(c["name"], c["bar"], c["value"], {True: "pass", False: "FAIL", None: "n/a"}[c["passed"]]) for c in report["gate"]["checks"]
    )
    summary = "".join(
        row(k, report[k])
        for k in ("n", "local_acceptance_rate", "label_accuracy", "label_accuracy_accepted", "json_validity", "ece")
    )
    lat = report["latency_ms"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>smallfirst eval: {escape(report['task'])}</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}}td,th{{padding:2px 8px;text-align:left}}
.bad{{color:#b00}}</style></head><body>
<h1>smallfirst eval: {escape(report['task'])}</h1>
<h2 class="bad">False accepts ({len(report['false_accepts'])})</h2><p>{escape(', '.join(report['false_accepts']) or 'none')}</p>
<h2 class="bad">Hard-stop false accepts ({len(report['hard_stop_false_accepts'])})</h2>
<p>{escape(', '.join(report['hard_stop_false_accepts']) or 'none')}</p>
<h2>Release gate: {'PASS' if report['gate']['passed'] else 'FAIL'}</h2>
<table>{row('bar', 'required', 'value', 'result', tag='th')}{gate}</table>
<h2>Summary</h2><table>{summary}</table>
<p>Latency ms: local p50 {lat['local']['p50']} / p95 {lat['local']['p95']}; escalated p50 {lat['escalated']['p50']} /
p95 {lat['escalated']['p95']}. Cost per successful task: router ${report['cost_per_success']['router']},
frontier-only ${report['cost_per_success']['frontier_only']}.</p>
<h2>Calibration (ECE {report['ece']})</h2>{reliability_svg(report['reliability'])}
<h2>False rejects ({len(report['false_rejects'])})</h2><p>{escape(', '.join(report['false_rejects']) or 'none')}</p>
<h2>Reasons</h2><table>{''.join(row(k, v) for k, v in report['reasons'].items())}</table>
</body></html>
"""


# ---------------------------------------------------------------- calibrate (offline: scikit-learn, scipy)


@dataclass(frozen=True)
class RawScores:
    """Per case: the local model's raw score, whether its label was right, and whether the gate
    could accept it at all (no hard stop, no escalating label, not novel)."""

    raw: np.ndarray
    correct: np.ndarray
    must_escalate: np.ndarray
    eligible: np.ndarray
    source: str  # how the scores were obtained, for provenance


def data_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def raw_scores(
    policy: Policy,
    spec: TaskSpec,
    cases: Sequence[EvalCase],
    data_hash: str,
    *,
    backend: Any = None,
    folds: int = 5,
    seed: int = 0,
) -> RawScores:
    """Raw scores a model did not train on.

    When the task's trained head was fitted on this very file (its provenance data_sha256), its
    own scores would be in-sample and far too confident; the head is then refitted per fold with
    train.py's machinery (nested choice of C, the same text window and novelty percentile), so
    every case is scored by a model that never saw it. Any other data is scored by the task's
    local model as deployed.
    """
    from smallfirst.hardstops import HardStops

    stops = HardStops.from_policy(policy)
    stopped = np.array([stops.first(c.text) is not None for c in cases])
    must = np.array([c.escalates for c in cases])
    head = None
    if spec.head:
        from smallfirst.backends.embedding import shared_encoder
        from smallfirst.heads import load_head

        head = load_head(policy.resolve_path(spec.head), embedding_sha256=shared_encoder().sha256)
    if head is not None and data_hash in [f.get("sha256") for f in head.provenance.get("data_files", [])]:
        raise EvalDataError("this file is part of the data the task's head was trained on (with others): "
                            "calibrate on data it was not trained on")
    if head is not None and head.provenance.get("data_sha256") == data_hash:
        from smallfirst.backends.embedding import embed_texts
        from smallfirst.train import _out_of_fold, prepare_text

        unknown = [c for c in cases if c.label not in head.labels]
        if unknown:
            raise EvalDataError(f"case {unknown[0].id} (line {unknown[0].line}): label {unknown[0].label!r} is not a label the head was trained on {list(head.labels)}")
        prepared = [prepare_text(c.text, spec) for c in cases]
        x, _ = embed_texts(shared_encoder(), prepared, head.window)
        y = np.array([head.labels.index(c.label) for c in cases])
        words = None
        if head.reads_words:
            from smallfirst.lexical import Rows, bucket_counts, counts_matrix

            words = counts_matrix(Rows.of([bucket_counts(t) for t in prepared]))
        oof = _out_of_fold(x.astype(np.float64), y, len(head.labels), folds, seed, words=words,
                           neighbours=head.neighbours)
        pred = oof.probs.argmax(axis=1)
        novel = oof.similarity < np.percentile(oof.similarity, head.novelty.percentile)
        escalating = np.array([head.labels[p] in spec.escalate_labels for p in pred])
        return RawScores(
            raw=oof.probs.max(axis=1),
            correct=(pred == y) & ~must,
            must_escalate=must,
            eligible=~stopped & ~novel & ~escalating,
            source=f"out-of-fold: the head was trained on this file, so it was refitted per fold ({folds} folds, seed {seed})",
        )
    import asyncio

    from smallfirst.router import LOCAL_INPUT_BUDGET

    if backend is None:
        from smallfirst.backends.providers import make_backend

        assert spec.model is not None
        backend = make_backend(policy.models[spec.model], policy)
    raw, correct, eligible = [], [], []
    loop = asyncio.new_event_loop()
    try:
        for c, stop in zip(cases, stopped):
            text = c.text
            if spec.compress_on:
                from smallfirst.logtext import compress_log

                text = compress_log(text, LOCAL_INPUT_BUDGET).text
            out = loop.run_until_complete(backend.complete(text, spec))
            raw.append(out.confidence_raw if out.confidence_raw is not None else 0.0)
            correct.append(out.label == c.label and not c.escalates)
            eligible.append(not stop and not out.novel and out.label not in spec.escalate_labels and out.confidence_raw is not None)
    finally:
        loop.close()
    return RawScores(np.array(raw), np.array(correct), must, np.array(eligible),
                     source="the task's local model as deployed, on data its head was not trained on")


def calibrate_task(
    scores: RawScores,
    *,
    max_false_accept: float,
    confidence_level: float,
    seed: int = 0,
) -> tuple[Any, Any, str]:
    """Fit the calibrator (kind by held-out log loss) and choose the threshold."""
    from smallfirst.calibration import choose_threshold, fit_calibrator, select_calibrator_kind

    kind = "identity"
    if min(int(scores.correct.sum()), int((~scores.correct).sum())) >= 2:
        kind = select_calibrator_kind(scores.raw, scores.correct, ("platt", "isotonic", "temperature"), seed=seed)
    cal = fit_calibrator(scores.raw, scores.correct, kind)  # type: ignore[arg-type]
    conf = cal.apply(scores.raw)
    choice = choose_threshold(
        conf, ~scores.correct, scores.eligible, max_false_accept=max_false_accept, confidence_level=confidence_level
    )
    return cal, choice, kind
