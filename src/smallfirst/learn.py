"""`smallfirst learn`: train a candidate head from what the frontier taught, prove it, hand it over.

One run, for one task:

    1 purge      examples past their retention are deleted first
    2 gather     the current head's own training embeddings (its base data, from its .npz) and
                 the kept examples embedded by the same encoder and window (re-embedded from
                 their masked text when kept and the encoder changed); a reviewer's label
                 overrides the frontier's
    3 hold back  the most recent HOLDOUT_FRACTION of kept examples: the candidate never trains on
                 them, and being the newest they are the fairest test of what comes next
    4 fit        train.fit_head on base + the older kept examples, as `smallfirst train` fits
    5 evaluate   the release gate (evals.build_report) on the held-back slice and on the base
                 data's out-of-fold predictions, and a Clopper-Pearson upper bound on the
                 false-accept rate among accepted cases of both, at the threshold it would serve at
    6 hand over  passed: the head is written and becomes the task's candidate_head (shadow it,
                 `smallfirst compare`, `smallfirst promote`), or with `learn: {promote: gate}`
                 the task's head, through rotation.apply_promotion; failed: only its report is
                 written and the current head keeps serving
    7 record     every run, whatever its outcome, in learn_runs (and the audit's admin_events)

The evaluation works on embeddings, not text (the store may hold none): each held-back example
goes through what the gate does after the hard stops (novelty, escalate_labels, confidence); an
example whose decision was hard-stopped counts as escalated, because the same text stops again.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from smallfirst.heads import STOPS, Head, HeadError, load_head
from smallfirst.learn_store import LearnStore, StoredExample
from smallfirst.policy import LearnSpec, Policy, PolicyError, TaskSpec, load_policy

HOLDOUT_FRACTION = 0.2
CONFIDENCE_LEVEL = 0.95  # of the Clopper-Pearson bound
Outcome = Literal["promoted", "candidate", "rejected", "too_little_data", "failed"]


class LearnError(Exception):
    """A learn run that cannot start or finish; the message says why. Nothing was changed."""


@dataclass(frozen=True)
class LearnResult:
    task: str
    outcome: Outcome
    message: str
    head: str | None = None  # the candidate head, relative to the policy file
    report: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None

    @property
    def changed_policy(self) -> bool:
        return self.outcome in ("promoted", "candidate")


@dataclass(frozen=True)
class _Data:
    x: np.ndarray  # (n, 384)
    labels: list[str]  # label name per row
    origin: np.ndarray  # 0 base, 1 learned
    ids: list[str]
    hard_stop: list[str | None]
    words: list[Mapping[int, float]] | None = None  # hashed word counts, for a head that reads words


# ---------------------------------------------------------------------- the run


def run_learn(
    policy_path: str | Path,
    task: str,
    store: LearnStore,
    *,
    audit_path: str | Path | None = None,
    now: float | None = None,
    folds: int = 5,
    seed: int = 0,
    encoder: Any = None,
    command: str | None = None,
) -> LearnResult:
    """One learn run for `task` (see the module docstring). LearnError when it cannot run at
    all (bad policy, corrupt head); every run that gets going is recorded in `store`."""
    from smallfirst.rotation import RotationError, _editable

    now = time.time() if now is None else now
    try:
        path = _editable(policy_path)
    except RotationError as exc:
        raise LearnError(f"learn hands its candidate over by editing the policy file: {exc}") from None
    try:
        policy = load_policy(path)
    except PolicyError as exc:  # a corrupt head fails here too: the policy check loads every head
        store.record_run(task, "failed", head=None, head_sha256=None, message=str(exc), detail={}, ts=now)
        raise LearnError(f"policy error: {exc}") from None
    spec = policy.tasks.get(task)
    if spec is None:
        raise LearnError(f"unknown task {task!r}; {path} has {sorted(policy.tasks)}")
    if not spec.labels or spec.model is None or policy.models[spec.model].provider != "embedding":
        raise LearnError(f"task {task!r}: learn trains a classifier head, so the task needs labels and an "
                         "embedding model (provider: embedding)")
    learn = spec.learn or LearnSpec()
    started = time.time()
    try:
        result = _run(policy, path, spec, learn, store, audit_path, now, folds, seed, encoder)
    except LearnError as exc:
        store.record_run(task, "failed", head=None, head_sha256=None, message=str(exc), detail={}, ts=now)
        raise
    detail = {**result.report, "seconds": round(time.time() - started, 1),
              "command": command if command is not None else shlex.join(sys.argv)}
    run_id = store.record_run(task, result.outcome, head=result.head, head_sha256=detail.get("head_sha256"),
                              message=result.message, detail=detail, ts=now)
    if _audit_exists(audit_path):
        _record_admin_event(audit_path, task, result, policy, path)
    return LearnResult(task, result.outcome, result.message, result.head, detail, run_id)


def _run(policy: Policy, path: Path, spec: TaskSpec, learn: LearnSpec, store: LearnStore,
         audit_path: str | Path | None, now: float, folds: int, seed: int, encoder: Any) -> LearnResult:
    from smallfirst.backends.embedding import embedding_identity
    from smallfirst.heads import DEFAULT_WINDOW

    task = spec.name
    purged = store.purge(task, now, learn.retention_days)
    encoder = encoder or _encoder(policy, policy.models[spec.model or ""])
    sha = encoder.sha256  # what serves the head: the int8 graph's hash for the bundled model
    current = _current_head(policy, spec, sha)
    window = current.window if current is not None else DEFAULT_WINDOW
    identity = embedding_identity(sha, window)

    # A head that reads words learns one that does too; with no head yet, a log task's does.
    reads_words = current.reads_words if current is not None else spec.compress_on
    kept, counts = _kept_examples(store.examples(task), spec, audit_path, identity, reads_words)
    counts["purged"] = purged
    to_embed = [i for i, (e, _) in enumerate(kept) if e.embedding is None or e.embedding_identity != identity]
    if to_embed:
        vectors = _embed([kept[i][0].text or "" for i in to_embed], spec, window, encoder)
        for i, v in zip(to_embed, vectors):
            kept[i] = (_with_embedding(kept[i][0], v, identity), kept[i][1])
        counts["re_embedded"] = len(to_embed)
    if reads_words:
        from smallfirst.lexical import bucket_counts
        from smallfirst.train import prepare_text

        for i, (e, lbl) in enumerate(kept):
            if e.words is None:  # kept before its words were stored: its masked text has them
                kept[i] = (StoredExample(**{**e.__dict__, "words": bucket_counts(prepare_text(e.text or "", spec))}), lbl)
    base = _base_data(current, reads_words)
    report: dict[str, Any] = {"counts": counts, "base": len(base.labels), "current_head": spec.head,
                              "identity": identity}
    if len(kept) < learn.min_examples:
        msg = (f"too little data: {len(kept)} usable kept examples for {task}, learn needs {learn.min_examples} "
               f"(learn.min_examples); the current head keeps serving")
        return LearnResult(task, "too_little_data", msg, report=report)

    n_hold = max(1, int(round(len(kept) * HOLDOUT_FRACTION)))
    older, held = kept[:-n_hold], kept[-n_hold:]
    train = _concat(base, older)
    per_label = Counter(train.labels)
    labels = [lbl for lbl in spec.labels if per_label[lbl] >= folds]
    waiting = {lbl: n for lbl, n in per_label.items() if 0 < n < folds}
    report.update(held_back=len(held), trained_on={"base": len(base.labels), "learned": len(older)}, waiting=waiting)
    if len(labels) < 2:
        msg = (f"too little data: a head needs two labels with at least {folds} examples each; have "
               f"{dict(per_label)}; the current head keeps serving")
        return LearnResult(task, "too_little_data", msg, report=report)
    keep = np.array([lbl in labels for lbl in train.labels])

    from smallfirst.train import fit_head, gate_report

    y = np.array([labels.index(lbl) for lbl, k in zip(train.labels, keep) if k])
    words = None
    if train.words is not None:
        from smallfirst.lexical import Rows

        words = Rows.of([w for w, k in zip(train.words, keep) if k])
    fit = fit_head(train.x[keep], y, labels, task=task, embedding_sha256=sha, window=window,
                   origin=train.origin[keep], folds=folds, seed=seed, words=words)
    floor = _head_floor(spec, fit, y, keep, train, learn)
    assert fit.head.examples is not None
    stops = np.array([STOPS.index(s or "") for s, k in zip(train.hard_stop, keep) if k], dtype=np.int64)
    candidate = replace(fit.head, min_confidence=floor["threshold"], examples=replace(fit.head.examples, stop=stops))
    report["head_min_confidence"] = floor

    held_x = np.stack([e.embedding for e, _ in held]).astype(np.float32)
    held_words = [e.words or {} for e, _ in held] if reads_words else None
    held_gold = [lbl for _, lbl in held]
    held_stop = [e.hard_stop for e, _ in held]
    held_ids = [e.decision_id for e, _ in held]
    evaluation = _evaluate(policy, spec, candidate, fit, y, keep, train, held_x, held_words, held_gold, held_stop,
                           held_ids, learn)
    if current is not None:
        evaluation["current_on_held_back"] = _summary(
            _cases_from_head(current, spec, held_x, held_words, held_gold, held_stop, held_ids))
    report.update(evaluation)
    report["cv"] = gate_report(fit, y, spec, ids=[i for i, k in zip(train.ids, keep) if k], out=path, folds=folds,
                               seed=seed).to_dict()

    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    heads_dir = policy.base_dir() / "heads"
    out = heads_dir / f"{task}.learned-{stamp}.json"
    out_report = out.with_suffix(".report.json")
    heads_dir.mkdir(parents=True, exist_ok=True)
    if not evaluation["passed"]:
        report["report_file"] = str(out_report)
        _write_json(out_report, report)
        msg = f"candidate failed: {evaluation['why']}; the current head keeps serving (report {out_report})"
        return LearnResult(task, "rejected", msg, report=report)

    from smallfirst.heads import write_head
    from smallfirst.rotation import apply_promotion, set_candidate

    candidate = replace(candidate, cv=report["cv"], provenance={
        "learned_from": spec.head, "learned_from_sha256": current.content_sha256 if current else None,
        "base": len(base.labels), "learned": len(older), "held_back": len(held),
        "held_back_ids": held_ids, "label_counts": dict(Counter(lbl for lbl, k in zip(train.labels, keep) if k)),
        "compressed": spec.compress_on, "folds": folds, "seed": seed, "policy_source": str(path),
        "created": datetime.fromtimestamp(now, timezone.utc).replace(microsecond=0).isoformat(),
    })
    written = write_head(candidate, out)
    rel = os.path.relpath(out, policy.base_dir())
    report.update(head=rel, head_sha256=written.content_sha256, report_file=str(out_report))
    _write_json(out_report, report)
    if learn.promote == "gate":
        apply_promotion(path, task, spec.model or "", rel)
        return LearnResult(task, "promoted", f"promoted {rel} for {task}: it passed the release gate "
                           f"(previous head kept as previous_head)", rel, report)
    set_candidate(path, task, spec.model or "", rel)
    return LearnResult(task, "candidate", f"{rel} is now the candidate_head of {task}: run the task in shadow mode, "
                       f"then `smallfirst compare` and `smallfirst promote`", rel, report)


# ---------------------------------------------------------------------- gathering


def _current_head(policy: Policy, spec: TaskSpec, sha: str) -> Head | None:
    if not spec.head:
        return None
    p = policy.resolve_path(spec.head)
    try:
        head = load_head(p, embedding_sha256=sha)
    except HeadError as exc:
        raise LearnError(f"the task's current head cannot be used: {exc}") from None
    if head.examples is None:
        raise LearnError(f"{p} is a {head.format} head without its training embeddings; retrain it with "
                         "`smallfirst train` (it writes them beside the head), then learn can add to it")
    return head


def _base_data(head: Head | None, reads_words: bool) -> _Data:
    if head is None or head.examples is None:
        return _Data(np.zeros((0, 384), np.float32), [], np.zeros(0, np.int64), [], [], [] if reads_words else None)
    base = head.examples.base
    words = [base.lex.row(i) for i in range(len(base))] if reads_words and base.lex is not None else None
    return _Data(base.x, [head.labels[i] for i in base.y], base.origin, [f"base:{i}" for i in range(len(base))],
                 base.hard_stops(), words)


def _kept_examples(rows: Sequence[StoredExample], spec: TaskSpec, audit_path: str | Path | None,
                   identity: str, reads_words: bool = False) -> tuple[list[tuple[StoredExample, str]], dict[str, int]]:
    """(example, label) pairs a head can train on, oldest first, and counts of the rest."""
    reviewed: dict[str, str] = {}
    if _audit_exists(audit_path):
        from smallfirst.review import review_labels

        reviewed = review_labels(audit_path, spec.name)
    counts = Counter(stored=len(rows))
    out = []
    for e in rows:
        label = reviewed.get(e.decision_id) or e.label
        if e.decision_id in reviewed:
            counts["reviewed"] += 1
        if label is None:
            counts["invalid_label"] += 1  # the frontier named no label, and no reviewer did
            continue
        if label not in spec.labels:
            counts["label_not_in_task"] += 1
            continue
        usable = (e.embedding is not None and e.embedding_identity == identity) or e.text is not None
        if not usable:
            counts["other_encoder"] += 1  # another encoder's vector and no text to re-embed
            continue
        if reads_words and e.words is None and e.text is None:
            counts["no_words"] += 1  # the head reads words, and neither they nor the text were kept
            continue
        out.append((e, label))
    counts["usable"] = len(out)
    return out, dict(counts)


def _encoder(policy: Policy, model_spec: Any) -> Any:
    """The encoder the task's model serves with (EmbeddingBackend's choice), so kept examples,
    the head's base data and the candidate are all read by one encoder."""
    from smallfirst.backends.embedding import shared_encoder

    if model_spec.path:
        return shared_encoder(policy.resolve_path(model_spec.path), model_spec.sha256, model_spec.threads)
    return shared_encoder(threads=model_spec.threads)


def _embed(texts: list[str], spec: TaskSpec, window: Any, encoder: Any) -> np.ndarray:
    from smallfirst.backends.embedding import embed_texts
    from smallfirst.train import prepare_text

    x, _ = embed_texts(encoder, [prepare_text(t, spec) for t in texts], window)
    return x


def _audit_exists(audit_path: str | Path | None) -> bool:
    """An audit store to read reviews from and record the run in: a PostgreSQL URL, or an
    existing SQLite file (a learn run never creates one)."""
    from smallfirst.store import is_postgres

    return bool(audit_path) and (is_postgres(audit_path) or Path(audit_path).exists())  # type: ignore[arg-type]


def _with_embedding(e: StoredExample, v: np.ndarray, identity: str) -> StoredExample:
    return StoredExample(**{**e.__dict__, "embedding": v, "embedding_identity": identity})


def _concat(base: _Data, kept: Sequence[tuple[StoredExample, str]]) -> _Data:
    if not kept:
        return base
    x = np.vstack([base.x, np.stack([e.embedding for e, _ in kept]).astype(np.float32)])
    return _Data(x, base.labels + [lbl for _, lbl in kept],
                 np.concatenate([base.origin, np.ones(len(kept), np.int64)]),
                 base.ids + [e.decision_id for e, _ in kept], base.hard_stop + [e.hard_stop for e, _ in kept],
                 None if base.words is None else base.words + [e.words or {} for e, _ in kept])


# ---------------------------------------------------------------------- evaluating


def _head_floor(spec: TaskSpec, fit: Any, y: np.ndarray, keep: np.ndarray, train: _Data,
                learn: LearnSpec) -> dict[str, Any]:
    """The lowest threshold at which the candidate's answers on inputs like its learned examples
    (the nearest training embedding is a learned one) keep the false-accept bound:
    calibrate's fixed-sequence Clopper-Pearson test on the out-of-fold predictions of the
    training examples whose nearest other example is learned (the held-back slice stays unseen
    for the evaluation). Its confidence is calibrated on all its training data, which the base
    data dominates; this floor keeps it honest on the new kind. None: no threshold reaches the
    bound, so the candidate would answer that kind on the policy's threshold alone (and is not
    handed over)."""
    from smallfirst.calibration import choose_threshold

    sel = fit.nearest_learned
    labels = fit.head.labels
    if not sel.any():
        return {"threshold": None, "n": 0, "why": "no learned examples in training"}
    pred = fit.pred[sel]
    conf = fit.head.calibrator.apply(fit.probs[sel].max(axis=1))
    gold = [labels[i] for i in y[sel]]
    escalating = np.array([labels[p] in spec.escalate_labels for p in pred], dtype=bool)
    bad = np.array([labels[p] != g or g in spec.escalate_labels for p, g in zip(pred, gold)], dtype=bool)
    eligible = ~fit.novel[sel] & ~escalating
    # Learned examples are many and noisier than a curated eval set: one confident mistake among
    # the first ~60 must not end the search (it did on 5 of 7 runs of bench/learning_curve.py).
    choice = choose_threshold(conf, bad, eligible, max_false_accept=learn.max_false_accept,
                              confidence_level=CONFIDENCE_LEVEL, tolerate=1)
    return {"threshold": choice.threshold, "n": int(sel.sum()), "accepted": choice.accepted,
            "false_accepts": choice.false_accepts,
            "upper_bound": None if choice.upper_bound is None else round(choice.upper_bound, 5)}


def _evaluate(policy: Policy, spec: TaskSpec, candidate: Head, fit: Any, y: np.ndarray, keep: np.ndarray,
              train: _Data, held_x: np.ndarray, held_words: list[Mapping[int, float]] | None, held_gold: list[str],
              held_stop: list[str | None], held_ids: list[str], learn: LearnSpec) -> dict[str, Any]:
    from smallfirst.calibration import choose_threshold, clopper_pearson_upper
    from smallfirst.evals import build_report, check_kill_switch

    kill = check_kill_switch(policy, spec.name, "smallfirst learn: kill switch probe")
    held = _cases_from_head(candidate, spec, held_x, held_words, held_gold, held_stop, held_ids)
    base_sel = train.origin[keep] == 0
    kept_stops = [stop for stop, k in zip(train.hard_stop, keep) if k]  # what the hard stops said of each text
    ids = [i for i, k in zip(train.ids, keep) if k]
    base = _cases(spec, candidate.labels, fit.probs[base_sel].argmax(axis=1), fit.confidence[base_sel],
                  fit.novel[base_sel], [candidate.labels[i] for i in y[base_sel]],
                  [s for s, b in zip(kept_stops, base_sel) if b], [i for i, b in zip(ids, base_sel) if b],
                  _thresholds(spec, candidate, fit.nearest_learned[base_sel]), gold_must_escalate=False)
    reports = {"held_back": build_report(held, spec, kill)}
    if base:
        reports["base_out_of_fold"] = build_report(base, spec, kill)
    both = held + base
    accepted = [r for r in both if r.accepted]
    false_accepts = sum(1 for r in accepted if r.false_accept)
    upper = clopper_pearson_upper(false_accepts, len(accepted), CONFIDENCE_LEVEL)
    scored = [r for r in both if r.local_ran and r.confidence is not None]
    choice = choose_threshold(
        np.array([r.confidence for r in scored]), np.array([r.case.escalates or r.label_correct is False for r in scored]),
        np.array([r.reason in (None, "confidence_low") for r in scored]),
        max_false_accept=learn.max_false_accept, confidence_level=CONFIDENCE_LEVEL,
    )
    if candidate.min_confidence is None and fit.nearest_learned.any():
        why_floor = ["no threshold keeps the false-accept bound on inputs like the learned examples yet (too few "
                     "of them, or too many errors among them)"]
    else:
        why_floor = []
    why = why_floor + [f"{name}: release gate failed ({', '.join(c['name'] for c in rep['gate']['checks'] if c['passed'] is False)})"
           for name, rep in reports.items() if not rep["gate"]["passed"]]
    if not accepted:
        why.append("it would answer nothing locally")
    elif upper > learn.max_false_accept:
        why.append(f"false-accept bound {upper:.3f} > {learn.max_false_accept} ({false_accepts} of {len(accepted)} "
                   f"accepted, {CONFIDENCE_LEVEL:.0%} Clopper-Pearson)")
    return {
        "passed": not why,
        "why": "; ".join(why),
        "held_back_report": _summary(held),
        "base_out_of_fold_report": _summary(base) if base else None,
        "gate": {name: rep["gate"] for name, rep in reports.items()},
        "bound": {"accepted": len(accepted), "false_accepts": false_accepts, "upper_bound": round(upper, 5),
                  "max_false_accept": learn.max_false_accept, "confidence": CONFIDENCE_LEVEL,
                  "at_threshold": {"policy": spec.min_confidence, "learned_kind": candidate.min_confidence},
                  "lowest_threshold_meeting_bound": choice.threshold},
    }


def _cases_from_head(head: Head, spec: TaskSpec, x: np.ndarray, words: list[Mapping[int, float]] | None,
                     gold: list[str], hard_stop: list[str | None], ids: list[str]) -> list[Any]:
    probs = head.probabilities(x, words if head.reads_words else None)
    raw = probs.max(axis=1)
    conf = head.calibrator.apply(raw)
    novel = head.similarity(x) < head.novelty.threshold
    floors = head.floors(x)
    return _cases(spec, head.labels, probs.argmax(axis=1), conf, novel, gold, hard_stop, ids,
                  [max(spec.min_confidence, f) if f is not None else spec.min_confidence for f in floors])


def _thresholds(spec: TaskSpec, head: Head, nearest_learned: np.ndarray) -> list[float]:
    """What the gate compares each case's confidence with: the policy's min_confidence, or the
    head's own where it applies and is higher (Head.floors)."""
    floor = head.min_confidence
    return [max(spec.min_confidence, floor) if near and floor is not None else spec.min_confidence
            for near in nearest_learned]


def _cases(spec: TaskSpec, labels: Sequence[str], pred: np.ndarray, conf: np.ndarray, novel: np.ndarray,
           gold: list[str], hard_stop: list[str | None], ids: list[str], threshold: Sequence[float],
           gold_must_escalate: bool = True) -> list[Any]:
    """Eval CaseResults for decisions made on embeddings, in the gate's order after the hard stops.

    `gold_must_escalate`: a case whose gold label is a hard-stop category (security, access) must
    escalate, so answering it locally is a hard-stop false accept. True for escalations kept from
    real traffic. False for the head's own training data, where what must escalate is what the
    hard stops stopped when the head was trained (Examples.stop): generated training rows can
    carry such a label with its evidence cut out of the excerpt, and one of 5,000 would fail
    every candidate's gate. Answered locally, such a case still counts as a wrong label, in the
    accuracy check and in the false-accept bound."""
    from smallfirst.evals import CaseResult, EvalCase

    out = []
    for i, case_id in enumerate(ids):
        label = labels[int(pred[i])]
        if hard_stop[i]:
            reason = f"hard_stop_{hard_stop[i]}"
        elif novel[i]:
            reason = "hard_stop_novel"
        elif label in spec.escalate_labels:
            reason = "label_escalates"
        elif conf[i] < threshold[i]:
            reason = "confidence_low"
        else:
            reason = None
        stopped = bool(hard_stop[i])
        out.append(CaseResult(
            # A case whose gold label is a hard-stop category (security, access) must escalate; an
            # `unknown` one answered with a routine label is a wrong label, counted as such.
            case=EvalCase(case_id, "", gold[i], hard_stop=hard_stop[i],
                          must_escalate=gold_must_escalate and gold[i] in spec.escalate_labels and gold[i] in STOPS),
            accepted=reason is None, route="local" if reason is None else "frontier", reason=reason,
            label=None if stopped else label, confidence=None if stopped else float(conf[i]), latency_ms=0.0,
            local_ran=not stopped, json_valid=None, hard_stop=hard_stop[i], cost_usd=0.0, frontier_only_cost_usd=0.0,
        ))
    return out


def _summary(cases: Sequence[Any]) -> dict[str, Any]:
    n = len(cases)
    acc = [r for r in cases if r.accepted]
    labelled = [r for r in cases if r.label_correct is not None]
    return {
        "n": n,
        "local": len(acc),
        "local_rate": round(len(acc) / n, 4) if n else None,
        "accuracy_on_local": round(sum(1 for r in acc if r.label_correct) / len(acc), 4) if acc else None,
        "accuracy": round(sum(1 for r in labelled if r.label_correct) / len(labelled), 4) if labelled else None,
        "false_accepts": sum(1 for r in acc if r.false_accept),
        "novel": sum(1 for r in cases if r.reason == "hard_stop_novel"),
    }


# ---------------------------------------------------------------------- records


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")


def _record_admin_event(audit_path: str | Path, task: str, result: LearnResult, before: Policy, path: Path) -> None:
    from smallfirst.server.admin import record_admin_event

    after = load_policy(path) if result.changed_policy else before
    record_admin_event(audit_path, {
        "ts": time.time(), "action": "learn", "allowed": True, "status": 0, "remote": "learn",
        "detail": {"task": task, "outcome": result.outcome, "head": result.head, "message": result.message},
        "policy_before": before.version_tag, "policy_after": after.version_tag,
    })


def status(store: LearnStore, policy: Policy, task: str, *, runs: int = 5) -> dict[str, Any]:
    """What is kept for `task` and what the last runs did (`smallfirst learn --status`)."""
    spec = policy.tasks.get(task)
    learn = spec.learn if spec is not None else None
    counts = store.counts(task)
    last = store.runs(task, runs)
    since = last[0]["ts"] if last else 0.0
    return {
        "task": task,
        "learn": learn.model_dump() if learn is not None else None,
        "counts": counts,
        "labelled_since_last_run": store.labelled_since(task, since),
        "runs": [{k: r[k] for k in ("id", "ts", "outcome", "head", "message")} |
                 {"held_back": r["detail"].get("held_back_report"), "bound": r["detail"].get("bound")} for r in last],
    }


# ---------------------------------------------------------------------- the schedule


class LearnSchedule:
    """`learn: {every: N}` in the service: after N new labelled examples of a task since its last
    run, run `smallfirst learn` for it in a child process (training must not take the service's
    CPU time or GIL from requests, and a crash there cannot take the service down), at most one
    run per task at a time. `on_done(result_json, returncode)` is called from a helper thread."""

    def __init__(self, store: str | Path, policy_path: str | Path | None, audit_path: str | Path | None,
                 policy: Callable[[], Policy], on_done: Callable[[str, dict[str, Any] | None, int], None] | None = None):
        import threading

        self.store = str(store)  # the learn store's target: a SQLite path or a postgresql:// URL
        self.policy_path = str(policy_path) if policy_path else None
        self.audit_path = str(audit_path) if audit_path else None
        self._policy = policy
        self.on_done = on_done
        self._running: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def check(self, tasks: set[str], store: LearnStore) -> None:
        """Called by the learn writer after it stored labelled examples of `tasks`."""
        if self.policy_path is None:
            return
        policy = self._policy()
        for task in tasks:
            spec = policy.tasks.get(task)
            if spec is None or spec.learn is None or spec.learn.every is None:
                continue
            with self._lock:
                if task in self._running:
                    continue
            last = store.runs(task, 1)
            since = last[0]["ts"] if last else 0.0
            if store.labelled_since(task, since) >= spec.learn.every:
                self.start(task)

    def start(self, task: str) -> bool:
        import subprocess
        import threading

        with self._lock:
            if task in self._running or self.policy_path is None:
                return False
            # A lower priority and one BLAS thread: requests come first on a shared machine. The
            # stores go in the environment, not the command line: a URL may carry a password.
            cmd = [sys.executable, "-m", "smallfirst.cli", "learn", "--task", task, "--policy", self.policy_path,
                   "--json", "--nice", "10"]
            env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "SMALLFIRST_LEARN_DB": self.store}
            if self.audit_path:
                env["SMALLFIRST_AUDIT"] = self.audit_path
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            self._running[task] = proc
        threading.Thread(target=self._wait, args=(task, proc), name=f"smallfirst-learn-{task}", daemon=True).start()
        return True

    def _wait(self, task: str, proc: Any) -> None:
        import logging

        out, err = proc.communicate()
        result = None
        try:
            result = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1]) if out.strip() else None
        except ValueError:
            result = None
        outcome = result.get("outcome", "failed") if isinstance(result, dict) else "failed"
        with self._lock:
            self._running.pop(task, None)
            self.outcomes[(task, outcome)] += 1
        log = logging.getLogger("smallfirst.learn")
        if proc.returncode == 2 or outcome == "failed":
            log.error("learn run for %s failed (exit %s): %s", task, proc.returncode, err.decode("utf-8", "replace")[-2000:])
        else:
            log.info("learn run for %s: %s", task, (result or {}).get("message", outcome))
        if self.on_done is not None:
            self.on_done(task, result, proc.returncode)

    def wait(self, timeout: float = 600.0) -> bool:
        """Block until no run is in progress (tests and benches). True if none is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                return True
            time.sleep(0.05)
        return not self.running()
