"""Run every parity check and print one table: what `python -m parity` does.

Sections, in table order: the MLP case grid (float64, float32, an exact-tie case), the grid on
CUDA (float32, bfloat16; skipped without a GPU) and in CPU bfloat16, the random-config fuzzer,
the golden files, gradcheck, checkpoint interchange (MLP and transformer), the injected transformers
models, and the training trajectories. Each check returns `metrics.Row`s; the pytest modules call
the same functions.
"""

from __future__ import annotations

import contextlib
import time

from . import checkpoints, golden_files, gradcheck, mlp, training, transformer
from .metrics import Row

# Cases that the cheaper checks (gradcheck, checkpoints) run on: prior, summary, top-k, blocks,
# N = 1, a skipped prior and non-default tau / alpha / eps between them.
GRADCHECK_CASES = ("attn_prior_top2_g2", "n1_attn_g2", "tau_alpha_eps", "attn_prior_skipped")
CHECKPOINT_CASES = ("attn_prior_top2_g2", "none_noprior_top2_g1")


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread: the tensors here are tiny, and on a shared 2-core machine the
    intra-op thread pool made each small op tens of times slower than one thread does."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sections(fuzz=200, fuzz_seed=0, fast_gradcheck=False):
    """(name, function returning rows) for every section of the table, in order."""
    grid = mlp.grid_cases()
    by_name = {c.name: c for c in grid}

    def grid_rows():
        rows = [mlp.check_mlp(c, dt) for c in grid for dt in ("float64", "float32")]
        tie = mlp.tie_case()
        return rows + [mlp.check_tie(tie, dt) for dt in ("float64", "float32")]

    def fuzz_rows():
        cases = mlp.fuzz_cases(fuzz, fuzz_seed)
        rows = [mlp.summarise([mlp.check_mlp(c, dt) for c in cases],
                              f"fuzz ({fuzz} random configs, seed {fuzz_seed})", dt)
                for dt in ("float64", "float32")]
        # Wider, ill-conditioned ranges: float64 only (see mlp.random_spec for why not float32).
        stress = mlp.fuzz_cases(fuzz, fuzz_seed, stress=True)
        return rows + [mlp.summarise([mlp.check_mlp(c, "float64") for c in stress],
                                     f"fuzz stress ({fuzz} wide configs, seed {fuzz_seed})",
                                     "float64")]

    def checkpoint_rows():
        return [f(by_name[n], dt) for n in CHECKPOINT_CASES for dt in ("float64", "float32")
                for f in (checkpoints.check_np_to_torch, checkpoints.check_torch_to_np)]

    def hf_rows():
        rows = []
        for name in transformer.HF_CASES:
            rows += [transformer.check_hf(name, dt) for dt in ("float64", "float32")]
            rows += [r for dt in ("float64", "float32")
                     for r in transformer.check_hf_checkpoints(name, dt)]
            rows.append(transformer.check_hf_merge(name))
        return rows

    return [
        ("grid", grid_rows),
        ("devices", lambda: mlp.device_rows(grid, "cuda") +
         mlp.device_rows(grid, "cpu", dtypes=("bfloat16",))),
        ("fuzz", fuzz_rows),
        ("golden", lambda: [golden_files.check_golden(p, dt) for p in golden_files.golden_paths()
                            for dt in ("float64", "float32")]),
        ("gradcheck", lambda: [gradcheck.check_gradcheck(by_name[n], fast_mode=fast_gradcheck)
                               for n in GRADCHECK_CASES]),
        ("checkpoints", checkpoint_rows),
        ("transformers", hf_rows),
        ("training", lambda: [training.check_trajectory(n) for n in training.TRAJECTORIES]
         + [training.check_adam_rule()]),
    ]


def run_all(**kwargs):
    """All rows, and the seconds each section took."""
    rows, seconds = [], {}
    with single_thread():
        for name, fn in sections(**kwargs):
            start = time.perf_counter()
            try:
                rows += fn()
            except Exception as err:   # a crash is a failure of its section, not of the table
                rows.append(Row(f"{name} (crashed)").fail(f"{type(err).__name__}: {err}"))
            seconds[name] = time.perf_counter() - start
    return rows, seconds


COLUMNS = ("case", "dtype", "device", "out abs", "out rel", "worst grad", "grad abs", "grad rel",
           "tol used", "routing", "result", "note")


def _num(x):
    return "" if x is None else f"{x:.1e}"


def _short(name, width=30):
    return name if len(name) <= width else ".." + name[-(width - 2):]


def table_lines(rows):
    """The table as Markdown-compatible lines (pipes, aligned)."""
    cells = []
    for r in rows:
        used = r.used
        cells.append((r.case, r.dtype, r.device, _num(r.out and r.out.abs),
                      _num(r.out and r.out.rel), _short(r.grad_name), _num(r.grad and r.grad.abs),
                      _num(r.grad and r.grad.rel), "" if used is None else f"{used:.2g}",
                      r.routing, r.status, r.note))
    widths = [max(len(c[i]) for c in [COLUMNS, *cells]) for i in range(len(COLUMNS))]

    def line(values):
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"
    return [line(COLUMNS), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
            *(line(c) for c in cells)]


def exit_code(rows):
    """0 when every row passed or was skipped, 1 otherwise."""
    return 0 if all(r.passed for r in rows) else 1
