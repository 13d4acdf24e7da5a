"""Training trajectories: 50 Adam steps from the same init and data, NumPy `fit` vs `torch.optim`.

NumPy trains with `qlora_np.fit` (its `Adam`: beta1 0.9, beta2 0.999, eps 1e-8, full batch,
decoupled decay with `weight_decay`), PyTorch with `torch.optim.Adam` (`AdamW` when decaying) and
the same hyper-parameters, on `L = MSE + beta L_kl + gamma L_balance` (SPEC §5). Both update rules
are `p -= lr (m / c1) / (sqrt(v / c2) + eps)` with `c_i = 1 - beta_i^t` (torch writes
`sqrt(v) / sqrt(c2)`: the same value up to rounding), and AdamW's `p -= lr wd p` uses the
pre-step `p` on both sides. The float64 loss curves must agree to rtol 1e-8 and so must the final
parameters. A trajectory that passes near a top-k tie would make the comparison a coin flip, so
the top-k margin is checked at every step (it is part of the row).

`check_adam_rule` isolates the optimiser: both Adams fed the same gradients, with a large `eps` and
non-default betas, so that moving `eps` inside the square root or dropping a bias correction fails.
"""

from __future__ import annotations

import numpy as np

from qlora_np import QLoRAConfig, adapted_forward, bind_to_mlp, fit, init_adapter, init_mlp
from qlora_np import embed_instructions
from qlora_np.optim import Adam

from .metrics import TRAJECTORY_TOL, Row, compare, finish, grad_errors
from .mlp import MIN_MARGIN, TEXTS, Case, top_k_margin, torch_inputs, torch_model

STEPS = 50

# name: (layer sizes, config kwargs, rows, lr, weight decay, seed)
TRAJECTORIES = {
    "adam_attn_prior_dense": ([2, 8, 8, 1], dict(rank=3, n_atoms=4, d_summary=3,
                                                 d_instruction=8, block_size=2), 32, 1e-2, 0.0, 0),
    # Low temperature spreads the scores: this seed's 51 routings keep a top-k margin >= 3e-3.
    "adamw_attn_prior_top2_kl_balance": ([2, 8, 8, 1], dict(rank=3, n_atoms=5, top_k=2,
                                                            d_summary=3, d_instruction=8,
                                                            temperature=0.25, kl_weight=0.1,
                                                            balance_weight=0.05),
                                         16, 1e-2, 0.01, 0),
}


def training_case(name):
    """(case, targets, lr, weight_decay): SPEC §6 init (B = 0), a smooth target per row."""
    sizes, kwargs, n, lr, wd, seed = TRAJECTORIES[name]
    config = bind_to_mlp(QLoRAConfig(**kwargs), sizes)
    rng = np.random.default_rng([7, seed])
    base = init_mlp(sizes, rng)
    params = init_adapter(config, rng)
    # The SPEC §6 init gives a near-uniform prior; a random prior makes the KL term bite.
    if "prior.weight" in params:
        params["prior.weight"] = rng.standard_normal(params["prior.weight"].shape)
    x = rng.uniform(-2, 2, (n, sizes[0]))
    texts = [TEXTS[i] for i in rng.integers(0, len(TEXTS), n)]
    e = embed_instructions(texts, config.d_instruction) if config.d_instruction else None
    y = np.sin(3 * x[:, :1]) * (x[:, 1:2] > 0) + 0.1 * x[:, :1]
    case = Case(name, config, sizes, base, params, x, e, np.zeros((n, sizes[-1])))
    return case, y, lr, wd


def numpy_trajectory(case, y, lr, wd, steps=STEPS):
    """`qlora_np.fit`: (loss per step, final params, smallest top-k margin seen)."""
    margins = [_margin(case, case.params)]
    params, history = fit(case.config, case.base, case.params, case.x, y, steps=steps, lr=lr,
                          instruction=case.e, skip_prior=case.skip_prior, weight_decay=wd,
                          eval_every=1, callback=lambda step, p, loss: _margin(case, p))
    margins += [m for _, m in history["evals"]]
    return np.array(history["train_loss"]), params, min(margins)


def _margin(case, params):
    _, adapter = adapted_forward(case.config, case.base, params, case.x, case.e)
    return top_k_margin(adapter.routing, case.config.top_k)


def torch_trajectory(case, y, lr, wd, steps=STEPS):
    """`torch.optim.Adam` / `AdamW` with NumPy's hyper-parameters: (losses, final params)."""
    import torch

    from qlora_torch.losses import routing_loss

    model = torch_model(case, "float64")
    x, e, _ = torch_inputs(case, "float64")
    target = torch.tensor(y, dtype=torch.float64)
    params = list(model.trainable_params().values())
    kw = dict(lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    opt = torch.optim.AdamW(params, **kw) if wd else torch.optim.Adam(params, **kw)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        pred = model(x, e, skip_prior=case.skip_prior)
        loss = torch.mean((pred - target) ** 2) + routing_loss(case.config, model.routing())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses), {n: p.detach() for n, p in model.trainable_params().items()}


def check_trajectory(name, steps=STEPS):
    """One row: loss curve (out columns) and final parameters (grad columns), float64."""
    case, y, lr, wd = training_case(name)
    np_losses, np_params, margin = numpy_trajectory(case, y, lr, wd, steps)
    t_losses, t_params = torch_trajectory(case, y, lr, wd, steps)
    rtol, atol = TRAJECTORY_TOL
    row = Row(f"train/{name}", "float64", "cpu")
    row.note = (f"{steps} steps, loss {np_losses[0]:.4g} -> {np_losses[-1]:.4g}; "
                f"out = loss curve, grad = final params")
    if margin < MIN_MARGIN:
        row.fail(f"the trajectory passes within {margin:.2g} of a top-k tie: pick another seed")
    if len(t_losses) != len(np_losses):
        return row.fail(f"{len(t_losses)} PyTorch losses vs {len(np_losses)} NumPy losses")
    errs, worst = grad_errors(t_params, np_params, rtol, atol)
    if np.isfinite(margin):
        row.routing = f"margin {margin:.2g}"
    return finish(row, compare(t_losses, np_losses, rtol, atol), errs, worst)


def check_adam_rule(steps=10, lr=0.05, eps=1e-3, betas=(0.8, 0.99), weight_decay=0.1):
    """One row: `qlora_np.optim.Adam` vs `torch.optim.Adam` and `AdamW` on the same gradients.

    Gradients of size ~eps make the placement of eps visible; betas far from 1 and few steps make
    the bias corrections visible. Compared with TRAJECTORY_TOL.
    """
    import torch

    rng = np.random.default_rng(5)
    shapes = {"a": (3, 4), "b": (5,)}
    start = {k: rng.standard_normal(s) for k, s in shapes.items()}
    grads = [{k: eps * rng.standard_normal(s) for k, s in shapes.items()} for _ in range(steps)]
    rtol, atol = TRAJECTORY_TOL
    row = Row("train/adam_update_rule", "float64", "cpu")
    row.note = f"eps={eps:g}, betas={betas}, {steps} steps; Adam then AdamW(wd={weight_decay:g})"
    worst_errs, worst = {}, None
    for wd, cls in ((0.0, torch.optim.Adam), (weight_decay, torch.optim.AdamW)):
        ours = Adam(lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=wd)
        p_np = dict(start)
        tensors = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
        theirs = cls(tensors.values(), lr=lr, betas=betas, eps=eps, weight_decay=wd)
        for g in grads:
            p_np = ours.step(p_np, g)
            for k, t in tensors.items():
                t.grad = torch.tensor(g[k])
            theirs.step()
        errs, name = grad_errors({k: t.detach() for k, t in tensors.items()}, p_np, rtol, atol)
        tag = "adamw" if wd else "adam"
        errs = {f"{tag}:{k}": v for k, v in errs.items()}
        worst_errs.update(errs)
        if worst is None or errs[f"{tag}:{name}"].used > worst_errs[worst].used:
            worst = f"{tag}:{name}"
    return finish(row, None, worst_errs, worst)
