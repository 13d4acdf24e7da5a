"""CPU regression experiments for Queryable LoRA (issue: reproduce the paper's regression claim).

The paper (arXiv 2605.08423) reports that on noisy non-linear regression Queryable LoRA beats
standard LoRA at a comparable parameter count, in final test error and in training stability.
This subpackage tests that claim on a CPU:

- `tasks`    : the settings (single-task, multi-task instruction, continual), seeded generators.
- `loader`   : `--task FILE.py:FUNC`, a user's own task, validated with clear errors.
- `pretrain` : the frozen base MLP of SPEC §8, pretrained on each task's source function.
- `methods`  : LoRA (same rank / matched parameters), Queryable LoRA, ablations, oracles.
- `runs`     : one run: fine-tune one method on one task, measure it, make its record.
- `runner`   : every (task, method, seed) of a suite, in worker processes, resumable.
- `presets`  : the `default` and `paper` suites and the frozen defaults; `tune`: how they were chosen.
- `metrics`  : final-MSE summaries, paired win rate, stability (|Δ log loss|, loss spikes).
- `store`    : the results file, appended atomically; resume skips finished runs.
- `report`   : Markdown tables.  `figures`: PNG figures (matplotlib, Agg backend).
- `cli`      : `python -m qlora_np regress ...`.

See docs/experiments.md for the protocol and docs/results.md for the findings.
"""
