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

from qlora_np import adapted_forward, count_params, embed_instructions, fit, init_adapter

from . import metrics
from ._blas import limit_blas_threads
from .loader import call_task
from .methods import build_config, get_method, instruction_texts
from .pretrain import base_forward, cached_base
from .store import ResultStore, config_hash, run_key

CODE_VERSION = 2        # bump when a change alters the numbers, so old records are not reused
CURVE_POINTS = 200      # stored training curves are subsampled to at most this many points


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
# one run
# ----------------------------------------------------------------------------------------------
def _subsample(curve, points=CURVE_POINTS):
    idx = np.unique(np.round(np.linspace(0, len(curve) - 1, min(points, len(curve)))).astype(int))
    return [[int(i) + 1, float(curve[i])] for i in idx]


def _mse(a, b):
    return float(np.mean((a - b) ** 2))


def _predict(config, base, params, x, e=None):
    y, adapter = adapted_forward(config, base, params, x, e)
    return np.asarray(y), adapter.routing_log()


def _wd(suite, method):
    return suite.weight_decay if method.weight_decay is None else method.weight_decay


def _lr(suite, method):
    return suite.lr if method.lr is None else method.lr


def _eval_every(steps, points):
    return max(1, steps // max(1, points))


def _embed(config, texts):
    d_e = getattr(config, "d_instruction", 0)
    return None if not d_e or texts is None else embed_instructions(texts, d_e)


def _usage(routing, rows=None):
    """Mean routing weight of each atom per block: [block][atom]."""
    return [np.asarray(r["weights"] if rows is None else r["weights"][rows]).mean(axis=0).tolist()
            for r in routing]


def run_single(suite, task, data, base, method, seed):
    """Fine-tune one method on one task's data: returns the run's measurements."""
    m = get_method(method)
    layer_sizes = [data["x_train"].shape[1], *suite.hidden, data["y_train"].shape[1]]
    has_instr = "instructions_train" in data
    d_e = suite.d_instruction if has_instr else 0
    config = build_config(m, suite.qlora, layer_sizes, d_e)
    if m.per_task:
        return _run_per_task(suite, config, data, base, seed, _wd(suite, m))
    rng = np.random.default_rng([seed, 1])      # adapter init and minibatches: same for all methods
    params = init_adapter(config, rng)
    splits = [k[2:] for k in data if k.startswith("x_test")]   # test, test_paraphrase, ...
    texts = {}
    if m.instructions is not None:
        texts = instruction_texts(m.instructions, {s: data[f"instructions_{s}"]
                                                   for s in ["train"] + splits},
                                  np.random.default_rng([seed, 2]))
    e_train = _embed(config, texts.get("train"))
    e_test = {s: _embed(config, texts.get(s)) for s in splits}
    x_te, y_te = data["x_test"], data["y_test"]
    evals = []

    def callback(step, p, train_loss):
        pred, routing = _predict(config, base, p, x_te, e_test["test"])
        ent = [float(np.mean(r["entropy"])) for r in routing]
        evals.append([step, _mse(pred, y_te), ent])
        return None

    steps = suite.steps
    start = time.perf_counter()
    params, hist = fit(config, base, params, data["x_train"], data["y_train"], steps=steps,
                       lr=_lr(suite, m), batch_size=suite.batch_size, rng=rng, instruction=e_train,
                       weight_decay=_wd(suite, m),
                       eval_every=_eval_every(steps, suite.eval_points), callback=callback)
    wall = time.perf_counter() - start
    out = {"config": config.to_dict(), "trainable_params": count_params(params),
           "train_loss": hist["train_loss"], "evals": evals, "wall_time_s": wall}
    split_mse = {}
    for s in splits:
        pred, routing = _predict(config, base, params, data[f"x_{s}"], e_test[s])
        split_mse[s] = _mse(pred, data[f"y_{s}"])
        if s == "test":
            out["pred_test"] = pred[:, 0].tolist() if data["x_test"].shape[1] == 1 else None
            if routing:
                out["atom_usage"] = _usage(routing)
                ids = data.get("task_ids_test")
                if ids is not None:
                    out["atom_usage_by_task"] = {int(t): _usage(routing, ids == t)
                                                 for t in np.unique(ids)}
        elif s == "test_heldout" and routing and data.get("task_ids_test_heldout") is not None:
            ids = data["task_ids_test_heldout"]
            out.setdefault("atom_usage_by_task", {}).update(
                {int(t): _usage(routing, ids == t) for t in np.unique(ids)})
    out["split_mse"] = split_mse
    out["final_train_mse"] = _mse(_predict(config, base, params, data["x_train"], e_train)[0],
                                  data["y_train"])
    return out


def _run_per_task(suite, config, data, base, seed, weight_decay):
    """Oracle: one LoRA per training task, each trained on that task's rows only."""
    ids_tr = data["task_ids_train"]
    tasks = np.unique(ids_tr)
    losses, evals_by_task, total_params, wall = [], [], 0, 0.0
    preds = {s: np.full_like(data[f"y_{s}"], np.nan) for s in ("test", "test_paraphrase")
             if f"x_{s}" in data}
    for t in tasks:
        rng = np.random.default_rng([seed, 1, int(t)])
        params = init_adapter(config, rng)
        rows = ids_tr == t
        te_rows = data["task_ids_test"] == t
        x_te, y_te = data["x_test"][te_rows], data["y_test"][te_rows]
        evals = []

        def callback(step, p, train_loss):
            evals.append([step, _mse(_predict(config, base, p, x_te)[0], y_te), []])

        start = time.perf_counter()
        params, hist = fit(config, base, params, data["x_train"][rows], data["y_train"][rows],
                           steps=suite.steps, lr=suite.lr, batch_size=suite.batch_size, rng=rng,
                           weight_decay=weight_decay,
                           eval_every=_eval_every(suite.steps, suite.eval_points),
                           callback=callback)
        wall += time.perf_counter() - start
        total_params += count_params(params)
        losses.append(hist["train_loss"])
        evals_by_task.append(evals)
        for s in preds:
            r = data[f"task_ids_{s}"] == t
            preds[s][r] = _predict(config, base, params, data[f"x_{s}"][r])[0]
    # Equal test rows per task, so the mean of per-task test MSEs is the test MSE.
    evals = [[ev[0][0], float(np.mean([e[1] for e in ev])), []] for ev in zip(*evals_by_task)]
    split_mse = {s: _mse(p, data[f"y_{s}"]) for s, p in preds.items()}
    if "x_test_heldout" in data:
        split_mse["test_heldout"] = None      # no LoRA exists for an unseen task
    return {"config": config.to_dict(), "trainable_params": total_params,
            "train_loss": np.mean(losses, axis=0).tolist(), "evals": evals, "wall_time_s": wall,
            "split_mse": split_mse, "final_train_mse": float("nan"), "n_adapters": len(tasks)}


def run_continual(suite, task, data, base, method, seed):
    """Train one adapter stage after stage; measure every region after every stage."""
    m = get_method(method)
    layer_sizes = [data["x_train"].shape[1], *suite.hidden, data["y_train"].shape[1]]
    config = build_config(m, suite.qlora, layer_sizes, 0)
    rng = np.random.default_rng([seed, 1])
    params = init_adapter(config, rng)
    stages = data["stages"]
    losses, evals, region_curves = [], [], []
    stage_mse, usage_by_stage = [], []
    wall = 0.0
    steps = suite.stage_steps or max(1, suite.steps // len(stages))
    every = _eval_every(steps, max(2, suite.eval_points // len(stages)))
    for s, stage in enumerate(stages):
        offset = s * steps

        def callback(step, p, train_loss):
            pred, routing = _predict(config, base, p, data["x_test"])
            ent = [float(np.mean(r["entropy"])) for r in routing]
            evals.append([offset + step, _mse(pred, data["y_test"]), ent])
            region_curves.append([offset + step] + [
                _mse(_predict(config, base, p, st["x_test"])[0], st["y_test"]) for st in stages])

        start = time.perf_counter()
        params, hist = fit(config, base, params, stage["x_train"], stage["y_train"],
                           steps=steps, lr=_lr(suite, m), batch_size=suite.batch_size, rng=rng,
                           weight_decay=_wd(suite, m), eval_every=every, callback=callback)
        wall += time.perf_counter() - start
        losses.extend(hist["train_loss"])
        row, usage = [], []
        for st in stages:
            pred, routing = _predict(config, base, params, st["x_test"])
            row.append(_mse(pred, st["y_test"]))
            usage.append(_usage(routing) if routing else None)
        stage_mse.append(row)
        usage_by_stage.append(usage)
    pred, routing = _predict(config, base, params, data["x_test"])
    n = len(stages)
    forgetting = [stage_mse[n - 1][i] - stage_mse[i][i] for i in range(n - 1)]
    return {"config": config.to_dict(), "trainable_params": count_params(params),
            "train_loss": losses, "evals": evals, "wall_time_s": wall,
            "split_mse": {"test": _mse(pred, data["y_test"])},
            "final_train_mse": float("nan"), "stage_steps": steps,
            "stage_mse": stage_mse, "forgetting": forgetting,
            "mean_forgetting": float(np.mean(forgetting)) if forgetting else 0.0,
            "region_curves": region_curves, "atom_usage_by_stage": usage_by_stage,
            "atom_usage": _usage(routing) if routing else None,
            "pred_test": pred[:, 0].tolist() if data["x_test"].shape[1] == 1 else None}


def _stability(loss, stage_steps=None):
    """Within-run stability. Continual runs: per stage (the jump when a new region arrives is
    not an instability), spikes summed over stages, |Δ log loss| over the last stage's last 25%."""
    if not stage_steps:
        return metrics.stability(loss)
    parts = [loss[i:i + stage_steps] for i in range(0, len(loss), stage_steps)]
    return {"mean_abs_dlog_last25": metrics.mean_abs_dlog(parts[-1]),
            "n_spikes": int(sum(metrics.count_spikes(p) for p in parts))}


def make_record(suite, task, seed, method, key, out):
    """Turn a run's measurements into the stored record (metrics computed on the full curve)."""
    loss = out.pop("train_loss")
    evals = out.pop("evals")
    test_curve = [[e[0], e[1]] for e in evals]
    rec = {"task": task.label, "method": method, "seed": int(seed), "config_hash": key[3],
           "kind": task.kind, "final_test_mse": out["split_mse"]["test"],
           "best_test_mse": float(min(e[1] for e in evals)) if evals else None,
           "train_curve": _subsample(loss), "test_curve": test_curve,
           "entropy_curve": [[e[0], e[2]] for e in evals if e[2]],
           "n_steps": len(loss), **_stability(loss, out.get("stage_steps")), **out}
    rec["run_config"] = suite.run_config(task, method)
    return rec


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


__all__ = ["TaskSpec", "Suite", "run_suite", "suite_records", "base_forward", "replace"]
