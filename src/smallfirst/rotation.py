"""Model rotation: prove a candidate local model in shadow, promote it past the release gate,
roll it back.

A task names `candidate: <model key>` (and `candidate_head:` for an embedding candidate). In
shadow mode the router runs both models and records the candidate's label, route, latency, name
and hash beside the task's own model in every decision. `compare_audit` reads those decisions;
`eval_model` runs the eval harness with the candidate in the task's place; `promote` and
`rollback` rewrite the task's entry in the policy file, editing only the lines they change so the
operator's comments and layout survive.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from smallfirst.audit import open_readonly
from smallfirst.store import dialect_of
from smallfirst.policy import DEFAULT_POLICY_PATH, Policy, parse_policy


class RotationError(Exception):
    """A rotation that cannot be done as asked; the message says why and what to do."""


# ---------------------------------------------------------------- compare


def compare_audit(db_path: str | Path, task: str, *, since_s: float | None = None, usd_per_hour: float = 0.0) -> dict[str, Any]:
    """The decision diff of a task's model and its candidate, from shadow decisions that ran both.

    Reviewed decisions give accuracy: `accept` means the local answer was right (so the candidate
    is right when it would also answer locally with the same label), `escalate` means the request
    had to go to the frontier (so a model is right when its gate would have escalated).
    """
    try:
        conn = open_readonly(db_path)
    except FileNotFoundError as exc:
        raise RotationError(str(exc)) from None
    try:
        if "candidate_model" not in dialect_of(conn).columns(conn, "decisions"):
            rows: list[Any] = []
        else:
            sql = ("SELECT * FROM decisions WHERE task_type = ? AND mode = 'shadow' AND candidate_model IS NOT NULL"
                   " AND ts >= ? ORDER BY ts")
            rows = conn.execute(sql, (task, time.time() - since_s if since_s else 0.0)).fetchall()
    finally:
        conn.close()
    primary_ms = [json.loads(r["latency_ms"])["local"] for r in rows if r["latency_ms"]]
    candidate_ms = [r["candidate_latency_ms"] for r in rows if r["candidate_latency_ms"] is not None]
    both_labelled = [r for r in rows if r["label"] is not None and r["candidate_label"] is not None]
    reviewed = [r for r in rows if r["review_label"] in ("accept", "escalate")]

    def right(r: Any, route: str | None, label: str | None) -> bool:
        if r["review_label"] == "escalate":
            return route == "frontier"
        return route == "local" and label == r["label"]

    return {
        "task": task,
        "n": len(rows),
        "primary_model": _most_common([r["local_model"] for r in rows]),
        "primary_model_sha256": _most_common([r["local_model_sha256"] for r in rows]),
        "candidate_model": _most_common([r["candidate_model"] for r in rows]),
        "candidate_model_sha256": _most_common([r["candidate_model_sha256"] for r in rows]),
        "route_agreement": _rate(sum(1 for r in rows if r["route_candidate"] == r["candidate_route"]), len(rows)),
        "label_agreement": _rate(sum(1 for r in both_labelled if r["label"] == r["candidate_label"]), len(both_labelled)),
        "local_rate": {
            "primary": _rate(sum(1 for r in rows if r["route_candidate"] == "local"), len(rows)),
            "candidate": _rate(sum(1 for r in rows if r["candidate_route"] == "local"), len(rows)),
        },
        "reviewed": len(reviewed),
        "reviewed_accuracy": {
            "primary": _rate(sum(1 for r in reviewed if right(r, r["route_candidate"], r["label"])), len(reviewed)),
            "candidate": _rate(sum(1 for r in reviewed if right(r, r["candidate_route"], r["candidate_label"])), len(reviewed)),
        },
        "latency_ms_p50": {"primary": _p50(primary_ms), "candidate": _p50(candidate_ms)},
        # Local machine time at the policy's local price: what each model costs to run.
        "cost_usd": {
            "primary": round(sum(primary_ms) / 3_600_000 * usd_per_hour, 8),
            "candidate": round(sum(candidate_ms) / 3_600_000 * usd_per_hour, 8),
        },
    }


def _most_common(values: Sequence[str | None]) -> str | None:
    present = [v for v in values if v is not None]
    return max(set(present), key=present.count) if present else None


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _p50(values: Sequence[float]) -> float | None:
    return round(float(np.percentile(values, 50)), 3) if values else None


# ---------------------------------------------------------------- evaluating a model in the task's place


def with_model(policy: Policy, task: str, model: str, head: str | None) -> Policy:
    """A copy of the policy whose task runs on `model`. The task's calibration was fitted to its
    current model's scores, so the copy has none; the copy is live, so the gate decides."""
    spec = policy.tasks[task]
    swapped = spec.model_copy(update={"model": model, "head": head, "calibration": None, "candidate": None, "candidate_head": None})
    rollout = policy.rollout.model_copy(update={"task_modes": {**policy.rollout.task_modes, task: "live"}})
    return policy.model_copy(update={"tasks": {**policy.tasks, task: swapped}, "rollout": rollout})


def eval_model(policy: Policy, task: str, cases: Sequence[Any], *, backends: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The release-gate report of `policy` (typically `with_model(...)`) on eval cases."""
    from smallfirst.evals import build_report, check_kill_switch, run_eval
    from smallfirst.router import Router

    router = Router(policy, backends=dict(backends or {}))
    try:
        results = run_eval(router, task, cases)
    finally:
        router.close()
    return build_report(results, policy.tasks[task], check_kill_switch(policy, task, cases[0].text))


# ---------------------------------------------------------------- promote / rollback: editing the file


def promote(policy_path: str | Path, task: str, cases: Sequence[Any], *, backends: Mapping[str, Any] | None = None) -> tuple[bool, dict[str, Any]]:
    """Evaluate the task's candidate in its place; when the release gate passes, make it the
    task's model in the policy file. Returns (promoted, gate report)."""
    path = _editable(policy_path)
    policy = parse_policy(path.read_text(encoding="utf-8"), source=str(path))
    spec = _task(policy, task)
    if not spec.candidate:
        raise RotationError(f"task {task!r} has no candidate; add `candidate: <model key>` to tasks.{task} in {path}")
    report = eval_model(with_model(policy, task, spec.candidate, spec.candidate_head), task, cases, backends=backends)
    if not report["gate"]["passed"]:
        return False, report
    apply_promotion(path, task, spec.candidate, spec.candidate_head)
    return True, report


def apply_promotion(policy_path: str | Path, task: str, model: str, head: str | None) -> None:
    """Make `model` (with `head`) the task's model in the policy file, keeping the replaced one as
    previous_model. Only for a model that has passed the release gate (`promote`, or
    `smallfirst learn` with `promote: gate`)."""
    path = _editable(policy_path)
    spec = _task(parse_policy(path.read_text(encoding="utf-8"), source=str(path)), task)
    _rewrite(path, task, {
        "model": model,
        "head": head,
        "previous_model": spec.model,
        "previous_head": spec.head,
        "candidate": None,
        "candidate_head": None,
        "calibration": None,  # fitted to the replaced model; rerun `smallfirst calibrate`
    })


def set_candidate(policy_path: str | Path, task: str, model: str, head: str | None) -> None:
    """Make `model` (with `head`) the task's candidate, to be proven in shadow mode and promoted
    with `smallfirst promote`."""
    path = _editable(policy_path)
    _task(parse_policy(path.read_text(encoding="utf-8"), source=str(path)), task)
    _rewrite(path, task, {"candidate": model, "candidate_head": head})


def rollback(policy_path: str | Path, task: str) -> None:
    """Restore the model a promote replaced; the rolled-back model becomes the candidate again,
    so shadow mode keeps measuring it."""
    path = _editable(policy_path)
    spec = _task(parse_policy(path.read_text(encoding="utf-8"), source=str(path)), task)
    if not spec.previous_model:
        raise RotationError(f"task {task!r} has no previous_model in {path}: nothing to roll back")
    _rewrite(path, task, {
        "model": spec.previous_model,
        "head": spec.previous_head,
        "candidate": spec.model,
        "candidate_head": spec.head,
        "previous_model": None,
        "previous_head": None,
    })


def _editable(policy_path: str | Path | None) -> Path:
    if not policy_path:
        raise RotationError("name the policy file with --policy; the bundled policy is read-only (copy it first)")
    path = Path(policy_path)
    if path.resolve() == DEFAULT_POLICY_PATH.resolve():
        raise RotationError(f"{path} is the bundled policy inside the package; copy it and pass the copy with --policy")
    return path


def _task(policy: Policy, task: str) -> Any:
    spec = policy.tasks.get(task)
    if spec is None:
        raise RotationError(f"unknown task {task!r}; {policy.source} has {sorted(policy.tasks)}")
    return spec


def _rewrite(path: Path, task: str, updates: Mapping[str, str | None]) -> None:
    """Validate the edited text as a policy, keep a .bak, and replace the file atomically."""
    old = path.read_text(encoding="utf-8")
    new = edit_task_fields(old, task, updates)
    parse_policy(new, source=str(path))  # raises PolicyError with file:line before anything is written
    path.with_name(path.name + ".bak").write_text(old, encoding="utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


def edit_task_fields(text: str, task: str, updates: Mapping[str, str | None]) -> str:
    """Set (or, with None, remove) one-line keys of `tasks.<task>`, leaving every other line of
    the file as it was. The task must be written in block style."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    tasks = _child(root, "tasks")
    node = _child(tasks, task) if tasks is not None else None
    if not isinstance(node, yaml.MappingNode) or node.flow_style or not node.value:
        raise RotationError(f"tasks.{task} must be a block mapping (one key per line) for rotation to edit it")
    indent = " " * node.value[0][0].start_mark.column
    lines = text.splitlines(keepends=True)
    where = {str(k.value): (k.start_mark.line, v) for k, v in node.value}
    replaced: dict[int, str | None] = {}
    inserted: list[str] = []
    for key, value in updates.items():
        if key in where:
            line, v = where[key]
            if v.end_mark.line != line and not (v.end_mark.line == line + 1 and v.end_mark.column == 0):
                raise RotationError(f"tasks.{task}.{key} spans several lines; write it on one line")
            replaced[line] = None if value is None else f"{indent}{key}: {_scalar(value)}{_comment(lines[line])}\n"
        elif value is not None:
            inserted.append(f"{indent}{key}: {_scalar(value)}\n")
    # New keys go right after the model line, where a reader of the task looks for them.
    anchor = where["model"][0] if "model" in where else node.value[-1][1].end_mark.line - 1
    out: list[str] = []
    for i, line in enumerate(lines):
        out.append(line if i not in replaced else (replaced[i] or ""))
        if i == anchor:
            out.extend(inserted)
    return "".join(out)


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if str(k.value) == key), None)


def _scalar(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z0-9_./-]+", value) else json.dumps(value)


def _comment(line: str) -> str:
    # Keeps a trailing comment on an edited line; a '#' inside a quoted value is not expected in
    # model keys or head paths.
    m = re.search(r"\s+#.*$", line.rstrip("\n"))
    return m.group(0) if m else ""
