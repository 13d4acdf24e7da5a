"""Tolerances, error measures and the result row that every parity check returns.

Every check in this package compares an implementation under test (PyTorch, a checkpoint read back,
a training run) against a reference (NumPy float64, a golden file) and returns `Row`s: one line of
the `python -m parity` table and one pytest assertion. The pass rule is numpy's `allclose`,
elementwise `|actual - ref| <= atol + rtol |ref|`, with the tolerances of SPEC §9.7 below; they are
never loosened to make a case pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# SPEC §9.7, (rtol, atol). "out": forward outputs (y, routing weights); "grad": gradients.
TOL = {
    "float64": {"out": (1e-10, 1e-12), "grad": (1e-8, 1e-10)},
    "float32": {"out": (1e-4, 1e-5), "grad": (1e-3, 1e-4)},
}
# Training trajectories (issue 5): the float64 loss curve and final parameters, rtol 1e-8.
TRAJECTORY_TOL = (1e-8, 1e-10)
# bfloat16 (the GPU rows, and one CPU row): 8 mantissa bits, ~4e-3 relative error per operation,
# so a row whose top-k margin is below ~1e-2 may route differently, and one flipped route moves
# that row's output by O(1). The gate is the share of rows, pooled over the whole grid, whose
# chosen atom set equals NumPy's; outputs must be finite and within half their scale (a guard
# against garbage, not a precision claim). Errors are reported against each quantity's scale,
# max(1, max |ref|). Measured on CPU bf16 over the grid: ~99% agreement, scaled y error <= 0.26.
BF16_MIN_ROUTING_AGREEMENT = 0.95
BF16_MAX_SCALED_OUTPUT_ERROR = 0.5


@dataclass
class Err:
    """The error of `actual` against `ref`: max abs, max rel, and the share of tolerance used."""

    abs: float = 0.0
    rel: float = 0.0       # max |a - r| / |r| over entries with |r| > atol (others judged by atol)
    used: float = 0.0      # max |a - r| / (atol + rtol |r|); the check passes iff used <= 1

    @property
    def ok(self):
        return self.used <= 1.0   # NaN compares False: a NaN anywhere fails

    def worst(self, other):
        """The larger of two errors (by share of tolerance used)."""
        if math.isnan(other.used) or other.used > self.used:
            return other
        return self


def compare(actual, ref, rtol, atol):
    """`Err` of `actual` against `ref` (array-likes of the same shape; torch tensors allowed)."""
    a = _to_numpy(actual)
    r = _to_numpy(ref)
    if a.shape != r.shape:
        raise ValueError(f"compare: shape {a.shape} != reference shape {r.shape}")
    if a.size == 0:
        return Err()
    diff = np.abs(a - r)
    if not np.all(np.isfinite(diff)):
        return Err(float("nan"), float("nan"), float("nan"))
    big = np.abs(r) > atol
    rel = float(np.max(diff[big] / np.abs(r[big]))) if np.any(big) else 0.0
    return Err(float(diff.max()), rel, float(np.max(diff / (atol + rtol * np.abs(r)))))


def _to_numpy(x):
    if hasattr(x, "detach"):   # a torch tensor (bf16 has no NumPy dtype: go through float64)
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


@dataclass
class Row:
    """One line of the parity table: a case run in one dtype on one device."""

    case: str
    dtype: str = "float64"
    device: str = "cpu"
    out: Err | None = None          # forward outputs (or the loss curve of a training run)
    grad: Err | None = None         # the worst gradient (or final parameter) over all names
    grad_name: str = ""             # which gradient is the worst
    routing: str = ""               # routing agreement, e.g. "42/42" rows with the same atoms
    status: str = "pass"            # "pass" | "FAIL" | "skip"
    note: str = ""                  # why a row failed or was skipped; what it compared
    grads_gated: bool = True        # False: gradient errors are reported, not gated (bfloat16)
    details: dict = field(default_factory=dict)   # per-name errors, for pytest messages

    @property
    def passed(self):
        return self.status != "FAIL"

    @property
    def used(self):
        """The largest share of its tolerance that a gated quantity uses (None: nothing gated)."""
        errs = [self.out, self.grad if self.grads_gated else None]
        return max([e.used for e in errs if e is not None], default=None)

    def fail(self, why):
        self.status = "FAIL"
        self.note = (self.note + "; " if self.note else "") + why
        return self


def grad_errors(actual, ref, rtol, atol):
    """Per-name `Err` of two dicts of gradients, and the name of the worst one."""
    missing = sorted(set(ref) - set(actual))
    extra = sorted(set(actual) - set(ref))
    if missing or extra:
        raise KeyError(f"gradient names differ: missing {missing}, unexpected {extra}")
    errs = {k: compare(actual[k], ref[k], rtol, atol) for k in ref}
    worst = max(errs, key=lambda k: (math.isnan(errs[k].used), errs[k].used)) if errs else ""
    return errs, worst


def finish(row, out=None, grads=None, grad_name="", routing_ok=True):
    """Fill `row` with the output and gradient errors and set its status from them."""
    row.out = out
    if grads:
        row.grad, row.grad_name = grads[grad_name], grad_name
        row.details.update({f"grad {k}": e for k, e in grads.items()})
    if out is not None and not out.ok:
        row.fail(f"output error {out.used:.2g}x tolerance")
    if grads and not row.grad.ok:
        row.fail(f"gradient '{grad_name}' error {row.grad.used:.2g}x tolerance")
    if not routing_ok:
        row.fail("routing differs")
    return row
