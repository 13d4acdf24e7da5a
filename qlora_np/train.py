"""Training loop: full-batch or minibatch Adam on `L = MSE + beta L_kl + gamma L_balance` (SPEC §5).

`fit` trains any adapter (Queryable LoRA or LoRA) on a frozen base network. Gradients come from
autograd's reverse mode over the flat parameter dict. Minibatches are drawn from `rng`, so the same
seed gives the same run, bit for bit.
"""

import time

import numpy as onp
from autograd import value_and_grad

from .losses import total_loss
from .model import adapted_forward, prepare_inputs
from .optim import Adam


def make_loss(config, base, x, y, e=None):
    """`loss(params, rows)`: the training loss on the given rows (all rows when `rows` is None)."""
    def loss(params, rows=None):
        if rows is None:
            xb, yb, eb = x, y, e
        else:
            xb, yb, eb = x[rows], y[rows], (None if e is None else e[rows])
        pred, adapter = adapted_forward(config, base, params, xb, eb)
        return total_loss(config, pred, yb, adapter.routing)
    return loss


def fit(config, base, params, x, y, *, steps, lr=3e-3, batch_size=None, rng=0, instruction=None,
        skip_prior=False, weight_decay=0.0, decay_keys=None, eval_every=0, callback=None):
    """Train `params` for `steps` Adam steps; returns `(params, history)`.

    batch_size: None for full-batch steps, else rows per minibatch, drawn from `rng` (a seed or a
    `numpy.random.Generator`). `callback(step, params, train_loss)` is called every `eval_every`
    steps (and after the last); what it returns is stored in `history["evals"]`.
    history: `train_loss` (one float per step), `evals` (list of (step, callback result)),
    `seconds` (wall time).
    """
    x, e = prepare_inputs(config, base, x, instruction, skip_prior)
    y = onp.asarray(y, dtype=float)
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y: expected shape ({x.shape[0]}, d_out), got {y.shape}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected an integer >= 0, got {steps!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size: expected None or an integer >= 1, got {batch_size!r}")
    rng = onp.random.default_rng(rng)
    loss_and_grad = value_and_grad(make_loss(config, base, x, y, e))
    opt = Adam(lr=lr, weight_decay=weight_decay, decay_keys=decay_keys)
    history = {"train_loss": [], "evals": []}
    start = time.perf_counter()
    n = x.shape[0]
    for step in range(1, steps + 1):
        rows = None if batch_size is None or batch_size >= n else \
            rng.choice(n, size=batch_size, replace=False)
        value, grads = loss_and_grad(params, rows)
        params = opt.step(params, grads)
        history["train_loss"].append(float(value))
        if callback is not None and eval_every and (step % eval_every == 0 or step == steps):
            history["evals"].append((step, callback(step, params, float(value))))
    history["seconds"] = time.perf_counter() - start
    return params, history
