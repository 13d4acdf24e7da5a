"""torch.autograd.gradcheck on the PyTorch adapter (float64, tie-free cases)."""

import pytest

from parity.fixtures import GRID_NAMES, grid
from parity.gradcheck import check_gradcheck
from parity.report import GRADCHECK_CASES


@pytest.mark.parametrize("name", GRADCHECK_CASES)
def test_gradcheck_full_jacobian(name):
    row = check_gradcheck(grid()[name])
    assert row.passed, row.note


def test_gradcheck_fast_mode():
    row = check_gradcheck(grid()["top1_attn_prior"], fast_mode=True)
    assert row.passed and "fast mode" in row.note, row.note


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(GRID_NAMES) - set(GRADCHECK_CASES)))
def test_gradcheck_every_other_grid_case(name):
    row = check_gradcheck(grid()[name])
    assert row.passed, row.note
