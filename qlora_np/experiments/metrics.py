"""Metrics of the regression suite: final error summaries and training stability.

Definitions (also in docs/experiments.md):

- Final test MSE: mean squared error on the clean test set after the last step.
- Summary over seeds: mean, sample standard deviation (ddof = 1; 0 for one seed), n.
- Paired win rate of method A against a reference R: over the seeds both ran,
  the share of seeds where A's final test MSE is lower; an exact tie counts one half.
- Mean |Δ log loss| over the last 25% of steps: with L_0..L_{T-1} the training loss at every step
  and t0 = min(T - 1, max(1, ceil(0.75 T))),  mean_{t0 <= t < T} |log L_t - log L_{t-1}|.
  It is 0 for a flat curve and grows with step-to-step oscillation.
- Loss spikes: step t >= 1 is a *spike step* when L_t > 2 x median(L_{t-w}, ..., L_{t-1}) with
  w = 10 (fewer at the start), i.e. the loss at least doubles against its recent level; a non-finite
  loss is a spike step too. The spike count is the number of maximal runs of consecutive spike
  steps, so one blow-up lasting several steps counts once.
"""

from __future__ import annotations

import math

import numpy as np

SPIKE_WINDOW = 10
SPIKE_FACTOR = 2.0


def _curve(curve, name="curve"):
    c = np.asarray(curve, dtype=float).ravel()
    if c.size == 0:
        raise ValueError(f"{name}: expected a non-empty sequence of losses, got an empty one")
    return c


def summarize(values):
    """Mean, sample std (ddof=1, 0 when n = 1) and count of a list of numbers."""
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "n": int(v.size)}


def paired_win_rate(method_by_seed: dict, reference_by_seed: dict):
    """Share of common seeds where the method's value is lower than the reference's (tie = 1/2).
    Returns (rate, number of common seeds); rate is NaN when there is no common seed."""
    seeds = sorted(set(method_by_seed) & set(reference_by_seed))
    if not seeds:
        return float("nan"), 0
    score = 0.0
    for s in seeds:
        a, b = method_by_seed[s], reference_by_seed[s]
        score += 1.0 if a < b else 0.5 if a == b else 0.0
    return score / len(seeds), len(seeds)


def mean_abs_dlog(curve, last_fraction=0.25):
    """Mean |log L_t - log L_{t-1}| over the last `last_fraction` of the steps (see module doc)."""
    c = _curve(curve)
    if not 0 < last_fraction <= 1:
        raise ValueError(f"last_fraction: expected a number in (0, 1], got {last_fraction!r}")
    if c.size < 2:
        return 0.0
    t0 = min(c.size - 1, max(1, math.ceil((1.0 - last_fraction) * c.size)))
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.maximum(c, 1e-300))
        d = np.abs(np.diff(logs)[t0 - 1:])
    return float(np.mean(d)) if np.all(np.isfinite(d)) else float("inf")


def spike_steps(curve, window=SPIKE_WINDOW, factor=SPIKE_FACTOR):
    """Boolean array: is step t a spike step (see module doc)."""
    c = _curve(curve)
    out = np.zeros(c.size, dtype=bool)
    for t in range(1, c.size):
        if not np.isfinite(c[t]):
            out[t] = True
            continue
        recent = c[max(0, t - window):t]
        recent = recent[np.isfinite(recent)]
        out[t] = recent.size > 0 and c[t] > factor * float(np.median(recent))
    return out


def count_spikes(curve, window=SPIKE_WINDOW, factor=SPIKE_FACTOR):
    """Number of maximal runs of consecutive spike steps."""
    s = spike_steps(curve, window, factor)
    return int(np.sum(s[1:] & ~s[:-1]) + (1 if s.size and s[0] else 0))


def stability(curve):
    """Both within-run stability metrics of one training-loss curve."""
    return {"mean_abs_dlog_last25": mean_abs_dlog(curve), "n_spikes": count_spikes(curve)}
