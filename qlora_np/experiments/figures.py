"""PNG figures of a suite's records (matplotlib, Agg backend; nothing is shown on screen).

  curves_<task>.png    training loss and test MSE over steps: mean over seeds, band = min..max
  fit_<task>.png       1-D tasks: target, noisy training points and each method's fit (seed 0)
  atoms_<task>.png     atom-usage heat map per block (mean routing weight, seed 0's `qlora`-type
                       run; atoms are only identifiable within one run, so seeds are not averaged)
  atoms_by_task_instruct.png   instruction setting: usage per task (rows) and atom, per block
  entropy_<task>.png   routing entropy (mean over blocks and test rows) over training
  forgetting_<task>.png continual setting: each region's test MSE over the stages, per method
  atoms_by_stage_<task>.png  continual setting: atom usage per test region after each stage
"""

from __future__ import annotations

import os
import re

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)


def _band(ax, curves, label, log=True):
    """Mean line and min..max band of curves given as lists of [step, value]."""
    n = min(len(c) for c in curves)
    steps = np.array([p[0] for p in curves[0][:n]])
    vals = np.array([[p[1] for p in c[:n]] for c in curves], dtype=float)
    line, = ax.plot(steps, vals.mean(axis=0), label=label, lw=1.4)
    ax.fill_between(steps, vals.min(axis=0), vals.max(axis=0), alpha=0.2, color=line.get_color())
    if log:
        ax.set_yscale("log")


def _by(records, task):
    out = {}
    for r in records:
        if r["task"] == task:
            out.setdefault(r["method"], []).append(r)
    return out


def learning_curves(records, task, methods, path):
    plt = _plt()
    by = _by(records, task)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for m in methods:
        if m in by:
            _band(axes[0], [r["train_curve"] for r in by[m]], m)
            _band(axes[1], [r["test_curve"] for r in by[m]], m)
    axes[0].set(title=f"{task}: training loss", xlabel="step", ylabel="MSE (noisy targets)")
    axes[1].set(title=f"{task}: test MSE (clean)", xlabel="step")
    axes[1].legend(fontsize=7)
    _save(plt, fig, path)


def fitted_curves(records, task, methods, data, path):
    plt = _plt()
    by = _by(records, task)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(data["x_train"][:, 0], data["y_train"][:, 0], s=3, c="0.7", label="training data")
    x = data["x_test"][:, 0]
    order = np.argsort(x)
    ax.plot(x[order], data["y_test"][order, 0], "k--", lw=1.5, label="target")
    for m in methods:
        rec = next((r for r in by.get(m, []) if r["seed"] == 0), None)
        if rec is not None and rec.get("pred_test"):
            ax.plot(x[order], np.asarray(rec["pred_test"])[order], lw=1.2,
                    label=f"{m} ({rec['final_test_mse']:.3g})")
    ax.set(title=f"{task}: fits after fine-tuning (seed 0; test MSE in brackets)", xlabel="x",
           ylabel="y")
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def atom_heatmaps(records, task, methods, path):
    plt = _plt()
    by = _by(records, task)
    recs = [next((r for r in by[m] if r["seed"] == 0), by[m][0]) for m in methods
            if m in by and by[m][0].get("atom_usage")]
    recs = [r for r in recs if len(r["atom_usage"][0]) > 1]
    if not recs:
        return False
    fig, axes = plt.subplots(1, len(recs), figsize=(3.2 * len(recs), 2.8), squeeze=False)
    for ax, r in zip(axes[0], recs):
        u = np.asarray(r["atom_usage"])                       # (blocks, N)
        im = ax.imshow(u, aspect="auto", cmap="viridis", vmin=0, vmax=max(1e-9, u.max()))
        ax.set(title=r["method"], xlabel="atom", ylabel="block")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{task}: mean routing weight per block (seed 0, test inputs)", fontsize=9)
    _save(plt, fig, path)
    return True


def atoms_by_task(records, task, method, labels, path):
    plt = _plt()
    rec = next((r for r in records if r["task"] == task and r["method"] == method
                and r.get("atom_usage_by_task")), None)
    if rec is None:
        return False
    ids = sorted(rec["atom_usage_by_task"], key=int)
    u = np.asarray([rec["atom_usage_by_task"][i] for i in ids])   # (tasks, blocks, N)
    n_blocks = u.shape[1]
    fig, axes = plt.subplots(1, n_blocks, figsize=(2.6 * n_blocks + 1.5, 3.8), squeeze=False)
    for b, ax in enumerate(axes[0]):
        ax.imshow(u[:, b, :], aspect="auto", cmap="viridis", vmin=0, vmax=max(1e-9, u.max()))
        ax.set(title=f"block {b}", xlabel="atom")
        ax.set_yticks(range(len(ids)))
        ax.set_yticklabels([labels.get(int(i), str(i)) for i in ids] if b == 0 else [],
                           fontsize=6)
    fig.suptitle(f"{task}, {method} (seed {rec['seed']}): atom usage per task", fontsize=9)
    _save(plt, fig, path)
    return True


def entropy_curves(records, task, methods, path):
    plt = _plt()
    by = _by(records, task)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    drawn = False
    for m in methods:
        curves = [[[p[0], float(np.mean(p[1]))] for p in r["entropy_curve"]]
                  for r in by.get(m, []) if r.get("entropy_curve")]
        if curves and len(by[m][0]["atom_usage"][0]) > 1:
            _band(ax, curves, m, log=False)
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set(title=f"{task}: routing entropy (nats; mean over blocks, test rows)", xlabel="step",
           ylabel="entropy")
    ax.legend(fontsize=7)
    _save(plt, fig, path)
    return True


def forgetting(records, task, methods, path):
    plt = _plt()
    by = _by(records, task)
    ms = [m for m in methods if m in by and by[m][0].get("region_curves")]
    if not ms:
        return False
    n_regions = len(by[ms[0]][0]["region_curves"][0]) - 1
    fig, axes = plt.subplots(1, len(ms), figsize=(3.8 * len(ms), 3.4), squeeze=False,
                             sharey=True)
    for ax, m in zip(axes[0], ms):
        for j in range(n_regions):
            _band(ax, [[[p[0], p[1 + j]] for p in r["region_curves"]] for r in by[m]],
                  f"region {j}")
        stage_len = by[m][0]["n_steps"] / n_regions
        for s in range(1, n_regions):
            ax.axvline(s * stage_len, color="0.5", lw=0.8, ls=":")
        f = np.mean([r["mean_forgetting"] for r in by[m]])
        ax.set(title=f"{m} (mean forgetting {f:.3g})", xlabel="step (stages split by dots)")
    axes[0][0].set_ylabel("test MSE of each region")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{task}: region test MSE while regions arrive one by one (band: seeds)",
                 fontsize=9)
    _save(plt, fig, path)
    return True


def atoms_by_stage(records, task, method, path):
    """Continual setting: after each stage, atom usage (mean over blocks) on each region."""
    plt = _plt()
    rec = next((r for r in records if r["task"] == task and r["method"] == method
                and r.get("atom_usage_by_stage") and r["atom_usage_by_stage"][0][0]), None)
    if rec is None or len(rec["atom_usage_by_stage"][0][0][0]) < 2:
        return False
    u = np.asarray(rec["atom_usage_by_stage"]).mean(axis=2)     # (stages, regions, N)
    fig, axes = plt.subplots(1, u.shape[0], figsize=(3.2 * u.shape[0], 2.6), squeeze=False)
    for s, ax in enumerate(axes[0]):
        ax.imshow(u[s], aspect="auto", cmap="viridis", vmin=0, vmax=max(1e-9, u.max()))
        ax.set(title=f"after stage {s + 1}", xlabel="atom", ylabel="test region")
        ax.set_yticks(range(u.shape[1]))
    fig.suptitle(f"{task}, {method} (seed {rec['seed']}): atom usage per region "
                 "(mean over blocks)", fontsize=9)
    _save(plt, fig, path)
    return True


def write_figures(records, suite, out_dir):
    """Every figure that the records allow; returns the list of files written."""
    from .tasks import HELD_OUT_TASKS, INSTRUCT_TASKS
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for t in suite.tasks:
        recs = [r for r in records if r["task"] == t.label]
        if not recs:
            continue
        s = _slug(t.label)
        p = os.path.join(out_dir, f"curves_{s}.png")
        learning_curves(recs, t.label, t.methods, p)
        written.append(p)
        if any(r.get("pred_test") for r in recs) and t.kind == "single":
            from .loader import call_task
            data = call_task(t.fn, 0, where=f"task '{t.label}'")
            if data["x_test"].shape[1] == 1:
                p = os.path.join(out_dir, f"fit_{s}.png")
                fitted_curves(recs, t.label, t.methods, data, p)
                written.append(p)
        p = os.path.join(out_dir, f"atoms_{s}.png")
        if atom_heatmaps(recs, t.label, t.methods, p):
            written.append(p)
        p = os.path.join(out_dir, f"entropy_{s}.png")
        if entropy_curves(recs, t.label, t.methods, p):
            written.append(p)
        if t.kind == "instruction":
            labels = {i: f"{'+' if g > 0 else '-'}{k} {side}"
                      + (" (held out)" if (side, k, g) in HELD_OUT_TASKS else "")
                      for i, (side, k, g) in enumerate(INSTRUCT_TASKS)}
            p = os.path.join(out_dir, f"atoms_by_task_{s}.png")
            if atoms_by_task(recs, t.label, "qlora_prior", labels, p):
                written.append(p)
        if t.kind == "continual":
            p = os.path.join(out_dir, f"forgetting_{s}.png")
            if forgetting(recs, t.label, t.methods, p):
                written.append(p)
            p = os.path.join(out_dir, f"atoms_by_stage_{s}.png")
            if atoms_by_stage(recs, t.label, "qlora", p):
                written.append(p)
    return written
