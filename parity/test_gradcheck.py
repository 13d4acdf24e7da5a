"""torch.autograd.gradcheck on the PyTorch adapter (float64, tie-free cases)."""

import pytest

from parity.fixtures import grid
from parity.gradcheck import check_gradcheck
from parity.report import GRADCHECK_CASES


@pytest.mark.parametrize("name", GRADCHECK_CASES)
def test_gradcheck_fast(name):
    row = check_gradcheck(grid()[name], fast_mode=True)
    assert row.passed, row.note


@pytest.mark.slow
@pytest.mark.parametrize("name", ["attn_prior_top2_g2", "none_noprior_dense_g1", "top1_attn_prior",
                                  "deep_g3_top2"])
def test_gradcheck_full_jacobian(name):
    row = check_gradcheck(grid()[name], fast_mode=False)
    assert row.passed, row.note
