"""Training trajectories: 50 Adam steps, NumPy fit vs torch.optim, same curve and parameters."""

import pytest

from parity import training


@pytest.mark.parametrize("name", sorted(training.TRAJECTORIES))
def test_trajectory(name):
    row = training.check_trajectory(name)
    assert row.passed, row.note
    assert row.out is not None and row.grad is not None


def test_adam_update_rule():
    row = training.check_adam_rule()
    assert row.passed, row.note
