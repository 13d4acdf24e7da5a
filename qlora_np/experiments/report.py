"""Markdown tables from the stored records (deterministic: same records, same text).

One table per setting, one row per method, in the order the suite lists them:

  params      trainable parameters (per-task oracle: summed over its adapters)
  test MSE    final test MSE, mean ± sample std over seeds (n seeds)
  best        best test MSE seen during training (mean over seeds; evaluated every few steps)
  win vs LM   paired win rate against `lora_matched` on final test MSE (seeds where both ran)
  Δlog        mean |Δ log loss| over the last 25% of steps (mean over seeds)
  spikes      loss spikes per run (mean over seeds); see metrics.py for the definition
  time        fine-tuning wall time per run, seconds (mean)

The instruction setting adds the held-out-paraphrase and held-out-task MSEs; the continual
setting adds the mean forgetting (MSE on an earlier region after the last stage minus right
after its own stage).
"""

from __future__ import annotations

import math

import numpy as np

from .metrics import paired_win_rate, summarize

REFERENCE = "lora_matched"


def fmt(x, digits=4):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{digits}g}"


def fmt_ms(summary):
    if summary["n"] == 0:
        return "n/a"
    return f"{fmt(summary['mean'])} ± {fmt(summary['std'], 2)} ({summary['n']})"


def _values(recs, get):
    out = {}
    for r in recs:
        v = get(r)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            out[r["seed"]] = v
    return out


def task_table(records, task, methods):
    """Markdown table of one setting."""
    recs = [r for r in records if r["task"] == task]
    if not recs:
        return ""
    kind = recs[0].get("kind", "single")
    by_method = {m: [r for r in recs if r["method"] == m] for m in methods}
    ref = _values(by_method.get(REFERENCE, []), lambda r: r["final_test_mse"])
    head = ["method", "params", "test MSE (mean ± std, n)", "best"]
    if kind == "instruction":
        head += ["held-out paraphrase", "held-out task"]
    if kind == "continual":
        head += ["forgetting"]
    head += [f"win vs {REFERENCE}", "mean abs Δlog, last 25%", "spikes", "time s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        rs = by_method[m]
        if not rs:
            continue
        params = sorted({r["trainable_params"] for r in rs})
        mse = _values(rs, lambda r: r["final_test_mse"])
        row = [m, "/".join(str(p) for p in params), fmt_ms(summarize(list(mse.values()))),
               fmt(summarize([r["best_test_mse"] for r in rs])["mean"])]
        if kind == "instruction":
            for split in ("test_paraphrase", "test_heldout"):
                vals = list(_values(rs, lambda r, s=split: r["split_mse"].get(s)).values())
                row.append(fmt_ms(summarize(vals)))
        if kind == "continual":
            row.append(fmt_ms(summarize([r["mean_forgetting"] for r in rs])))
        if m == REFERENCE:
            row.append("—")
        else:
            rate, n = paired_win_rate(mse, ref)
            row.append("n/a" if n == 0 else f"{rate:.2f} ({n})")
        row += [fmt(float(np.mean([r["mean_abs_dlog_last25"] for r in rs])), 3),
                fmt(float(np.mean([r["n_spikes"] for r in rs])), 2),
                fmt(float(np.mean([r["wall_time_s"] for r in rs])), 2)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def suite_tables(records, suite):
    """All settings' tables, with headings, as one Markdown string."""
    parts = []
    for t in suite.tasks:
        table = task_table(records, t.label, t.methods)
        if table:
            parts.append(f"### {t.label}\n\n{table}\n")
    return "\n".join(parts)


def results_markdown(records, suite, command):
    """The whole `results.md`: the command, the suite's settings, the tables."""
    n_runs = len(records)
    seeds = sorted({r["seed"] for r in records})
    head = [
        "# Regression suite results",
        "",
        f"Command: `{command}`",
        "",
        f"{n_runs} runs, seeds {seeds[0] if seeds else '-'}..{seeds[-1] if seeds else '-'}; "
        f"{suite.steps} Adam steps (lr {suite.lr}, "
        f"{'full batch' if suite.batch_size is None else f'batch {suite.batch_size}'}, "
        f"weight decay {suite.weight_decay}); base MLP hidden {list(suite.hidden)}; "
        f"Queryable LoRA config {suite.qlora}.",
        "",
        "Columns: see `qlora_np/experiments/report.py`; `win vs lora_matched` is the share of "
        "seeds where the method's final test MSE is below matched LoRA's (ties count 1/2).",
        "",
        "",
    ]
    return "\n".join(head) + suite_tables(records, suite)
