"""Train a classifier head for the embedding backend, and load one.

A head is a plain JSON artifact (no pickle: it is loaded by a router that must not execute data):
multinomial logistic-regression weights over all-MiniLM-L6-v2 embeddings, a calibrator for the
top probability, class centroids with a novelty threshold, how long text is read, and where it
all came from.

Everything the head says about itself is measured out of fold: the calibrator is fitted on
predictions for cases the model did not train on, and the reported acceptance and false accepts
apply the task's own min_confidence to confidences that neither the model nor the calibrator saw
the case for.

Applying a head needs numpy only; `train_head` needs scikit-learn (`pip install smallfirst[train]`).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Mapping, Sequence

import numpy as np

from smallfirst.backends.embedding import EMBEDDING_DIM, MODEL_NAME, MiniLMEncoder, Window, embed_texts, shared_encoder
from smallfirst.calibration import Calibrator, CalibratorKind, expected_calibration_error, fit_calibrator, select_calibrator_kind
from smallfirst.jsonl import label_mapping, map_label, read_jsonl

if TYPE_CHECKING:
    from smallfirst.policy import TaskSpec

HEAD_FORMAT = "smallfirst-head/1"
# How a head reads text, chosen by 5-fold CV on BUMP's 570 Maven logs (compressed to 4000
# characters): the last 254 tokens 0.989 accuracy, the mean of all windows 0.981, the first
# window 0.938, first and last concatenated 0.985, the last two windows 0.988. A CI log ends
# where the build failed, and one window is also the cheapest. Stored in every head.
DEFAULT_WINDOW = Window("last")
# Embeddings are unit vectors with small coordinates, so useful C values run high.
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
# The novelty threshold sits at this percentile of out-of-fold similarities of real training
# cases to their nearest class centroid: about 1 in 100 in-distribution inputs is flagged.
NOVELTY_PERCENTILE = 1.0


class DataError(Exception):
    """Training data that cannot be used; `str()` names the file and line."""


class HeadError(Exception):
    """A head artifact that cannot be used with this encoder; `str()` names the file."""


# ---------------------------------------------------------------- the head


@dataclass(frozen=True)
class Head:
    task: str
    labels: tuple[str, ...]
    coef: np.ndarray  # (labels, 384)
    intercept: np.ndarray  # (labels,)
    calibrator: Calibrator
    centroids: np.ndarray  # (labels, 384), unit vectors
    novelty_threshold: float
    window: Window
    embedding_sha256: str
    provenance: Mapping[str, Any] = field(default_factory=dict)
    cv: Mapping[str, Any] = field(default_factory=dict)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(n, 384) embeddings -> (n, labels) probabilities."""
        z = x.astype(np.float64) @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def similarity(self, x: np.ndarray) -> np.ndarray:
        """Cosine of each embedding to its nearest class centroid: low means unlike the training data."""
        return (x.astype(np.float64) @ self.centroids.T).max(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": HEAD_FORMAT,
            "task": self.task,
            "labels": list(self.labels),
            "embedding_model": MODEL_NAME,
            "embedding_sha256": self.embedding_sha256,
            "window": self.window.to_dict(),
            "coef": _rounded(self.coef),
            "intercept": _rounded(self.intercept),
            "calibrator": self.calibrator.to_dict(),
            "novelty": {
                "method": "max cosine to class centroid",
                "percentile": NOVELTY_PERCENTILE,
                "threshold": round(self.novelty_threshold, 6),
                "centroids": _rounded(self.centroids),
            },
            "provenance": dict(self.provenance),
            "cv": dict(self.cv),
        }


def _rounded(a: np.ndarray) -> Any:
    # 7 decimals is below float32 resolution of these values, and halves the file.
    return np.round(np.asarray(a, dtype=np.float64), 7).tolist()


def load_head(path: str | Path, *, embedding_sha256: str | None = None) -> Head:
    """Read and validate a head; refuse one trained on another encoder than `embedding_sha256`
    (by default the bundled one, as shared_encoder() runs it)."""
    p = Path(path)
    if embedding_sha256 is None:
        embedding_sha256 = shared_encoder().sha256
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HeadError(f"{p}: cannot read head: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeadError(f"{p}: not a JSON head artifact: {exc}") from None
    if not isinstance(d, dict) or d.get("format") != HEAD_FORMAT:
        found = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise HeadError(f"{p}: format is {found!r}, expected {HEAD_FORMAT!r}")
    if d.get("embedding_sha256") != embedding_sha256:
        raise HeadError(
            f"{p}: head was trained on encoder sha256 {d.get('embedding_sha256')}, "
            f"but this encoder is {embedding_sha256}; retrain the head (smallfirst train)"
        )
    try:
        labels = tuple(str(x) for x in d["labels"])
        coef = np.asarray(d["coef"], dtype=np.float64)
        intercept = np.asarray(d["intercept"], dtype=np.float64)
        novelty = d["novelty"]
        centroids = np.asarray(novelty["centroids"], dtype=np.float64)
        head = Head(
            task=str(d["task"]),
            labels=labels,
            coef=coef,
            intercept=intercept,
            calibrator=Calibrator.from_dict(d["calibrator"]),
            centroids=centroids,
            novelty_threshold=float(novelty["threshold"]),
            window=Window.from_dict(d["window"]),
            embedding_sha256=str(d["embedding_sha256"]),
            provenance=d.get("provenance", {}),
            cv=d.get("cv", {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        missing = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise HeadError(f"{p}: invalid head: {missing}") from None
    k = len(labels)
    if k < 2 or len(set(labels)) != k:
        raise HeadError(f"{p}: labels must be at least two distinct names, got {list(labels)}")
    for name, arr, shape in (("coef", coef, (k, EMBEDDING_DIM)), ("intercept", intercept, (k,)), ("novelty.centroids", centroids, (k, EMBEDDING_DIM))):
        if arr.shape != shape:
            raise HeadError(f"{p}: {name} has shape {arr.shape}, expected {shape}")
    return head


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: str  # after the label map
    line: int


def load_label_map(path: str | Path) -> dict[str, str]:
    """A JSON object {source label: task label}; keys starting with "_" are comments."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: cannot read label map: {exc}") from None
    if not isinstance(d, dict) or not all(isinstance(v, str) for k, v in d.items() if not k.startswith("_")):
        raise DataError(f"{p}: a label map is a JSON object of label -> label strings")
    return label_mapping(d)


def read_examples(path: Path, labels: Sequence[str], label_map: Mapping[str, str] | None = None) -> list[Example]:
    """JSONL rows {"id", "text", "label"}, labels mapped through `label_map` and checked."""
    mapping = label_mapping(label_map)
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for lineno, row in read_jsonl(path, DataError, "training data"):
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str):
            raise DataError(f"{path}:{lineno}: field 'text' must be a string")
        if not isinstance(label, str):
            raise DataError(f"{path}:{lineno}: field 'label' must be a string")
        mapped = map_label(label, mapping, labels, f"{path}:{lineno}", DataError)
        ex_id = str(row.get("id", f"{path.name}:{lineno}"))
        if ex_id in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {ex_id!r} (first on line {seen[ex_id]})")
        seen[ex_id] = lineno
        examples.append(Example(ex_id, text, mapped, lineno))
    return examples


def prepare_text(text: str, task: "TaskSpec") -> str:
    """What the backend is given for `text`: the router compresses log-like inputs first, so
    training reads them the same way."""
    if task.compress_on:
        from smallfirst.logtext import compress_log

        return compress_log(text).text
    return text


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class LabelCounts:
    n: int
    predicted: int
    correct: int
    accepted: int
    false_accepts: int


@dataclass(frozen=True)
class TrainReport:
    """Cross-validated numbers: every case scored by a model and calibrator that never saw it."""

    task: str
    out: Path
    n: int
    labels: tuple[str, ...]
    folds: int
    seed: int
    window: Window
    c: float
    calibrator: str
    min_confidence: float
    novelty_threshold: float
    accuracy: float
    accept_rate: float
    accepted_accuracy: float
    accepted: int
    false_accepts: int
    false_accept_ids: tuple[str, ...]
    novel: int
    ece_raw: float
    ece_calibrated: float
    per_label: Mapping[str, LabelCounts]

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_confidence": self.min_confidence,
            "accuracy": round(self.accuracy, 4),
            "accept_rate": round(self.accept_rate, 4),
            "accepted_accuracy": round(self.accepted_accuracy, 4),
            "accepted": self.accepted,
            "false_accepts": self.false_accepts,
            "false_accept_ids": list(self.false_accept_ids),
            "novel": self.novel,
            "ece_raw": round(self.ece_raw, 4),
            "ece_calibrated": round(self.ece_calibrated, 4),
            "c": self.c,
            "per_label": {k: vars(v) for k, v in self.per_label.items()},
        }

    def summary(self) -> str:
        lines = [
            f"head for {self.task}: {self.out}",
            f"  {self.n} examples, labels {list(self.labels)}, {self.folds}-fold CV (seed {self.seed})",
            f"  reads {_describe(self.window)}, C={self.c:g}, calibrator {self.calibrator}",
            f"  accuracy {self.accuracy:.3f}   ECE raw {self.ece_raw:.3f} -> calibrated {self.ece_calibrated:.3f}",
            f"  at min_confidence {self.min_confidence:.2f}: local {self.accepted}/{self.n} ({self.accept_rate:.1%}), "
            f"accuracy on local {self.accepted_accuracy:.3f}, false accepts {self.false_accepts}, novel {self.novel}",
        ]
        lines.append("  by true label:")
        for label, c in self.per_label.items():
            lines.append(f"    {label:12s} n={c.n:4d} correct={c.correct:4d} local={c.accepted:4d} false_accepts={c.false_accepts}")
        if self.false_accept_ids:
            lines.append("  false accepts: " + ", ".join(self.false_accept_ids))
        return "\n".join(lines)


def _describe(window: Window) -> str:
    if window.strategy == "mean":
        return f"the mean of up to {window.max_windows} 256-token windows"
    return f"the {window.strategy} 256 tokens"


def _fit_lr(x: np.ndarray, y: np.ndarray, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    # lbfgs fits the multinomial (softmax) model; balanced weights keep a rare label from being
    # absorbed by a common one.
    return LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(x, y)


def _softmax_weights(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """One weight row per label. scikit-learn stores a two-label model as a single row w (the
    logit of the second label); softmax over (0, w) gives the same probabilities."""
    coef, intercept = np.asarray(model.coef_), np.asarray(model.intercept_)
    if coef.shape[0] == 1:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, intercept[0]])
    return coef, intercept


def _choose_c(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> float:
    """The C with the lowest cross-validated log loss (it rewards calibrated probabilities,
    which is what the gate thresholds, rather than accuracy alone)."""
    from sklearn.model_selection import StratifiedKFold

    losses = dict.fromkeys(C_GRID, 0.0)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        for c in C_GRID:
            p = _fit_lr(x[train], y[train], c).predict_proba(x[test])
            losses[c] -= float(np.log(np.clip(p[np.arange(len(test)), y[test]], 1e-12, 1.0)).sum())
    return min(C_GRID, key=lambda c: losses[c])


def _centroids(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    cents = np.stack([x[y == i].mean(axis=0) for i in range(k)])
    return cents / np.linalg.norm(cents, axis=1, keepdims=True)


@dataclass(frozen=True)
class _OutOfFold:
    probs: np.ndarray  # (n, k)
    similarity: np.ndarray  # (n,)


def _out_of_fold(x: np.ndarray, y: np.ndarray, k: int, folds: int, seed: int) -> _OutOfFold:
    from sklearn.model_selection import StratifiedKFold

    probs = np.zeros((len(y), k))
    sim = np.zeros(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        c = _choose_c(x[train], y[train], folds, seed)  # nested: C never sees the held-out fold
        probs[test] = _fit_lr(x[train], y[train], c).predict_proba(x[test])
        sim[test] = (x[test] @ _centroids(x[train], y[train], k).T).max(axis=1)
    return _OutOfFold(probs, sim)


def _cross_fitted_confidence(raw: np.ndarray, correct: np.ndarray, kind: CalibratorKind, folds: int, seed: int) -> np.ndarray:
    """Calibrated confidence for each case from a calibrator fitted without it."""
    from sklearn.model_selection import StratifiedKFold

    if min(int(correct.sum()), int((~correct).sum())) < folds:
        return fit_calibrator(raw, correct, kind).apply(raw)
    conf = np.zeros(len(raw))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed + 1).split(raw, correct):
        conf[test] = fit_calibrator(raw[train], correct[train], kind).apply(raw[test])
    return conf


def train_head(
    task: "TaskSpec",
    data: Path,
    out: Path,
    *,
    label_map: Mapping[str, str] | None = None,
    folds: int = 5,
    seed: int = 0,
    policy_source: str | None = None,
    window: Window = DEFAULT_WINDOW,
    calibrator: CalibratorKind | str = "auto",
    encoder: MiniLMEncoder | None = None,
    command: str | None = None,
    exclude_ids: Collection[str] = (),
) -> TrainReport:
    """Fit a head for `task` on JSONL examples and write it to `out` as JSON.

    `exclude_ids` holds cases out of training (an evaluation or demo set drawn from the same file).
    """
    if not task.labels:
        raise DataError(f"task {task.name!r} has no labels; a head classifies into the task's labels")
    if calibrator not in ("auto", "platt", "isotonic", "temperature", "identity"):
        raise ValueError(f"calibrator must be auto, platt, isotonic, temperature or identity, not {calibrator!r}")
    data = Path(data)
    examples = read_examples(data, task.labels, label_map)
    excluded = len(examples)
    if exclude_ids:
        held_out = set(exclude_ids)
        examples = [e for e in examples if e.id not in held_out]
    excluded -= len(examples)
    counts = Counter(e.label for e in examples)
    labels = tuple(lbl for lbl in task.labels if counts[lbl])  # the task's order; unseen labels dropped
    if len(labels) < 2:
        raise DataError(f"{data}: training needs at least two labels with examples, found {dict(counts)}")
    thin = {lbl: n for lbl, n in counts.items() if n < folds}
    if thin:
        raise DataError(f"{data}: {folds}-fold cross-validation needs at least {folds} examples per label; too few: {thin}")

    enc = encoder or shared_encoder()
    x, _ = embed_texts(enc, [prepare_text(e.text, task) for e in examples], window)
    x = x.astype(np.float64)
    y = np.array([labels.index(e.label) for e in examples])
    k = len(labels)

    oof = _out_of_fold(x, y, k, folds, seed)
    raw = oof.probs.max(axis=1)
    pred = oof.probs.argmax(axis=1)
    correct = pred == y
    kind: CalibratorKind
    if min(int(correct.sum()), int((~correct).sum())) < 2:
        kind = "identity"  # no errors (or no successes) out of fold: nothing to calibrate against
    elif calibrator == "auto":
        kind = select_calibrator_kind(raw, correct, folds=folds, seed=seed)
    else:
        kind = calibrator  # type: ignore[assignment]
    confidence = _cross_fitted_confidence(raw, correct, kind, folds, seed)
    novelty_threshold = float(np.percentile(oof.similarity, NOVELTY_PERCENTILE))
    novel = oof.similarity < novelty_threshold
    escalates = np.array([labels[p] in task.escalate_labels for p in pred])
    accepted = (confidence >= task.min_confidence) & ~escalates & ~novel
    false_accept = accepted & ~correct

    c_final = _choose_c(x, y, folds, seed)
    coef, intercept = _softmax_weights(_fit_lr(x, y, c_final))
    per_label = {
        lbl: LabelCounts(
            n=int((y == i).sum()),
            predicted=int((pred == i).sum()),
            correct=int((correct & (y == i)).sum()),
            accepted=int((accepted & (y == i)).sum()),
            false_accepts=int((false_accept & (y == i)).sum()),
        )
        for i, lbl in enumerate(labels)
    }
    n_acc = int(accepted.sum())
    report = TrainReport(
        task=task.name,
        out=Path(out),
        n=len(examples),
        labels=labels,
        folds=folds,
        seed=seed,
        window=window,
        c=c_final,
        calibrator=kind,
        min_confidence=task.min_confidence,
        novelty_threshold=novelty_threshold,
        accuracy=float(correct.mean()),
        accept_rate=n_acc / len(examples),
        accepted_accuracy=float(correct[accepted].mean()) if n_acc else 0.0,
        accepted=n_acc,
        false_accepts=int(false_accept.sum()),
        false_accept_ids=tuple(examples[i].id for i in np.flatnonzero(false_accept)),
        novel=int(novel.sum()),
        ece_raw=expected_calibration_error(raw, correct),
        ece_calibrated=expected_calibration_error(confidence, correct),
        per_label=per_label,
    )
    head = Head(
        task=task.name,
        labels=labels,
        coef=coef,
        intercept=intercept,
        # The shipped calibrator sees every out-of-fold prediction; the report above used
        # calibrators that did not see the case they scored.
        calibrator=fit_calibrator(raw, correct, kind),
        centroids=_centroids(x, y, k),
        novelty_threshold=novelty_threshold,
        window=window,
        embedding_sha256=enc.sha256,
        provenance={
            "data_file": str(data),
            "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
            "n": len(examples),
            "excluded": excluded,
            "label_counts": {lbl: counts[lbl] for lbl in labels},
            "label_map": {k: v for k, v in (label_map or {}).items() if not k.startswith("_")},
            "compressed": task.compress_on,
            "folds": folds,
            "seed": seed,
            "policy_source": policy_source,
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "command": command if command is not None else shlex.join(sys.argv),
        },
        cv=report.to_dict(),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_dump(head.to_dict()) + "\n", encoding="utf-8")
    return report


def _dump(value: Any, indent: str = "") -> str:
    """JSON with one key a line, and every list of numbers on a single line: a head stays
    readable in a diff instead of spreading 2,000 coefficients over 2,000 lines."""
    if isinstance(value, dict) and value:
        inner = indent + " "
        items = [f"{inner}{json.dumps(k)}: {_dump(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    return json.dumps(value, ensure_ascii=False)
