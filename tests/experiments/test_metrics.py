"""Metrics on hand-made curves whose answers are known."""

import math

import numpy as np
import pytest

from qlora_np.experiments import metrics as M


def test_flat_and_smoothly_decreasing_curves_are_stable():
    assert M.mean_abs_dlog([0.5] * 100) == 0.0
    assert M.count_spikes([0.5] * 100) == 0
    curve = np.exp(-np.linspace(0, 3, 101))          # log loss falls by 0.03 per step
    assert M.mean_abs_dlog(curve) == pytest.approx(0.03)
    assert M.count_spikes(curve) == 0


def test_mean_abs_dlog_uses_the_last_quarter_only():
    # First 75 steps oscillate wildly, last 25 are flat: the metric must be 0.
    curve = [1.0, 100.0] * 37 + [1.0] * 26        # 100 steps; the last 25 diffs are flat
    assert len(curve) == 100
    assert M.mean_abs_dlog(curve) == 0.0
    # Alternating 1, e in the last quarter: |Δ log| = 1 at every step.
    curve = [1.0] * 74 + [math.e, 1.0] * 13
    assert M.mean_abs_dlog(curve) == pytest.approx(1.0)


def test_one_spike_lasting_several_steps_counts_once():
    curve = [1.0] * 20 + [5.0, 6.0, 5.0] + [1.0] * 20
    steps = M.spike_steps(curve)
    assert list(np.nonzero(steps)[0]) == [20, 21, 22]
    assert M.count_spikes(curve) == 1


def test_two_separate_spikes_and_a_non_finite_loss():
    curve = [1.0] * 15 + [3.0] + [1.0] * 15 + [float("nan")] + [1.0] * 5
    assert M.count_spikes(curve) == 2
    assert M.mean_abs_dlog([1.0, float("inf")]) == float("inf")


def test_a_rise_below_the_factor_is_not_a_spike():
    curve = [1.0] * 15 + [1.9] + [1.0] * 5
    assert M.count_spikes(curve) == 0
    assert M.count_spikes(curve, factor=1.5) == 1


def test_summary_and_paired_win_rate():
    s = M.summarize([1.0, 2.0, 3.0])
    assert s == {"mean": 2.0, "std": 1.0, "n": 3}
    assert M.summarize([4.0])["std"] == 0.0
    assert M.summarize([])["n"] == 0
    rate, n = M.paired_win_rate({0: 1.0, 1: 2.0, 2: 3.0, 9: 0.0}, {0: 2.0, 1: 2.0, 2: 1.0})
    assert n == 3 and rate == pytest.approx((1 + 0.5 + 0) / 3)
    rate, n = M.paired_win_rate({0: 1.0}, {1: 1.0})
    assert n == 0 and math.isnan(rate)


def test_bad_curves_raise_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        M.mean_abs_dlog([])
    with pytest.raises(ValueError, match="last_fraction"):
        M.mean_abs_dlog([1.0, 2.0], last_fraction=0)
