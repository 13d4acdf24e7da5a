"""NumPy vs PyTorch on the SPEC §8 MLP: the case grid, the random-config fuzzer, the CUDA rows.

A *case* is everything both sides need: a bound config, layer sizes, base weights, adapter
parameters, inputs and a cotangent. Both sides get the same arrays (parity exchanges weights, not
seeds) and compute

    y = adapted MLP(x)                      outputs, and the routing w_b of every block
    grads = d(sum y * cotangent) / d(theta) every trainable parameter

NumPy (autograd, float64) is the reference; PyTorch runs in float64, float32 (and bfloat16 on a
GPU). Parameters are random, not the SPEC §6 init (its B = 0 would make most gradients vacuous),
and top-k cases are redrawn until every row of every block has a margin of at least `MIN_MARGIN`
between its k-th and (k+1)-th routing score: near a tie the top-k set is decided by rounding, and
the two sides may legitimately differ. Exact ties are checked on purpose, separately
(`tie_case`): there both sides must pick the lower atom index (SPEC §3.7).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np
from autograd import grad

from qlora_np import (LoraConfig, QLoRAConfig, adapted_forward, bind_to_mlp, embed_instructions,
                      init_adapter, init_mlp)

from .metrics import (BF16_MAX_SCALED_OUTPUT_ERROR, BF16_MIN_ROUTING_AGREEMENT, TOL, Err, Row,
                      compare, finish, grad_errors)

MIN_MARGIN = 1e-3       # the golden files' margin (spec-notes 9); float32 errors in s are ~1e-6
MAX_DRAWS = 200         # parameter redraws per config before the fuzzer draws a new config
TEXTS = ["shift the phase left", "double the frequency", "flip the slope where x < 0",
         "add a bump near zero", "smooth the right half"]


@dataclass
class CaseSpec:
    """What a case is made of; `build_case` turns it into arrays (deterministically)."""

    name: str
    layer_sizes: list
    kwargs: dict                 # QLoRAConfig (or LoraConfig) keyword arguments
    n: int = 6                   # rows (the batch)
    seed: int = 0
    blocks: list | None = None   # explicit blocks (lists of layer indices), else consecutive G
    skip_prior: bool = False     # a config with a prior, run without an instruction (SPEC §3.6)
    random_e: bool = False       # instruction embeddings: random rows instead of embedded texts
    lora: bool = False           # the LoRA baseline (LoraConfig) instead of Queryable LoRA


@dataclass
class Case:
    name: str
    config: QLoRAConfig          # bound to the MLP (a LoraConfig for the LoRA baseline)
    layer_sizes: list
    base: dict                   # base.{i}.weight / bias, float64
    params: dict                 # trainable parameters, canonical names, float64
    x: np.ndarray                # (n, d_in)
    e: np.ndarray | None         # (n, d_e) instruction embeddings, or None
    cotangent: np.ndarray        # (n, d_out)
    skip_prior: bool = False
    margin: float = np.inf       # smallest top-k margin over rows and blocks (inf for dense)
    texts: list | None = None    # raw instruction texts, where the case has them (golden files)
    ref: dict = field(default_factory=dict, repr=False)   # NumPy results, filled on first use


def randomise(params, rng):
    """Random parameters of a sensible scale in place of the SPEC §6 init (B, m_0, prior too)."""
    return {k: rng.standard_normal(v.shape) * (1.0 if "atoms" in k or "keys" in k else 0.5)
            + (np.eye(v.shape[-1])[None] if "atoms" in k else 0.0)
            for k, v in params.items()}


def top_k_margin(routing, k):
    """Smallest gap between the k-th and (k+1)-th routing score of any row of any block.

    `probs` is the dense softmax(s), so log(probs) is s shifted per row: gaps are those of s.
    """
    margins = [np.inf]
    for r in routing:
        probs = np.asarray(r["probs"])
        if k < probs.shape[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.sort(np.log(probs), axis=1)[:, ::-1]
                gap = s[:, k - 1] - s[:, k]
            margins.append(float(np.min(np.nan_to_num(gap, nan=0.0))))
    return min(margins)


def build_case(spec):
    """A `Case` from a `CaseSpec`: parameters redrawn until the top-k margin holds.

    Returns None when no draw within `MAX_DRAWS` has the margin (the fuzzer then draws a new
    config); the grid's specs all find one in a few draws.
    """
    if spec.lora:
        config = bind_to_mlp(LoraConfig(**spec.kwargs), spec.layer_sizes)
    else:
        config = bind_to_mlp(QLoRAConfig(**spec.kwargs), spec.layer_sizes, spec.blocks)
    for attempt in range(MAX_DRAWS):
        rng = np.random.default_rng([spec.seed, attempt])
        base = init_mlp(spec.layer_sizes, rng)
        params = randomise(init_adapter(config, rng), rng)
        x = rng.standard_normal((spec.n, spec.layer_sizes[0]))
        e = None
        if getattr(config, "d_instruction", 0) and not spec.skip_prior:
            if spec.random_e:
                e = rng.standard_normal((spec.n, config.d_instruction))
            else:
                texts = [TEXTS[i] for i in rng.integers(0, len(TEXTS), spec.n)]
                e = embed_instructions(texts, config.d_instruction)
        _, adapter = adapted_forward(config, base, params, x, e)
        margin = top_k_margin(adapter.routing, getattr(config, "top_k", 1))   # LoRA: no routing
        if margin >= MIN_MARGIN:
            cot = rng.standard_normal((spec.n, spec.layer_sizes[-1]))
            return Case(spec.name, config, list(spec.layer_sizes), base, params, x, e, cot,
                        spec.skip_prior, margin)
    return None


# ----- the two sides -----
def numpy_reference(case):
    """NumPy float64: `y`, per-block routing `weights` and `mask`, and the gradients (cached)."""
    if not case.ref:
        c, base, x, e = case.config, case.base, case.x, case.e
        y, adapter = adapted_forward(c, base, case.params, x, e)
        grads = grad(lambda p: anp.sum(adapted_forward(c, base, p, x, e)[0] * case.cotangent))(
            case.params)
        case.ref = {"y": y, "weights": [np.asarray(r["weights"]) for r in adapter.routing],
                    "masks": [np.asarray(r["mask"]) for r in adapter.routing], "grads": grads}
    return case.ref


def torch_dtype(name):
    import torch
    return {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def torch_model(case, dtype="float64", device="cpu", params=None):
    """`AdaptedMLP` holding the case's base and adapter parameters (or `params`).

    `AdaptedMLP.from_params` refuses a dict that misses any tensor: parity compares the same
    weights on both sides."""
    from qlora_torch import AdaptedMLP
    params = case.params if params is None else params
    model = AdaptedMLP.from_params(case.config, case.layer_sizes, {**case.base, **params},
                                   dtype=torch_dtype(dtype))
    return model.to(device)


def torch_inputs(case, dtype="float64", device="cpu"):
    """(x, instruction, cotangent) as tensors of `dtype` on `device`."""
    import torch
    t = torch_dtype(dtype)
    e = None if case.e is None else torch.tensor(case.e, dtype=t, device=device)
    return (torch.tensor(case.x, dtype=t, device=device), e,
            torch.tensor(case.cotangent, dtype=t, device=device))


def torch_run(case, dtype="float64", device="cpu", params=None):
    """PyTorch: the same quantities as `numpy_reference`, from `AdaptedMLP`."""
    model = torch_model(case, dtype, device, params)
    x, e, cot = torch_inputs(case, dtype, device)
    y, log = model(x, e, skip_prior=case.skip_prior, return_routing=True)
    (y * cot).sum().backward()
    return {"y": y.detach(), "weights": [r["weights"] for r in log],
            "masks": [r["mask"].cpu().numpy() for r in log], "grads": model.canonical_grads()}


def routing_agreement(masks, ref_masks):
    """(rows whose chosen atom set equals the reference's, rows), over every block."""
    if len(masks) != len(ref_masks):
        return 0, max(1, sum(len(m) for m in ref_masks))
    same = sum(int(np.all(a == b, axis=-1).sum()) for a, b in zip(masks, ref_masks))
    return same, sum(len(m) for m in ref_masks)


def check_mlp(case, dtype="float64", device="cpu", params=None, label=None):
    """One row: PyTorch in `dtype` on `device` against NumPy float64.

    float64 / float32: SPEC §9.7 tolerances on y, the routing weights and every gradient, and
    the same chosen atoms in every row. bfloat16: errors against each quantity's scale, see
    `_bf16_row` and metrics.BF16_*.
    `params` replaces the PyTorch side's adapter parameters (the suite's own sensitivity tests).
    """
    ref = numpy_reference(case)
    got = torch_run(case, dtype, device, params)
    row = Row(label or f"mlp/{case.name}", dtype, device)
    same, rows = routing_agreement(got["masks"], ref["masks"])
    row.routing = f"{same}/{rows}"
    if dtype == "bfloat16":
        return _bf16_row(row, got, ref)
    (ro, ao), (rg, ag) = TOL[dtype]["out"], TOL[dtype]["grad"]
    out = compare(got["y"], ref["y"], ro, ao)
    if len(got["weights"]) == len(ref["weights"]):
        for w, w_ref in zip(got["weights"], ref["weights"]):
            werr = compare(w, w_ref, ro, ao)
            if not werr.ok:
                row.fail(f"routing weights error {werr.used:.2g}x tolerance")
    errs, worst = grad_errors(got["grads"], ref["grads"], rg, ag)
    return finish(row, out, errs, worst, routing_ok=same == rows)


def _bf16_row(row, got, ref):
    """bfloat16: errors against each quantity's scale, `max(1, max |ref|)`. Gated: the output,
    at `BF16_MAX_SCALED_OUTPUT_ERROR` (its `used` is the share of that bound), and the routing
    agreement pooled over the grid (`summarise`); gradients are reported, not gated."""
    def scaled(a, r, bound=1.0):
        err = compare(a, r, 0.0, 1.0)
        scale = max(1.0, float(np.max(np.abs(r)))) if np.size(r) else 1.0
        return Err(err.abs, err.rel, err.abs / scale / bound)
    row.grads_gated = False
    row.out = scaled(got["y"], ref["y"], BF16_MAX_SCALED_OUTPUT_ERROR)
    errs = {k: scaled(g, ref["grads"][k]) for k, g in got["grads"].items()}
    row.grad_name = max(errs, key=lambda k: errs[k].used)
    row.grad = errs[row.grad_name]
    if not row.out.ok:
        row.fail(f"scaled output error {row.out.used * BF16_MAX_SCALED_OUTPUT_ERROR:.2g} > "
                 f"{BF16_MAX_SCALED_OUTPUT_ERROR}")
    return row


# ----- the grid -----
def grid_specs():
    """The case grid on the SPEC §8 MLP (issue 5): every combination of summary none/attention,
    prior off/on, dense/top-2 and block size 1/2, then N = 1, top-1, rank and width variations,
    batch 1 and 128, a deeper net with G = 3, a prior skipped, non-default tau/alpha/eps, and
    the LoRA baseline."""
    specs = []
    sizes = [3, 6, 6, 2]                     # 3 adapted layers: G = 2 leaves a shorter last block
    for summary in ("none", "attention"):
        for prior in (False, True):
            for top_k in (None, 2):
                for g in (1, 2):
                    kw = dict(rank=3, n_atoms=5, top_k=top_k, d_key=4, summary=summary,
                              block_size=g)
                    if summary == "attention":
                        kw["d_summary"] = 3
                    if prior:
                        kw.update(d_instruction=8, prior_weight=0.7)
                    name = (f"{'attn' if summary == 'attention' else 'none'}_"
                            f"{'prior' if prior else 'noprior'}_"
                            f"{'dense' if top_k is None else 'top2'}_g{g}")
                    specs.append(CaseSpec(name, sizes, kw, seed=len(specs)))
    extra = [
        ("n1_attn_g2", [2, 5, 5, 1], dict(rank=2, n_atoms=1, block_size=2, d_summary=2), 5),
        ("n1_none_prior", [2, 4, 4, 1], dict(rank=2, n_atoms=1, summary="none",
                                             d_instruction=4), 4),
        ("top1_attn_prior", [4, 5, 5, 5, 3], dict(rank=2, n_atoms=6, top_k=1, d_instruction=6,
                                                  d_summary=3, d_key=4), 6),
        ("rank1_none_x1", [1, 4, 4, 1], dict(rank=1, n_atoms=3, summary="none", d_key=3), 5),
        ("rank6_wide", [4, 24, 24, 3], dict(rank=6, n_atoms=8, top_k=3, d_key=12, d_summary=6,
                                            block_size=2, d_instruction=16), 8),
        ("deep_g3_top2", [2, 5, 5, 5, 5, 5, 1], dict(rank=2, n_atoms=4, top_k=2, block_size=3,
                                                     d_summary=3), 6),
        ("batch1_attn_prior_top2", [3, 6, 6, 2], dict(rank=3, n_atoms=5, top_k=2, d_summary=3,
                                                      d_instruction=8), 1),
        ("batch128_attn_prior_top2", [3, 8, 8, 2], dict(rank=3, n_atoms=6, top_k=2,
                                                        block_size=2, d_summary=4,
                                                        d_instruction=8), 128),
        ("tau_alpha_eps", [3, 6, 6, 2], dict(rank=3, n_atoms=5, top_k=3, temperature=0.5,
                                             alpha=7.0, norm_eps=1e-2, d_instruction=6,
                                             prior_weight=-0.5, d_summary=2), 6),
    ]
    for name, sizes_, kw, n in extra:
        specs.append(CaseSpec(name, sizes_, kw, n=n, seed=len(specs)))
    specs.append(CaseSpec("attn_prior_skipped", [3, 6, 6, 2],
                          dict(rank=3, n_atoms=5, top_k=2, d_instruction=8, d_summary=3),
                          seed=len(specs), skip_prior=True))
    # The LoRA baseline shares the MLP, names and checkpoints: it must agree too.
    specs.append(CaseSpec("lora_baseline", [3, 6, 6, 2], dict(rank=3, alpha=2.0),
                          seed=len(specs), lora=True))
    return specs


def grid_cases():
    cases = [build_case(s) for s in grid_specs()]
    missing = [s.name for s, c in zip(grid_specs(), cases) if c is None]
    if missing:
        raise RuntimeError(f"grid cases {missing}: no draw with top-k margin >= {MIN_MARGIN}")
    return cases


def tie_case(top_k=2):
    """Exact ties on purpose: atoms 1, 2, 3 have the same key, the router weight is 0 and the
    bias points along that key, so every row's scores for atoms 1-3 are bit-identical and the
    highest. SPEC §3.7: the lower index wins, so both sides must choose atoms {1, .., top_k}."""
    spec = CaseSpec("tie_lower_index_wins", [3, 5, 5, 2],
                    dict(rank=3, n_atoms=5, top_k=top_k, d_key=4, summary="none"), n=5, seed=99)
    config = bind_to_mlp(QLoRAConfig(**spec.kwargs), spec.layer_sizes)
    rng = np.random.default_rng(spec.seed)
    base = init_mlp(spec.layer_sizes, rng)
    params = randomise(init_adapter(config, rng), rng)
    key = rng.standard_normal(config.d_key)
    keys = 0.1 * rng.standard_normal((config.n_atoms, config.d_key))
    keys[1:4] = key
    params["bank.keys"] = keys
    params["router.weight"] = np.zeros_like(params["router.weight"])
    params["router.bias"] = 3.0 * key / np.linalg.norm(key)
    x = rng.standard_normal((spec.n, spec.layer_sizes[0]))
    cot = rng.standard_normal((spec.n, spec.layer_sizes[-1]))
    return Case(spec.name, config, spec.layer_sizes, base, params, x, None, cot, margin=0.0)


def check_tie(case, dtype="float64"):
    """The tie case: both sides choose the lower indices, and match as any other case."""
    k = case.config.top_k
    expected = np.zeros(case.config.n_atoms, dtype=bool)
    expected[1:1 + k] = True
    ref = numpy_reference(case)
    row = check_mlp(case, dtype, label=f"mlp/{case.name}")
    _, adapter = adapted_forward(case.config, case.base, case.params, case.x, case.e)
    probs = np.asarray(adapter.routing[0]["probs"])
    if not np.all(probs[:, 1:4] == probs[:, 1:2]):
        return row.fail("the constructed tie is not exact on the NumPy side")
    if not all(np.all(m == expected) for m in ref["masks"]):
        row.fail(f"NumPy did not choose atoms 1..{k} (lower index wins)")
    row.note = (row.note + "; " if row.note else "") + f"3-way exact tie, k={k}: atoms 1..{k} win"
    return row


# ----- fuzzing -----
def random_spec(rng, index, stress=False):
    """A random valid config and shapes (SPEC §2 ranges, kept small).

    `stress=True` widens every range (depth to 6, widths to 11, r to 8, N to 12, tau down to 0.05,
    alpha in [-5, 20], eps down to 1e-9, batch to 32). float64 parity must hold there too; the
    float32 tolerances of SPEC §9.7 need not: such configs are ill-conditioned, and even exact
    arithmetic on float32-rounded inputs moves the gradients by several times the float32
    tolerance (measured: up to ~6x; PyTorch float32 up to ~30x).
    """
    hi = (7, 12, 9, 13, 10, 9, 17, 5, 33) if stress else (5, 7, 5, 7, 7, 5, 9, 4, 10)
    n_layers = int(rng.integers(1, hi[0]))
    sizes = [int(s) for s in rng.integers(1, hi[1], n_layers + 1)]
    n_atoms = int(rng.integers(1, hi[3]))
    kw = dict(rank=int(rng.integers(1, hi[2])), n_atoms=n_atoms,
              top_k=int(rng.integers(1, n_atoms + 1)), d_key=int(rng.integers(1, hi[4])),
              summary=str(rng.choice(["none", "attention"])))
    if stress:
        kw.update(alpha=float(rng.uniform(-5.0, 20.0)),
                  temperature=float(10 ** rng.uniform(-1.3, 1.0)),
                  norm_eps=float(10 ** rng.uniform(-9, -1)))
    else:
        kw.update(alpha=float(rng.uniform(0.5, 8.0)), temperature=float(rng.uniform(0.3, 2.0)),
                  norm_eps=float(rng.choice([1e-6, 1e-4, 1e-2])))
    if kw["summary"] == "attention":
        kw["d_summary"] = int(rng.integers(1, hi[5]))
    if rng.random() < 0.5:
        lam = (-3.0, 5.0) if stress else (-1.0, 2.0)
        kw.update(d_instruction=int(rng.integers(1, hi[6])),
                  prior_weight=float(rng.uniform(*lam)))
    blocks = None
    if rng.random() < 0.5:                   # a random partition into contiguous blocks
        cuts = sorted({int(c) for c in rng.integers(1, n_layers, int(rng.integers(0, n_layers)))})
        edges = [0, *cuts, n_layers]
        blocks = [list(range(a, b)) for a, b in zip(edges[:-1], edges[1:])]
    else:
        kw["block_size"] = int(rng.integers(1, hi[7]))
    return CaseSpec(f"{'stress' if stress else 'fuzz'}{index:03d}", sizes, kw,
                    n=int(rng.integers(1, hi[8])), seed=(20_000 if stress else 10_000) + index,
                    blocks=blocks, random_e=True)


def fuzz_cases(n_cases=200, seed=0, stress=False):
    """`n_cases` random cases; a config without a tie-free draw is replaced by a new one."""
    rng = np.random.default_rng(seed)
    cases, index = [], 0
    while len(cases) < n_cases:
        case = build_case(random_spec(rng, index, stress))
        index += 1
        if case is not None:
            cases.append(case)
    return cases


def device_rows(cases, device="cuda", dtypes=("float32", "bfloat16")):
    """The grid on another device (or in bfloat16), one summary row per dtype; skipped rows with
    the reason when the device is missing."""
    import torch
    label = f"mlp grid ({len(cases)} cases)"
    if device == "cuda" and not torch.cuda.is_available():
        return [Row(label, dt, device, status="skip",
                    note="no CUDA device (torch.cuda.is_available() is False)") for dt in dtypes]
    rows = []
    for dt in dtypes:
        row = summarise([check_mlp(c, dt, device) for c in cases], label, dt, device)
        if device == "cuda" and dt == "float32":
            row.note = (row.note + "; " if row.note else "") + \
                f"float32 matmul precision '{torch.get_float32_matmul_precision()}'"
        rows.append(row)
    return rows


def summarise(rows, label, dtype, device="cpu"):
    """One table row for many: the worst output and gradient errors, agreement, failures."""
    row = Row(label, dtype, device, grads_gated=all(r.grads_gated for r in rows))
    failed = [r for r in rows if not r.passed]
    row.out, row.grad = Err(), Err()
    same = total = 0
    for r in rows:
        row.out = row.out.worst(r.out)
        if r.grad is not None and row.grad.worst(r.grad) is r.grad:
            row.grad, row.grad_name = r.grad, f"{r.grad_name} ({r.case.split('/')[-1]})"
        a, b = (int(v) for v in r.routing.split("/"))
        same, total = same + a, total + b
    row.routing = f"{same}/{total}"
    if dtype == "bfloat16":
        row.note = (f"errors / max(1, max abs ref); gated: routing agreement >= "
                    f"{BF16_MIN_ROUTING_AGREEMENT:.0%} pooled, y error <= "
                    f"{BF16_MAX_SCALED_OUTPUT_ERROR} (tol used); grads reported only")
        if same < BF16_MIN_ROUTING_AGREEMENT * total:
            row.fail(f"routing agreement {same / total:.1%} < {BF16_MIN_ROUTING_AGREEMENT:.0%}")
    if failed:
        row.fail(f"{len(failed)}/{len(rows)} cases fail: "
                 + ", ".join(f"{r.case} ({r.note})" for r in failed[:3]))
    return row
