"""Random-config fuzzing: >= 200 seeded random valid configs and shapes, NumPy vs PyTorch."""

import numpy as np
import pytest

from parity import mlp

N_DEFAULT = 200


@pytest.fixture(scope="module")
def cases():
    return mlp.fuzz_cases(N_DEFAULT, seed=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fuzz_cases_match_numpy(cases, dtype):
    rows = [mlp.check_mlp(c, dtype) for c in cases]
    row = mlp.summarise(rows, "fuzz", dtype)
    assert row.passed, row.note
    assert len(rows) >= 200


def test_fuzzer_is_seeded_and_covers_the_config_space(cases):
    again = mlp.fuzz_cases(5, seed=0)
    for a, b in zip(cases[:5], again):
        assert a.config == b.config and np.array_equal(a.x, b.x)
    configs = [c.config for c in cases]
    assert {c.summary for c in configs} == {"none", "attention"}
    assert any(c.d_instruction for c in configs) and any(not c.d_instruction for c in configs)
    assert any(c.top_k < c.n_atoms for c in configs) and any(c.top_k == c.n_atoms for c in configs)
    assert any(c.n_atoms == 1 for c in configs)
    assert any(c.n_blocks > 1 and len(set(map(len, c.blocks))) > 1 for c in configs)
    assert {len(c.x) for c in cases} >= {1, 9}
    assert len({c.layer_sizes[0] for c in cases}) > 3


def test_every_fuzz_case_keeps_the_top_k_margin(cases):
    assert all(c.margin >= mlp.MIN_MARGIN for c in cases)


def test_stress_configs_match_numpy_in_float64():
    """Wide, ill-conditioned ranges (tau to 0.05, alpha to 20, eps to 1e-9): float64 only."""
    cases = mlp.fuzz_cases(N_DEFAULT, seed=0, stress=True)
    assert min(c.config.temperature for c in cases) < 0.1
    row = mlp.summarise([mlp.check_mlp(c, "float64") for c in cases], "stress", "float64")
    assert row.passed, row.note


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fuzz_many_more(dtype):
    rows = [mlp.check_mlp(c, dtype) for c in mlp.fuzz_cases(2000, seed=1)]
    row = mlp.summarise(rows, "fuzz", dtype)
    assert row.passed, row.note
