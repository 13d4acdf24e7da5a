"""Edge inputs on which the two sides must still agree: an empty batch, non-finite inputs.

Two known disagreements are marked `xfail(strict=True)` with their cause: they fail today, and
the marker turns into a failure ("XPASS strict") the day PyTorch is fixed, so it gets removed.
"""

import dataclasses

import numpy as np
import pytest
import torch

from parity import mlp
from parity.fixtures import GRID_NAMES, grid
from qlora_np import InputError, forward

EMPTY_BATCH_BUG = (
    "qlora_torch.adapter.RoutingPass._log_prior reshapes log pi with "
    "reshape(z.shape[0], ..., -1): with 0 rows the -1 cannot be inferred and PyTorch raises "
    "RuntimeError, where NumPy returns an empty (0, d_out) output and zero gradients")
NON_FINITE_BUG = (
    "AdaptedMLP.forward does not check that x and the instruction embeddings are finite: it "
    "returns NaN rows where qlora_np.forward raises InputError naming the argument")


def _has_prior(name):
    return getattr(grid()[name].config, "d_instruction", 0) > 0 and not grid()[name].skip_prior


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, raises=RuntimeError,
                                            reason=EMPTY_BATCH_BUG)) if _has_prior(n) else n
    for n in GRID_NAMES])
def test_empty_batch_matches_numpy(name):
    case = grid()[name]
    empty = dataclasses.replace(case, x=case.x[:0], cotangent=case.cotangent[:0], ref={},
                                e=None if case.e is None else case.e[:0])
    ref = mlp.numpy_reference(empty)
    assert ref["y"].shape == (0, case.layer_sizes[-1])
    row = mlp.check_mlp(empty, "float64")
    assert row.passed, row.note


@pytest.mark.parametrize("what", ["x", "instruction"])
@pytest.mark.xfail(strict=True, reason=NON_FINITE_BUG)
def test_non_finite_inputs_are_refused_as_in_numpy(what):
    case = grid()["attn_prior_top2_g2"]
    x, e = case.x.copy(), case.e.copy()
    (x if what == "x" else e)[0, 0] = np.nan
    with pytest.raises(InputError):
        forward(case.config, case.base, case.params, x, e)
    model = mlp.torch_model(case)
    with pytest.raises(ValueError, match=what):
        model(torch.tensor(x), torch.tensor(e))
