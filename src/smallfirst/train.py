"""Train a classifier head for the embedding backend (the artifact itself is heads.py).

A head is multinomial logistic regression over all-MiniLM-L6-v2 embeddings (and, for a head that
reads words, the log's hashed words beside them: lexical.py), optionally mixed with a vote of the
nearest training embeddings, a calibrator for the top probability, and a novelty threshold on the
cosine to the nearest training embedding.
`fit_head` fits one from embeddings (used by `smallfirst train` and by `smallfirst learn`, which
adds kept examples to a head's own training embeddings); `train_head` reads and embeds a JSONL
file first.

Everything the head says about itself is measured out of fold: the calibrator is fitted on
predictions for cases the model did not train on, and the reported acceptance and false accepts
apply the task's own min_confidence to confidences that neither the model nor the calibrator saw
the case for.

Applying a head needs numpy only; fitting needs scikit-learn (`pip install smallfirst[train]`).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Mapping, Sequence

import numpy as np

from smallfirst.backends.embedding import MiniLMEncoder, embed_texts, shared_encoder
from smallfirst.calibration import CalibratorKind, expected_calibration_error, fit_calibrator, select_calibrator_kind
from smallfirst.heads import (
    DEFAULT_WINDOW, HEAD_FORMAT, Examples, Head, HeadError, NeighbourVote, Novelty, Window, kth_similarity, load_head,
    write_head,
)
from smallfirst.jsonl import label_mapping, map_label, read_jsonl
from smallfirst.lexical import DIM as WORD_BUCKETS
from smallfirst.lexical import Lexical, Rows, bucket_counts, counts_matrix, idf_of, tfidf

if TYPE_CHECKING:
    from smallfirst.policy import TaskSpec

__all__ = ["HEAD_FORMAT", "DataError", "Head", "HeadError", "fit_head", "load_head", "train_head"]

# Embeddings are unit vectors with small coordinates, so useful C values run high.
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
# The novelty threshold sits at this percentile of out-of-fold similarities of real training
# cases to their k-th nearest other training case: about 1 in 100 in-distribution inputs is
# flagged.
NOVELTY_PERCENTILE = 1.0
NOVELTY_K = 1
NEIGHBOURS = NeighbourVote()
# A head that reads words fits one regression over [word tf-idf, EMBEDDING_WEIGHT x embedding] with
# a fixed C (a nested search over 16k sparse columns costs minutes a fit), and no neighbour vote.
# All three were chosen on the tune half of the hand-labelled LogChunks logs (the repositories at
# even positions; data/ci-failures/eval), never on the half the README reports: trained on the
# generated data and BUMP, accuracy there was 0.53 at weight 0.25 and C 30, 0.48 at weight 0.5 and
# C 10, 0.43 at weight 1 and C 10, and the vote lowered it on logs of CI systems it never saw.
EMBEDDING_WEIGHT = 0.25
WORDS_C = 30.0


class DataError(Exception):
    """Training data that cannot be used; `str()` names the file and line."""


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
            f"  reads {self.window.describe()}, C={self.c:g}, calibrator {self.calibrator}",
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


@dataclass(frozen=True)
class _OutOfFold:
    probs: np.ndarray  # (n, k)
    similarity: np.ndarray  # (n,) novelty similarity to the other folds' embeddings
    nearest_learned: np.ndarray  # (n,) the nearest embedding in the other folds is a learned one


def _with_words(words: Any, x: np.ndarray, train: np.ndarray, test: np.ndarray | None = None) -> tuple[Any, Any, np.ndarray]:
    """Design matrices [word tf-idf, EMBEDDING_WEIGHT x embedding] for the `train` rows (idf
    from them alone) and the `test` rows, and the idf."""
    from scipy.sparse import csr_matrix, hstack

    idf = idf_of(words[train])

    def design(rows: np.ndarray) -> Any:
        return hstack([tfidf(words[rows], idf), csr_matrix(x[rows] * EMBEDDING_WEIGHT)]).tocsr()

    return design(train), (design(test) if test is not None else None), idf


def _out_of_fold(x: np.ndarray, y: np.ndarray, k: int, folds: int, seed: int,
                 origin: np.ndarray | None = None, words: Any = None,
                 neighbours: NeighbourVote | None = NEIGHBOURS) -> _OutOfFold:
    from sklearn.model_selection import StratifiedKFold

    origin = np.zeros(len(y), dtype=np.int64) if origin is None else np.asarray(origin)
    probs = np.zeros((len(y), k))
    sim = np.zeros(len(y))
    nearest_learned = np.zeros(len(y), dtype=bool)
    w = neighbours.weight if neighbours is not None else 0.0
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        fold = Examples(x[train].astype(np.float32), y[train], origin[train])
        if words is not None:
            a, b, _ = _with_words(words, x, train, test)
            lr = _fit_lr(a, y[train], WORDS_C).predict_proba(b)
        else:
            c = _choose_c(x[train], y[train], folds, seed)  # nested: C never sees the held-out fold
            lr = _fit_lr(x[train], y[train], c).predict_proba(x[test])
        votes = neighbours.probabilities(x[test], fold, k) if neighbours is not None else 0.0
        probs[test] = (1 - w) * lr + w * votes
        sim[test] = kth_similarity(x[test].astype(np.float32), fold.x, NOVELTY_K)
        nearest_learned[test] = origin[train][(x[test].astype(np.float32) @ fold.x.T).argmax(axis=1)] == 1
    return _OutOfFold(probs, sim, nearest_learned)


def _cross_fitted_confidence(raw: np.ndarray, correct: np.ndarray, kind: CalibratorKind, folds: int, seed: int) -> np.ndarray:
    """Calibrated confidence for each case from a calibrator fitted without it."""
    from sklearn.model_selection import StratifiedKFold

    if min(int(correct.sum()), int((~correct).sum())) < folds:
        return fit_calibrator(raw, correct, kind).apply(raw)
    conf = np.zeros(len(raw))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed + 1).split(raw, correct):
        conf[test] = fit_calibrator(raw[train], correct[train], kind).apply(raw[test])
    return conf


@dataclass(frozen=True)
class Fit:
    """A fitted head and the out-of-fold evidence about it, one entry per training case."""

    head: Head
    probs: np.ndarray  # (n, labels) out of fold
    confidence: np.ndarray  # (n,) calibrated by a calibrator that did not see the case
    novel: np.ndarray  # (n,) out-of-fold novelty flag
    nearest_learned: np.ndarray  # (n,) out of fold, the nearest training embedding is a learned one
    c: float
    calibrator_kind: CalibratorKind

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


def fit_head(
    x: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    *,
    task: str,
    embedding_sha256: str,
    window: Window = DEFAULT_WINDOW,
    origin: np.ndarray | None = None,
    folds: int = 5,
    seed: int = 0,
    calibrator: CalibratorKind | str = "auto",
    words: Rows | None = None,
) -> Fit:
    """Fit a head on embeddings `x` (n, 384) with label indexes `y` into `labels`; with `words`
    (each case's bucket counts, lexical.py), a head that reads words beside the embeddings.

    Every label needs at least `folds` examples (stratified cross-validation); the caller checks
    that with a message about its own data."""
    if calibrator not in ("auto", "platt", "isotonic", "temperature", "identity"):
        raise ValueError(f"calibrator must be auto, platt, isotonic, temperature or identity, not {calibrator!r}")
    from threadpoolctl import threadpool_limits

    # These matrices are small (n x 384): extra BLAS threads only fight over the cores. On a busy
    # 2-core machine one thread fitted the same models 50x faster (0.5 s vs 25 s for 7 fits on BUMP).
    with threadpool_limits(limits=1):
        return _fit_head(np.asarray(x, dtype=np.float64), np.asarray(y), tuple(labels), task=task,
                         embedding_sha256=embedding_sha256, window=window, origin=origin, folds=folds, seed=seed,
                         calibrator=calibrator, words=words)


def _fit_head(x: np.ndarray, y: np.ndarray, labels: tuple[str, ...], *, task: str, embedding_sha256: str,
              window: Window, origin: np.ndarray | None, folds: int, seed: int, calibrator: CalibratorKind | str,
              words: Rows | None) -> Fit:
    k = len(labels)
    counts = counts_matrix(words) if words is not None else None
    neighbours = NEIGHBOURS if words is None else None
    oof = _out_of_fold(x, y, k, folds, seed, origin, counts, neighbours)
    raw = oof.probs.max(axis=1)
    correct = oof.probs.argmax(axis=1) == y
    kind: CalibratorKind
    if min(int(correct.sum()), int((~correct).sum())) < 2:
        kind = "identity"  # no errors (or no successes) out of fold: nothing to calibrate against
    elif calibrator == "auto":
        kind = select_calibrator_kind(raw, correct, folds=folds, seed=seed)
    else:
        kind = calibrator  # type: ignore[assignment]
    confidence = _cross_fitted_confidence(raw, correct, kind, folds, seed)
    threshold = float(np.percentile(oof.similarity, NOVELTY_PERCENTILE))
    lexical = None
    if counts is not None:
        c_final = WORDS_C
        design, _, idf = _with_words(counts, x, np.arange(len(y)))
        coef, intercept = _softmax_weights(_fit_lr(design, y, c_final))
        # The embedding's weights absorb its scale, so a head computes x @ coef.T as before.
        lexical = Lexical(idf, coef[:, :WORD_BUCKETS].astype(np.float32))
        coef = coef[:, WORD_BUCKETS:] * EMBEDDING_WEIGHT
    else:
        c_final = _choose_c(x, y, folds, seed)
        coef, intercept = _softmax_weights(_fit_lr(x, y, c_final))
    examples = Examples(
        x.astype(np.float32), y.astype(np.int64),
        np.zeros(len(y), dtype=np.int64) if origin is None else np.asarray(origin, dtype=np.int64),
        words,
    )
    head = Head(
        task=task,
        labels=tuple(labels),
        coef=coef,
        intercept=intercept,
        # The shipped calibrator sees every out-of-fold prediction; the confidences above came
        # from calibrators that did not see the case they scored.
        calibrator=fit_calibrator(raw, correct, kind),
        novelty=Novelty("knn", NOVELTY_K, threshold, NOVELTY_PERCENTILE, examples.x),
        window=window,
        embedding_sha256=embedding_sha256,
        examples=examples,
        neighbours=neighbours,
        lexical=lexical,
        embedding_weight=EMBEDDING_WEIGHT if lexical is not None else 1.0,
    )
    return Fit(head, oof.probs, confidence, oof.similarity < threshold, oof.nearest_learned, c_final, kind)


def train_head(
    task: "TaskSpec",
    data: Path | Sequence[Path],
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
    words: bool | None = None,
    hard_stops: Any = None,
) -> TrainReport:
    """Fit a head for `task` on JSONL examples (one file or several) and write it to `out` (JSON,
    and its .npz beside).

    `exclude_ids` holds cases out of training (an evaluation or demo set drawn from the same file).
    `words`: whether the head reads the text's words beside its embedding; by default a task whose
    inputs are logs (compress_input) does, since the words a tool prints carry its failure across
    CI systems that the embedding never saw. `hard_stops` (the policy's, default the built-in
    rules) records which training texts the router would stop, for learn's release gate.
    """
    if not task.labels:
        raise DataError(f"task {task.name!r} has no labels; a head classifies into the task's labels")
    files = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
    if not files:
        raise DataError("training needs at least one data file")
    examples = []
    first: dict[str, str] = {}
    for f in files:
        for e in read_examples(f, task.labels, label_map):
            if e.id in first:
                raise DataError(f"{f}:{e.line}: id {e.id!r} is also in {first[e.id]}")
            first[e.id] = f"{f}:{e.line}"
            examples.append(e)
    where = ", ".join(map(str, files))
    excluded = len(examples)
    if exclude_ids:
        held_out = set(exclude_ids)
        examples = [e for e in examples if e.id not in held_out]
    excluded -= len(examples)
    counts = Counter(e.label for e in examples)
    labels = tuple(lbl for lbl in task.labels if counts[lbl])  # the task's order; unseen labels dropped
    if len(labels) < 2:
        raise DataError(f"{where}: training needs at least two labels with examples, found {dict(counts)}")
    thin = {lbl: n for lbl, n in counts.items() if n < folds}
    if thin:
        raise DataError(f"{where}: {folds}-fold cross-validation needs at least {folds} examples per label; too few: {thin}")

    enc = encoder or shared_encoder()
    prepared = [prepare_text(e.text, task) for e in examples]
    x, _ = embed_texts(enc, prepared, window)
    y = np.array([labels.index(e.label) for e in examples])
    reads_words = task.compress_on if words is None else words
    fit = fit_head(x, y, labels, task=task.name, embedding_sha256=enc.sha256, window=window,
                   folds=folds, seed=seed, calibrator=calibrator,
                   words=Rows.of([bucket_counts(t) for t in prepared]) if reads_words else None)
    report = gate_report(fit, y, task, ids=[e.id for e in examples], out=Path(out), folds=folds, seed=seed)
    from smallfirst.hardstops import HardStops
    from smallfirst.heads import STOPS

    stops = hard_stops if hard_stops is not None else HardStops()
    flags = np.array([STOPS.index(m.category) if (m := stops.first(e.text)) else 0 for e in examples], dtype=np.int64)
    assert fit.head.examples is not None
    head = replace(fit.head, examples=replace(fit.head.examples, stop=flags), cv=report.to_dict(), provenance={
        **({"data_file": str(files[0]), "data_sha256": hashlib.sha256(files[0].read_bytes()).hexdigest()}
           if len(files) == 1 else
           {"data_files": [{"file": str(f), "sha256": hashlib.sha256(f.read_bytes()).hexdigest()} for f in files]}),
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
    })
    write_head(head, out)
    return report


def gate_report(fit: Fit, y: np.ndarray, task: "TaskSpec", *, ids: Sequence[str], out: Path, folds: int, seed: int,
                select: np.ndarray | None = None) -> TrainReport:
    """The cross-validated numbers of `fit` at the task's min_confidence, over the training cases
    `select` picks (all by default): accuracy, acceptance, false accepts, novelty."""
    head = fit.head
    sel = np.ones(len(y), dtype=bool) if select is None else np.asarray(select, dtype=bool)
    labels = head.labels
    pred = fit.pred[sel]
    yy = np.asarray(y)[sel]
    correct = pred == yy
    novel = fit.novel[sel]
    raw = fit.probs[sel].max(axis=1)
    confidence = fit.confidence[sel]
    escalates = np.array([labels[p] in task.escalate_labels for p in pred], dtype=bool)
    accepted = (confidence >= task.min_confidence) & ~escalates & ~novel
    false_accept = accepted & ~correct
    chosen = [i for i, s in zip(ids, sel) if s]
    per_label = {
        lbl: LabelCounts(
            n=int((yy == i).sum()),
            predicted=int((pred == i).sum()),
            correct=int((correct & (yy == i)).sum()),
            accepted=int((accepted & (yy == i)).sum()),
            false_accepts=int((false_accept & (yy == i)).sum()),
        )
        for i, lbl in enumerate(labels)
    }
    n = int(sel.sum())
    n_acc = int(accepted.sum())
    return TrainReport(
        task=task.name,
        out=out,
        n=n,
        labels=labels,
        folds=folds,
        seed=seed,
        window=head.window,
        c=fit.c,
        calibrator=fit.calibrator_kind,
        min_confidence=task.min_confidence,
        novelty_threshold=head.novelty.threshold,
        accuracy=float(correct.mean()) if n else 0.0,
        accept_rate=n_acc / n if n else 0.0,
        accepted_accuracy=float(correct[accepted].mean()) if n_acc else 0.0,
        accepted=n_acc,
        false_accepts=int(false_accept.sum()),
        false_accept_ids=tuple(chosen[i] for i in np.flatnonzero(false_accept)),
        novel=int(novel.sum()),
        ece_raw=expected_calibration_error(raw, correct),
        ece_calibrated=expected_calibration_error(confidence, correct),
        per_label=per_label,
    )
