"""One run: fine-tune one method on one task's data, measure it, and make its record.

`run_single` covers the single-task and instruction settings (and the one-LoRA-per-task oracle),
`run_continual` the continual setting. Both return the run's raw measurements (the full training
curve, test evaluations, routing statistics); `make_record` turns them into the stored record,
computing the stability metrics on the full curve and keeping a subsampled copy of it.
"""

from __future__ import annotations

import time

import numpy as np

from qlora_np import (
    adapted_forward,
    count_params,
    embed_instructions,
    fit,
    init_adapter,
)

from . import metrics
from .methods import build_config, get_method, instruction_texts

CURVE_POINTS = 200      # stored training curves are subsampled to at most this many points


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

        def callback(step, p, train_loss, x_te=x_te, y_te=y_te, evals=evals):
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

        def callback(step, p, train_loss, offset=offset):
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
