"""The compared methods: LoRA baselines, Queryable LoRA, its ablations and the per-task oracle.

A `Method` is a name plus how to build its adapter config from the suite's Queryable LoRA config
`qcfg` (a `QLoRAConfig`, unbound):

  lora                LoRA at the same rank as Queryable LoRA
  lora_matched        LoRA at the smallest rank with >= Queryable LoRA's trainable parameters
                      (SPEC §7; matched against the `qlora` config of the same setting)
  qlora               Queryable LoRA with the suite's config (input routing only, no prior)
  qlora_nosummary     ablation: summary = "none" (the query sees the current block only)
  qlora_dense         ablation: dense routing, k = N
  qlora_top2          ablation: top-2 routing (k = 2)
  qlora_n1            ablation: one atom (N = 1); SPEC §9.4 says this is LoRA with B' = B M_1
  qlora_prior         instruction setting: prior from the true instruction of each row
  qlora_prior_shuffled  prior from another row's instruction (rows permuted): no information
  qlora_prior_random  prior from a random string per distinct instruction text: keeps the
                      identity of each instruction but none of its meaning
  lora_per_task       instruction setting: one LoRA per training task (an oracle that is told the
                      task; many more parameters; undefined on held-out tasks)
  *_wd                the same method with AdamW weight decay 0.1 on all its parameters
  qlora_lr3e-3        Queryable LoRA at learning rate 3e-3 (its best in tuning) instead of 1e-2

Regularisation (`weight_decay`) applies to every method alike, so comparisons stay fair.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from qlora_np import LoraConfig, QLoRAConfig, bind_to_mlp, matched_lora_rank


@dataclass(frozen=True)
class Method:
    name: str
    adapter: str                      # "lora" | "qlora"
    overrides: dict = field(default_factory=dict)   # changes to the suite's QLoRAConfig
    matched: bool = False             # LoRA rank matched to the qlora config's parameter count
    instructions: str | None = None   # None | "true" | "shuffled" | "random"
    per_task: bool = False            # one adapter per training task (oracle)
    weight_decay: float | None = None  # AdamW decay for this method; None: the suite's
    lr: float | None = None           # learning rate for this method; None: the suite's

    def spec(self):
        """JSON-able description (part of the run's config hash; unset options left out)."""
        d = dataclasses.asdict(self)
        for key in ("weight_decay", "lr"):
            if d[key] is None:
                del d[key]
        return d


METHODS = {m.name: m for m in (
    Method("lora", "lora"),
    Method("lora_matched", "lora", matched=True),
    Method("qlora", "qlora"),
    Method("qlora_nosummary", "qlora", {"summary": "none", "d_summary": None}),
    Method("qlora_dense", "qlora", {"top_k": None}),
    Method("qlora_top2", "qlora", {"top_k": 2}),
    Method("qlora_n1", "qlora", {"n_atoms": 1, "top_k": None}),
    Method("qlora_prior", "qlora", instructions="true"),
    Method("qlora_prior_shuffled", "qlora", instructions="shuffled"),
    Method("qlora_prior_random", "qlora", instructions="random"),
    Method("lora_per_task", "lora", per_task=True),
    # Regularised variants for the small-data regime: the same decay for LoRA and Queryable LoRA.
    Method("lora_wd", "lora", weight_decay=0.1),
    Method("lora_matched_wd", "lora", matched=True, weight_decay=0.1),
    Method("qlora_wd", "qlora", weight_decay=0.1),
    # Queryable LoRA at the learning rate its own tuning preferred (3e-3; LoRA preferred 1e-2).
    Method("qlora_lr3e-3", "qlora", lr=3e-3),
)}


def get_method(name):
    if name not in METHODS:
        raise ValueError(f"method: expected one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name]


def qlora_config(qcfg: dict, method: Method, d_instruction: int):
    """Unbound QLoRAConfig of a Queryable LoRA method (the prior only for instruction methods)."""
    kw = dict(qcfg)
    kw.update(method.overrides)
    if method.instructions is None:
        kw["d_instruction"], kw["kl_weight"] = 0, 0.0
    else:
        kw["d_instruction"] = d_instruction
    return QLoRAConfig(**kw)


def build_config(method: Method, qcfg: dict, layer_sizes, d_instruction=0):
    """The method's adapter config, bound to the MLP with `layer_sizes`. `d_instruction > 0`
    in a setting with instructions: `lora_matched` then matches `qlora_prior` (prior included)."""
    if method.adapter == "qlora":
        return bind_to_mlp(qlora_config(qcfg, method, d_instruction), layer_sizes)
    rank = qcfg.get("rank", 4)
    if method.matched:
        ref = get_method("qlora_prior" if d_instruction else "qlora")
        ref_cfg = bind_to_mlp(qlora_config(qcfg, ref, d_instruction), layer_sizes)
        rank = matched_lora_rank(ref_cfg, ref_cfg.layer_shapes)
    return bind_to_mlp(LoraConfig(rank=rank, alpha=qcfg.get("alpha")), layer_sizes)


def instruction_texts(mode, splits: dict, rng):
    """The instruction strings a method sees, per split (see the module doc for the modes).
    `splits`: split name -> list of str. "random" uses one text -> random-string table across all
    splits, so a text seen in training gets the same random string at test time."""
    if mode == "true":
        return {k: list(v) for k, v in splits.items()}
    if mode == "shuffled":
        return {k: [v[i] for i in rng.permutation(len(v))] for k, v in sorted(splits.items())}
    if mode == "random":
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz     "))
        table = {}
        for t in sorted({t for v in splits.values() for t in v}):   # independent of row order
            table[t] = "".join(rng.choice(letters, size=len(t)))
        return {k: [table[t] for t in v] for k, v in splits.items()}
    raise ValueError(f"instructions: expected 'true', 'shuffled' or 'random', got {mode!r}")
