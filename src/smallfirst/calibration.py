"""Raw model score -> calibrated probability that the local answer is correct.

A calibrator maps one number (a head's top-label probability, a generator's mean token
probability) to the probability that the answer is right, fitted on held-out predictions. The
gate compares that probability with the task's min_confidence, so "0.72" means what it says.

Applying a calibrator needs numpy only; fitting uses scikit-learn (`pip install smallfirst[train]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

CalibratorKind = Literal["platt", "isotonic", "temperature", "identity"]
_EPS = 1e-6
# Held-out log loss is scored with probabilities clipped here: isotonic steps reach exactly 0 or 1
# and one unlucky case would otherwise make its loss infinite, whatever it does elsewhere.
_LOSS_CLIP = 1e-3


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warnings for large |z|


@dataclass(frozen=True)
class Calibrator:
    """platt: sigmoid(a * logit(raw) + b); temperature: sigmoid(logit(raw) / t);
    isotonic: a non-decreasing step function through (x, y), interpolated; identity: raw."""

    kind: CalibratorKind = "identity"
    a: float = 1.0
    b: float = 0.0
    t: float = 1.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def __call__(self, raw: float) -> float:
        return float(self.apply(np.asarray([raw], dtype=np.float64))[0])

    def apply(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.kind == "platt":
            return _sigmoid(self.a * _logit(raw) + self.b)
        if self.kind == "temperature":
            return _sigmoid(_logit(raw) / self.t)
        if self.kind == "isotonic":
            return np.interp(raw, self.x, self.y)
        return np.clip(raw, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "platt":
            return {"kind": "platt", "a": self.a, "b": self.b}
        if self.kind == "temperature":
            return {"kind": "temperature", "t": self.t}
        if self.kind == "isotonic":
            return {"kind": "isotonic", "x": list(self.x), "y": list(self.y)}
        return {"kind": "identity"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibrator":
        kind = d.get("kind")
        if kind == "platt":
            return cls("platt", a=float(d["a"]), b=float(d["b"]))
        if kind == "temperature":
            t = float(d["t"])
            if t <= 0:
                raise ValueError(f"temperature must be positive, got {t}")
            return cls("temperature", t=t)
        if kind == "isotonic":
            x, y = tuple(float(v) for v in d["x"]), tuple(float(v) for v in d["y"])
            if len(x) != len(y) or not x:
                raise ValueError("isotonic calibrator needs x and y of equal, non-zero length")
            if any(b < a for a, b in zip(x, x[1:])) or any(b < a for a, b in zip(y, y[1:])):
                raise ValueError("isotonic calibrator x and y must be non-decreasing")
            return cls("isotonic", x=x, y=y)
        if kind == "identity":
            return cls("identity")
        raise ValueError(f"unknown calibrator kind {kind!r}")


# ---------------------------------------------------------------- fitting (scikit-learn)


def _fit_platt(raw: np.ndarray, correct: np.ndarray) -> Calibrator:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e4, max_iter=1000).fit(_logit(raw)[:, None], correct.astype(int))
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    if a <= 0:
        # A score that falls as correctness rises is no confidence; refuse to invert it.
        return Calibrator("identity")
    return Calibrator("platt", a=a, b=b)


def _fit_isotonic(raw: np.ndarray, correct: np.ndarray) -> Calibrator:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(raw, correct.astype(float))
    return Calibrator("isotonic", x=tuple(map(float, iso.X_thresholds_)), y=tuple(map(float, iso.y_thresholds_)))


def _fit_temperature(raw: np.ndarray, correct: np.ndarray) -> Calibrator:
    z = _logit(raw)
    # One parameter: a log-spaced grid then a finer one around the best is exact enough.
    grid = np.logspace(-2, 2, 81)
    for _ in range(2):
        losses = [log_loss(_sigmoid(z / t), correct) for t in grid]
        best = int(np.argmin(losses))
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        grid = np.linspace(lo, hi, 41)
    return Calibrator("temperature", t=float(grid[int(np.argmin([log_loss(_sigmoid(z / t), correct) for t in grid]))]))


_FITTERS = {"platt": _fit_platt, "isotonic": _fit_isotonic, "temperature": _fit_temperature}


def log_loss(probs: np.ndarray, correct: np.ndarray) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), _LOSS_CLIP, 1.0 - _LOSS_CLIP)
    c = np.asarray(correct, dtype=bool)
    return float(-np.mean(np.where(c, np.log(p), np.log1p(-p))))


def fit_calibrator(
    raw: np.ndarray,
    correct: np.ndarray,
    kind: CalibratorKind | Literal["auto"] = "auto",
    *,
    folds: int = 5,
    seed: int = 0,
) -> Calibrator:
    """Fit P(correct | raw) on held-out predictions (never on the fit that produced them).

    "auto" fits platt and isotonic and keeps the one with the lower log loss in an inner
    stratified cross-validation; the winner is then refitted on all of `raw`.
    """
    raw = np.asarray(raw, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if raw.shape != correct.shape or raw.ndim != 1:
        raise ValueError("raw and correct must be 1-D arrays of the same length")
    if kind == "identity":
        return Calibrator("identity")
    if min(int(correct.sum()), int((~correct).sum())) < 2:
        # Nothing to learn from when (almost) every answer is right, or wrong.
        return Calibrator("identity")
    if kind != "auto":
        return _FITTERS[kind](raw, correct)
    return _FITTERS[select_calibrator_kind(raw, correct, ("platt", "isotonic"), folds=folds, seed=seed)](raw, correct)


def select_calibrator_kind(
    raw: np.ndarray,
    correct: np.ndarray,
    kinds: tuple[CalibratorKind, ...] = ("platt", "isotonic"),
    *,
    folds: int = 5,
    seed: int = 0,
) -> CalibratorKind:
    """The kind with the lowest held-out log loss over an inner stratified K-fold."""
    from sklearn.model_selection import StratifiedKFold

    k = min(folds, int(correct.sum()), int((~correct).sum()))
    if k < 2:
        return "identity"
    losses = {kind: 0.0 for kind in kinds}
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(raw, correct):
        for kind in kinds:
            cal = _FITTERS[kind](raw[train], correct[train])
            losses[kind] += log_loss(cal.apply(raw[test]), correct[test]) * len(test)
    return min(kinds, key=lambda kind: losses[kind])


# ---------------------------------------------------------------- measuring


def expected_calibration_error(probs: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    p = np.asarray(probs, dtype=np.float64)
    c = np.asarray(correct, dtype=np.float64)
    if p.size == 0:
        return 0.0
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = idx == b
        if in_bin.any():
            total += in_bin.sum() * abs(c[in_bin].mean() - p[in_bin].mean())
    return float(total / p.size)


def reliability_bins(probs: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """The points of a reliability diagram: per equal-width confidence bin, its size, mean
    confidence and accuracy (the bins expected_calibration_error averages over)."""
    p = np.asarray(probs, dtype=np.float64)
    c = np.asarray(correct, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        in_bin = idx == b
        n = int(in_bin.sum())
        out.append({
            "lo": b / bins,
            "hi": (b + 1) / bins,
            "n": n,
            "confidence": round(float(p[in_bin].mean()), 4) if n else 0.0,
            "accuracy": round(float(c[in_bin].mean()), 4) if n else 0.0,
        })
    return out


# ---------------------------------------------------------------- threshold with a guarantee

CALIBRATION_FORMAT = "smallfirst-calibration/1"


def clopper_pearson_upper(errors: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact upper confidence bound on a binomial rate (needs scipy: offline only)."""
    from scipy.stats import beta

    if n == 0 or errors >= n:
        return 1.0
    return float(beta.ppf(confidence, errors + 1, n - errors))


@dataclass(frozen=True)
class ThresholdStep:
    threshold: float
    accepted: int
    false_accepts: int
    upper_bound: float


@dataclass(frozen=True)
class ThresholdChoice:
    """The lowest threshold the fixed-sequence test reached, or None when none passed."""

    threshold: float | None
    accepted: int
    false_accepts: int
    upper_bound: float | None
    n: int
    steps: tuple[ThresholdStep, ...]


def choose_threshold(
    confidence: np.ndarray,
    false_accept_if_accepted: np.ndarray,
    eligible: np.ndarray,
    *,
    max_false_accept: float,
    confidence_level: float = 0.95,
    tolerate: int = 0,
) -> ThresholdChoice:
    """The threshold that keeps the most traffic local while the Clopper-Pearson upper bound on
    the false-accept rate among accepted cases stays at or under `max_false_accept`.

    Learn-then-Test by fixed-sequence testing: candidate thresholds (the distinct confidences)
    are tested from high to low, each at the full level, and the search stops at the first that
    fails; because the order is fixed before any test, no multiplicity correction is needed and
    the chosen threshold holds the bound with probability >= confidence_level. The sequence
    starts at the highest threshold accepting enough cases that `tolerate` errors could pass
    (zero by default: fewer cases can never pass); that start depends on the scores only, never
    on correctness. A start that tolerates one error gives up thresholds accepting very few
    cases, and a single confident mistake among the first few no longer ends the search.

    `eligible`: cases the gate would accept on confidence alone (no escalating label, not novel).
    """
    conf = np.asarray(confidence, dtype=np.float64)
    bad = np.asarray(false_accept_if_accepted, dtype=bool)
    ok = np.asarray(eligible, dtype=bool)
    n_min = 1
    while clopper_pearson_upper(tolerate, n_min, confidence_level) > max_false_accept and n_min < 10**7:
        n_min = max(n_min + 1, int(n_min * 1.05))
    # Exact smallest n: the loop above overshoots by at most 5%; walk back.
    while n_min > 1 and clopper_pearson_upper(tolerate, n_min - 1, confidence_level) <= max_false_accept:
        n_min -= 1
    steps: list[ThresholdStep] = []
    best: ThresholdStep | None = None
    for t in sorted(set(conf[ok].tolist()), reverse=True):
        acc = ok & (conf >= t)
        n_acc = int(acc.sum())
        if n_acc < n_min:
            continue
        k = int((acc & bad).sum())
        step = ThresholdStep(float(t), n_acc, k, clopper_pearson_upper(k, n_acc, confidence_level))
        steps.append(step)
        if step.upper_bound > max_false_accept:
            break
        best = step
    if best is None:
        return ThresholdChoice(None, 0, 0, steps[0].upper_bound if steps else None, len(conf), tuple(steps))
    return ThresholdChoice(best.threshold, best.accepted, best.false_accepts, best.upper_bound, len(conf), tuple(steps))


@dataclass(frozen=True)
class TaskCalibration:
    """What `smallfirst calibrate` wrote and a policy's `calibration:` points at: a calibrator
    for the local model's raw score and the threshold that replaces min_confidence."""

    calibrator: Calibrator
    threshold: float
    local: bool
    task: str = ""


def load_calibration(path: "str | Any") -> TaskCalibration:
    import json
    from pathlib import Path

    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: cannot read calibration: {exc}") from None
    if not isinstance(d, dict) or d.get("format") != CALIBRATION_FORMAT:
        raise ValueError(f"{p}: not a {CALIBRATION_FORMAT} file")
    if not d.get("local"):
        raise ValueError(f"{p}: no threshold met the false-accept bound; keep the task on the frontier (local: false)")
    try:
        threshold = float(d["threshold"])
        cal = Calibrator.from_dict(d["calibrator"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{p}: invalid calibration: {exc}") from None
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{p}: threshold {threshold} is not a probability")
    return TaskCalibration(cal, threshold, True, str(d.get("task", "")))
