"""Edge inputs on which the two sides must still agree: an empty batch, non-finite inputs.

Both were disagreements when this suite was first run: PyTorch raised on an empty batch with an
instruction prior (`RoutingPass._log_prior` let `reshape(..., -1)` infer a size from 0 elements)
and returned NaN rows for non-finite `x` or instruction embeddings, where NumPy returns an empty
output and refuses non-finite inputs with `InputError` naming the argument.
"""

import dataclasses

import numpy as np
import pytest
import torch

from parity import mlp
from parity.fixtures import GRID_NAMES, grid
from qlora_np import InputError, forward


@pytest.mark.parametrize("name", GRID_NAMES)
def test_empty_batch_matches_numpy(name):
    case = grid()[name]
    empty = dataclasses.replace(case, x=case.x[:0], cotangent=case.cotangent[:0], ref={},
                                e=None if case.e is None else case.e[:0])
    ref = mlp.numpy_reference(empty)
    assert ref["y"].shape == (0, case.layer_sizes[-1])
    row = mlp.check_mlp(empty, "float64")
    assert row.passed, row.note


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("what", ["x", "instruction"])
def test_non_finite_inputs_are_refused_as_in_numpy(what, value):
    case = grid()["attn_prior_top2_g2"]
    x, e = case.x.copy(), case.e.copy()
    (x if what == "x" else e)[0, 0] = value
    with pytest.raises(InputError, match=f"{what}: expected finite values"):
        forward(case.config, case.base, case.params, x, e)
    model = mlp.torch_model(case)
    with pytest.raises(ValueError, match=f"{what}: expected finite values"):
        model(torch.tensor(x), torch.tensor(e))
