import numpy as np
import pytest

from smallfirst.calibration import Calibrator, expected_calibration_error, fit_calibrator


def _overconfident(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores that claim more than they deliver: P(correct) = raw ** 3."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.34, 1.0, n)
    correct = rng.uniform(0, 1, n) < raw**3
    return raw, correct


@pytest.mark.parametrize("kind", ["platt", "isotonic", "temperature"])
def test_fitted_calibrators_never_rank_a_higher_raw_score_lower(kind):
    raw, correct = _overconfident()
    cal = fit_calibrator(raw, correct, kind)
    grid = np.linspace(0.0, 1.0, 201)
    out = cal.apply(grid)
    assert cal.kind == kind
    assert np.all(np.diff(out) >= -1e-12)
    assert np.all((out >= 0) & (out <= 1))


@pytest.mark.parametrize("kind", ["platt", "isotonic", "temperature", "identity"])
def test_calibrator_survives_a_round_trip_through_its_dict(kind):
    raw, correct = _overconfident()
    cal = fit_calibrator(raw, correct, kind)
    again = Calibrator.from_dict(cal.to_dict())
    assert again == cal
    for r in (0.0, 0.4, 0.72, 0.9, 1.0):
        assert again(r) == pytest.approx(cal(r))


def test_auto_calibration_fixes_an_overconfident_score():
    raw, correct = _overconfident(seed=1)
    cal = fit_calibrator(raw, correct, "auto")
    assert cal.kind in ("platt", "isotonic")
    held_raw, held_correct = _overconfident(seed=2)
    assert expected_calibration_error(cal.apply(held_raw), held_correct) < 0.5 * expected_calibration_error(
        held_raw, held_correct
    )
    assert cal(0.8) < 0.7  # 0.8 ** 3 is about 0.51


def test_no_errors_to_learn_from_leaves_scores_unchanged():
    raw = np.linspace(0.5, 1.0, 50)
    cal = fit_calibrator(raw, np.ones(50, dtype=bool), "auto")
    assert cal.kind == "identity"
    assert cal(0.83) == pytest.approx(0.83)


def test_expected_calibration_error_of_honest_scores_is_small_and_of_liars_large():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 20000)
    honest = rng.uniform(0, 1, p.size) < p
    assert expected_calibration_error(p, honest) < 0.02
    assert expected_calibration_error(np.full(100, 0.9), np.zeros(100, dtype=bool)) == pytest.approx(0.9)


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "magic"},
        {"kind": "isotonic", "x": [0.1, 0.5], "y": [0.9, 0.2]},
        {"kind": "isotonic", "x": [0.1], "y": []},
        {"kind": "temperature", "t": 0},
    ],
)
def test_malformed_calibrator_dicts_are_refused(bad):
    with pytest.raises(ValueError):
        Calibrator.from_dict(bad)
