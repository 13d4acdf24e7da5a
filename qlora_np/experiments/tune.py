"""Tuning of the suite's defaults, on tuning seeds disjoint from the reported ones.

    python -m qlora_np.experiments.tune --out results/tune [--seeds 100 101 102] [--steps 500]

Each variant changes one thing from the current defaults (presets.QLORA, lr 1e-2) and runs
`qlora` (plus the two LoRA baselines where the change applies to them, e.g. the learning rate)
on the three single-task settings at the paper preset's sizes. The instruction setting's held-out
tasks are never part of tuning. Results go to DIR/results.json (resumable) and the printed table
(mean test MSE over the tuning seeds per setting; geometric mean of ratios to matched LoRA).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from ._blas import limit_blas_threads
from .presets import QLORA, SINGLE, builtin_task
from .runner import Suite, run_suite, suite_records

VARIANTS = {
    "base": ({}, {}),
    "lr3e-3": ({}, {"lr": 3e-3}),
    "lr3e-2": ({}, {"lr": 3e-2}),
    "init0.5": ({"atom_init_scale": 0.5}, {}),
    "temp0.5": ({"temperature": 0.5}, {}),
    "temp2": ({"temperature": 2.0}, {}),
    "top2": ({"top_k": 2}, {}),
    "N4": ({"n_atoms": 4}, {}),
    "N16": ({"n_atoms": 16}, {}),
    "wd1e-1": ({}, {"weight_decay": 1e-1}),
}


def variant_suite(name, seeds, steps):
    q_over, s_over = VARIANTS[name]
    # LoRA baselines only where the change applies to them too (training settings).
    methods = SINGLE if (s_over or name == "base") else ("qlora",)
    tasks = tuple(builtin_task(t, methods, label=f"{t}") for t in ("wave1d", "surface2d",
                                                                    "ridge5d"))
    suite = Suite(tasks=tasks, seeds=tuple(seeds), steps=steps, lr=1e-2,
                  qlora={**QLORA, **q_over}, pretrain_steps=1000, eval_points=10)
    return dataclasses.replace(suite, **s_over)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m qlora_np.experiments.tune")
    p.add_argument("--out", default="results/tune")
    p.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = p.parse_args(argv)
    limit_blas_threads(1)
    rows = []
    ref = {}
    for name in args.variants:
        suite = variant_suite(name, args.seeds, args.steps)
        store, _, _ = run_suite(suite, args.out, jobs=args.jobs, progress=False)
        recs = suite_records(store, suite)
        for r in recs:
            if name in ("base",) and r["method"] == "lora_matched":
                ref[(r["task"], r["seed"])] = r["final_test_mse"]
        for m in sorted({r["method"] for r in recs}):
            by_task = {}
            for r in recs:
                if r["method"] == m:
                    by_task.setdefault(r["task"], []).append(r)
            cells, ratios = [], []
            for t in ("wave1d", "surface2d", "ridge5d"):
                rs = by_task.get(t, [])
                cells.append(float(np.mean([r["final_test_mse"] for r in rs])))
                ratios += [r["final_test_mse"] / ref[(t, r["seed"])] for r in rs
                           if (t, r["seed"]) in ref]
            g = float(np.exp(np.mean(np.log(ratios)))) if ratios else float("nan")
            rows.append((name, m, cells, g))
            print(f"{name:10s} {m:14s} " + " ".join(f"{c:.5f}" for c in cells)
                  + f"  geo-ratio vs lora_matched(base) {g:.3f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
