"""Run a suite: every (task, seed, method), one record per finished run, resumable.

For each (task, seed) the runner builds the task's data from the seed, pretrains (or loads from
the cache) the frozen base MLP on the source data, then fine-tunes every method on the same data
and base, each starting from an adapter initialised from the same seed. Each finished run becomes
one record, appended atomically to `DIR/results.json` (store.py); runs whose key is already there
are skipped. Work is grouped by (task, seed), so data and base are made once per group; groups
run in `jobs` worker processes. Numbers do not depend on the number of workers or their order.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ._blas import limit_blas_threads
from .loader import call_task
from .methods import get_method
from .pretrain import base_forward, cached_base
from .runs import make_record, run_continual, run_single
from .store import ResultStore, config_hash, run_key

CODE_VERSION = 2        # bump when a change alters the numbers, so old records are not reused


@dataclass(frozen=True)
class TaskSpec:
    """One setting in a suite: a task function plus the methods run on it."""
    label: str                     # name in tables and figures
    fn: object                     # seed -> dict (built-in partial or a user's function)
    describe: dict                 # JSON-able identity of the task (hashed into the runs)
    kind: str = "single"           # "single" | "instruction" | "continual"
    methods: tuple = ("lora", "lora_matched", "qlora")


@dataclass(frozen=True)
class Suite:
    tasks: tuple
    seeds: tuple = (0, 1, 2, 3, 4)
    steps: int = 300
    lr: float = 1e-2
    batch_size: int | None = None         # None: full batch
    weight_decay: float = 0.0
    hidden: tuple = (32, 32, 32)          # hidden widths of the base MLP
    qlora: dict = field(default_factory=dict)   # QLoRAConfig keyword arguments
    d_instruction: int = 32
    pretrain_steps: int = 800
    pretrain_lr: float = 1e-2
    eval_points: int = 20                 # test evaluations per run (per stage when continual)
    stage_steps: int | None = None        # continual: steps per stage (None: steps // n_stages)
    base_per_seed: bool = True            # False: one base per task (seed 0's source data)

    def train_spec(self):
        return {"steps": self.steps, "lr": self.lr, "batch_size": self.batch_size,
                "weight_decay": self.weight_decay, "eval_points": self.eval_points,
                "stage_steps": self.stage_steps}

    def run_config(self, task: TaskSpec, method_name):
        """Everything that decides a run's numbers (its hash is part of the run's key)."""
        return {"version": CODE_VERSION, "task": task.describe, "kind": task.kind,
                "method": get_method(method_name).spec(), "qlora": self.qlora,
                "d_instruction": self.d_instruction, "train": self.train_spec(),
                "hidden": list(self.hidden),
                "pretrain": {"steps": self.pretrain_steps, "lr": self.pretrain_lr,
                             "per_seed": self.base_per_seed}}

    def planned(self):
        """[(task, seed, method, key)] in a fixed order."""
        out = []
        for t in self.tasks:
            for s in self.seeds:
                for m in t.methods:
                    h = config_hash(self.run_config(t, m))
                    out.append((t, s, m, (t.label, m, int(s), h)))
        return out


# ----------------------------------------------------------------------------------------------
# a (task, seed) group, and the suite
# ----------------------------------------------------------------------------------------------
def prepare(suite, task, seed, cache_dir):
    """The task's data for `seed` and the pretrained base (cached). With `base_per_seed=False`
    the base is pretrained once per task, on seed 0's source data."""
    data = call_task(task.fn, seed, where=f"task '{task.label}'")
    layer_sizes = [data["x_pretrain"].shape[1], *suite.hidden, data["y_pretrain"].shape[1]]
    if not suite.base_per_seed and seed != 0:
        src = call_task(task.fn, 0, where=f"task '{task.label}'")
        data = dict(data, x_pretrain=src["x_pretrain"], y_pretrain=src["y_pretrain"])
        seed = 0
    key = "base-" + config_hash({"task": task.describe, "seed": int(seed),
                                 "sizes": layer_sizes, "steps": suite.pretrain_steps,
                                 "lr": suite.pretrain_lr, "version": CODE_VERSION})
    base, _ = cached_base(cache_dir, key, layer_sizes, data["x_pretrain"], data["y_pretrain"],
                          rng=np.random.default_rng([seed, 0]), steps=suite.pretrain_steps,
                          lr=suite.pretrain_lr)
    return data, base


def run_group(suite, task, seed, jobs_in_group, cache_dir, emit):
    """Run the group's pending methods; `emit(record)` for each finished run."""
    data, base = prepare(suite, task, seed, cache_dir)
    for method, key in jobs_in_group:
        if task.kind == "continual":
            out = run_continual(suite, task, data, base, method, seed)
        else:
            out = run_single(suite, task, data, base, method, seed)
        emit(make_record(suite, task, seed, method, key, out))


def _warm_base(suite, task_idx, cache_dir):
    limit_blas_threads(1)
    prepare(suite, suite.tasks[task_idx], 0, cache_dir)


def _worker(suite, groups, cache_dir, queue):
    limit_blas_threads(1)
    try:
        for task_idx, seed, jobs_in_group in groups:
            run_group(suite, suite.tasks[task_idx], seed, jobs_in_group, cache_dir,
                      lambda rec: queue.put(("record", rec)))
        queue.put(("done", None))
    except KeyboardInterrupt:
        queue.put(("done", None))
    except BaseException as e:  # report the failure to the parent, which stops the suite
        import traceback
        queue.put(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


class Progress:
    """One status line: runs done, current loss, ETA."""

    def __init__(self, total, stream=sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.start = time.perf_counter()
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def update(self, rec):
        self.done += 1
        el = time.perf_counter() - self.start
        eta = el / self.done * (self.total - self.done)
        loss = rec["train_curve"][-1][1]
        line = (f"[{self.done}/{self.total}] {rec['task']} {rec['method']} seed {rec['seed']}: "
                f"train loss {loss:.4g}, test MSE {rec['final_test_mse']:.4g} | "
                f"elapsed {el:.0f}s, ETA {eta:.0f}s")
        if self.tty:
            self.stream.write("\r\033[K" + line)
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def run_suite(suite, out_dir, jobs=1, progress=True):
    """Run every pending run of `suite`, appending records to `out_dir/results.json`.
    Returns (store, planned runs, number of runs done now)."""
    store = ResultStore(out_dir)
    plan = suite.planned()
    pending = {}
    for t, s, m, key in plan:
        if not store.has(key):
            pending.setdefault((suite.tasks.index(t), s), []).append((m, key))
    groups = [(ti, s, jobs_list) for (ti, s), jobs_list in pending.items()]
    n_pending = sum(len(g[2]) for g in groups)
    if progress:
        print(f"{len(plan)} runs planned, {len(plan) - n_pending} already in "
              f"{store.path}, {n_pending} to run", file=sys.stderr)
    if not groups:
        return store, plan, 0
    cache_dir = os.path.join(out_dir, "bases")
    bar = Progress(n_pending) if progress else None

    def emit(rec):
        store.append(rec)
        if bar:
            bar.update(rec)

    limit_blas_threads(1)
    jobs = max(1, min(jobs, len(groups)))
    if not suite.base_per_seed and jobs > 1:
        # One shared base per task: pretrain them first, in parallel, so that two workers
        # never both pretrain the same base.
        tasks = sorted({ti for ti, _, _ in groups})
        with mp.get_context("fork").Pool(min(jobs, len(tasks))) as pool:
            pool.starmap(_warm_base, [(suite, ti, cache_dir) for ti in tasks])
    if jobs == 1:
        for ti, s, jl in groups:
            run_group(suite, suite.tasks[ti], s, jl, cache_dir, emit)
        return store, plan, n_pending
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    # Deal groups round-robin, largest first, so the workers finish at about the same time.
    order = sorted(range(len(groups)), key=lambda i: -len(groups[i][2]))
    shares = [[groups[i] for i in order[w::jobs]] for w in range(jobs)]
    procs = [ctx.Process(target=_worker, args=(suite, sh, cache_dir, queue), daemon=True)
             for sh in shares]
    for p in procs:
        p.start()
    running = len(procs)
    try:
        while running:
            kind, payload = queue.get()
            if kind == "record":
                emit(payload)
            elif kind == "done":
                running -= 1
            else:
                raise RuntimeError(f"a worker failed: {payload}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    return store, plan, n_pending


def suite_records(store, suite):
    """The stored records of this suite's planned runs, in plan order (missing ones skipped)."""
    by_key = {run_key(r): r for r in store.records}
    return [by_key[k] for _, _, _, k in suite.planned() if k in by_key]


def replace(suite, **changes):
    return dataclasses.replace(suite, **changes)


__all__ = ["Suite", "TaskSpec", "base_forward", "replace", "run_suite", "suite_records"]
