"""Parity suite: NumPy and PyTorch agree on Queryable LoRA, and any port can prove it does.

"QLoRA" in this project is *Queryable* LoRA (arXiv 2605.08423), not quantized LoRA.

`python -m parity` runs every check and prints one table (exit 1 on any failure);
`python -m pytest parity` runs the same check functions as tests. Read in this order:

    metrics       SPEC §9.7 tolerances, `compare` (allclose-style errors), the table `Row`
    mlp           cases on the SPEC §8 MLP: the grid, the exact-tie case, the fuzzer, CUDA/bf16
                  rows; `check_mlp` = PyTorch (any dtype, device) vs NumPy float64
    golden_files  PyTorch reproduces `parity/golden/*.safetensors` (SPEC §10)
    gradcheck     `torch.autograd.gradcheck` on the adapted MLP
    checkpoints   NumPy save -> PyTorch load, and back
    transformer   the adapter injected into tiny Llama / GPT-2, checked layer by layer against
                  NumPy from captured layer inputs; checkpoints and static merge there
    training      50-step Adam(W) trajectories, NumPy `fit` vs `torch.optim`; the update rule
    report        the sections, the table, the exit code

Every check returns `metrics.Row`s; a row passes when every gated error is within tolerance
(`Row.used <= 1`) and the routing chose the same atoms. `docs/PORTING.md` explains how to check
a new port with the same tools.
"""

from .metrics import TOL, Err, Row, compare
from .mlp import (Case, CaseSpec, build_case, check_mlp, fuzz_cases, grid_cases, numpy_reference,
                  torch_run)
from .report import exit_code, run_all, table_lines

__all__ = ["TOL", "Err", "Row", "compare", "Case", "CaseSpec", "build_case", "check_mlp",
           "fuzz_cases", "grid_cases", "numpy_reference", "torch_run", "run_all", "table_lines",
           "exit_code"]
