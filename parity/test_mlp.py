"""NumPy vs PyTorch on the SPEC §8 MLP case grid: outputs, routing, every gradient (SPEC §9.7)."""

import numpy as np
import pytest
import torch

from parity import mlp
from parity.fixtures import GRID_NAMES, grid


def _explain(row):
    worst = sorted(row.details.items(), key=lambda kv: -kv[1].used)[:3]
    return f"{row.case} {row.dtype}: {row.note}; worst {worst}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", GRID_NAMES)
def test_grid_case_matches_numpy(name, dtype):
    row = mlp.check_mlp(grid()[name], dtype)
    assert row.passed, _explain(row)
    n_rows = sum(len(m) for m in mlp.numpy_reference(grid()[name])["masks"])
    assert row.routing == f"{n_rows}/{n_rows}"


def test_grid_covers_the_issue():
    """summary none/attention x prior off/on x dense/top-k x G 1/2, N = 1, batch 1 and large."""
    cases = [c for c in grid().values() if hasattr(c.config, "top_k")]   # Queryable LoRA
    assert len(cases) == len(grid()) - 1                                  # and one LoRA case
    combos = {(c.config.summary, c.config.d_instruction > 0, c.config.top_k < c.config.n_atoms,
               c.config.block_size) for c in cases}
    assert len({k for k in combos if k[3] in (1, 2)}) >= 16
    assert any(c.config.n_atoms == 1 for c in cases)
    assert {1, 128} <= {len(c.x) for c in cases}
    assert {1, 6} <= {c.config.rank for c in cases}
    assert any(c.skip_prior for c in cases)
    assert all(c.margin >= mlp.MIN_MARGIN for c in cases)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_exact_ties_go_to_the_lower_index_on_both_sides(dtype):
    row = mlp.check_tie(mlp.tie_case(), dtype)
    assert row.passed, _explain(row)
    got = mlp.torch_run(mlp.tie_case(), dtype)
    assert all(m[:, 1:3].all() and not m[:, 3].any() for m in got["masks"])


def test_bfloat16_on_cpu_routes_like_numpy():
    """The bf16 code path of the CUDA rows, run on the CPU: pooled routing agreement gate."""
    cases = list(grid().values())
    (row,) = mlp.device_rows(cases, "cpu", dtypes=("bfloat16",))
    assert row.passed, row.note


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_rows(dtype):
    (row,) = mlp.device_rows(list(grid().values()), "cuda", dtypes=(dtype,))
    assert row.passed, row.note


def test_cuda_rows_are_skipped_with_a_reason_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rows = mlp.device_rows([], "cuda")
    assert [r.status for r in rows] == ["skip", "skip"]
    assert all("no CUDA device" in r.note for r in rows)


def test_margin_is_measured_on_the_scores():
    """top_k_margin reads the gap between the k-th and (k+1)-th score of each row."""
    s = np.array([[3.0, 1.0, 2.5, 0.0], [0.0, 0.0, 1.0, 5.0]])
    probs = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    routing = [{"probs": probs}]
    assert np.isclose(mlp.top_k_margin(routing, 1), 0.5)
    assert np.isclose(mlp.top_k_margin(routing, 2), 1.0)
    assert np.isclose(mlp.top_k_margin(routing, 3), 0.0, atol=1e-12)   # the tie of row 2
    assert mlp.top_k_margin(routing, 4) == np.inf
