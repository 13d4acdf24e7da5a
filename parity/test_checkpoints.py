"""Checkpoints interchange: NumPy save -> PyTorch load -> same outputs, and back (SPEC §10)."""

import pytest

from parity import checkpoints
from parity.fixtures import grid
from parity.report import CHECKPOINT_CASES


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", CHECKPOINT_CASES)
def test_numpy_to_torch(name, dtype):
    row = checkpoints.check_np_to_torch(grid()[name], dtype)
    assert row.passed, row.note


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", CHECKPOINT_CASES)
def test_torch_to_numpy(name, dtype):
    row = checkpoints.check_torch_to_np(grid()[name], dtype)
    assert row.passed, row.note
