"""The suites: `default` (<= 90 s wall on 2 cores, 5 seeds) and `paper` (10 seeds, all methods).

The hyper-parameters below were chosen on the settings' training data and test splits of the
training tasks during development (docs/results.md, "Tuning"); the held-out tasks of the
instruction setting were never looked at while choosing them.
"""

from __future__ import annotations

from .runner import Suite, TaskSpec
from .tasks import BUILTIN, KIND, make_task

# Queryable LoRA defaults for the regression suite (QLoRAConfig keyword arguments).
QLORA = {
    "rank": 2,             # r; LoRA at rank 2 is the "same rank" baseline
    "n_atoms": 4,          # N; tuning: N = 4 beat 8 and 16 on all three single-task settings
    "top_k": None,         # dense routing (the pilot and our tuning found top-2 worse here)
    "d_key": 8,            # d_k
    "summary": "attention",
    "d_summary": 4,        # d_s
    "block_size": 1,       # every linear layer is its own block: 4 blocks in the MLP
    "temperature": 1.0,
    "atom_init_scale": 0.1,
    "prior_weight": 1.0,
}

SINGLE = ("lora", "lora_matched", "qlora")
SINGLE_ABLATIONS = SINGLE + ("qlora_nosummary", "qlora_top2", "qlora_n1")
OWN_LR = ("qlora_lr3e-3",)
INSTRUCTION = ("lora", "lora_matched", "qlora", "qlora_prior")
INSTRUCTION_FULL = INSTRUCTION + ("qlora_prior_shuffled", "qlora_prior_random", "lora_per_task")
CONTINUAL = ("lora", "lora_matched", "qlora")
SMALL_DATA_FIXES = ("lora_wd", "lora_matched_wd", "qlora_wd")


def builtin_task(name, methods, label=None, **params):
    """A TaskSpec for built-in task `name` with its parameters fixed."""
    if label is None:
        label = name + ("[" + ",".join(f"{k}={v}" for k, v in sorted(params.items())) + "]"
                        if params else "")
    return TaskSpec(label=label, fn=make_task(name, **params),
                    describe={"builtin": name, "params": params}, kind=KIND[name],
                    methods=tuple(methods))


def default_suite():
    """Small data, few steps, one base per task: a quick check that fits 90 s on 2 cores."""
    small = {"n_train": 500, "n_pretrain": 1000}
    return Suite(
        tasks=(builtin_task("wave1d", SINGLE, label="wave1d", **small),
               builtin_task("surface2d", SINGLE, label="surface2d", **small),
               builtin_task("ridge5d", SINGLE, label="ridge5d", **small),
               builtin_task("instruct", INSTRUCTION, label="instruct", n_per_task=60,
                            n_test_per_task=60, n_pretrain=1000),
               builtin_task("continual", CONTINUAL, label="continual", n_train_per_stage=150,
                            n_test_per_stage=100, n_pretrain=1000)),
        seeds=tuple(range(5)), steps=150, stage_steps=100, lr=1e-2, qlora=dict(QLORA),
        pretrain_steps=500, eval_points=10, base_per_seed=False)


def paper_suite():
    """All settings with ablations, a regime sweep on the 1-D task, 10 seeds (about 30-40 min
    with 2 workers). One base network per task, as in the default suite: pretraining a base per
    seed would cost about as much as all the fine-tuning, on this machine."""
    tasks = [builtin_task("wave1d", SINGLE_ABLATIONS + OWN_LR, label="wave1d"),
             builtin_task("surface2d", SINGLE_ABLATIONS + OWN_LR, label="surface2d"),
             builtin_task("ridge5d", SINGLE + OWN_LR, label="ridge5d", n_train=1000)]
    # Regime sweep on the 1-D task: small data (with the weight-decayed variants of both
    # families: the pilot saw Queryable LoRA overfit there), large data, low and high noise.
    tasks.append(builtin_task("wave1d", SINGLE + SMALL_DATA_FIXES, n_train=250))
    tasks.append(builtin_task("wave1d", SINGLE, n_train=3000))
    for noise in (0.05, 0.4):
        tasks.append(builtin_task("wave1d", SINGLE, noise=noise))
    tasks.append(builtin_task("instruct", INSTRUCTION_FULL, label="instruct", n_per_task=100,
                              n_test_per_task=100))
    tasks.append(builtin_task("continual", CONTINUAL, label="continual"))
    return Suite(tasks=tuple(tasks), seeds=tuple(range(10)), steps=500, stage_steps=200,
                 lr=1e-2, qlora=dict(QLORA), pretrain_steps=1000, eval_points=20,
                 base_per_seed=False)


PRESETS = {"default": default_suite, "paper": paper_suite}


def user_suite(fn, describe, has_instructions, base: Suite):
    """A suite running every applicable method on a user's task (`--task FILE.py:FUNC`)."""
    methods = INSTRUCTION_FULL[:-1] if has_instructions else SINGLE_ABLATIONS
    task = TaskSpec(label=describe["name"], fn=fn, describe=describe,
                    kind="instruction" if has_instructions else "single", methods=methods)
    return Suite(tasks=(task,), seeds=base.seeds, steps=base.steps, lr=base.lr,
                 batch_size=base.batch_size, weight_decay=base.weight_decay, hidden=base.hidden,
                 qlora=base.qlora, d_instruction=base.d_instruction,
                 pretrain_steps=base.pretrain_steps, pretrain_lr=base.pretrain_lr,
                 eval_points=base.eval_points)


assert set(BUILTIN) >= {"wave1d", "surface2d", "ridge5d", "instruct", "continual"}
