"""Pretrain the frozen base network (SPEC §8) on a task's source function.

The base is the tanh MLP `[d_in, H, ..., H, d_out]` with parameters `base.{i}.weight` (d_out, d_in)
and `base.{i}.bias`, the same flat dict as the core's `init_mlp`. Pretraining is plain full-batch
Adam on the mean squared error with a hand-written backward pass: it runs once per (task, seed),
is not part of any comparison, and is several times faster than tracing it with autograd.
Pretrained bases are cached in `DIR/bases/` so a resumed suite does not pay for them again.
"""

from __future__ import annotations

import os

import numpy as np

from .store import atomic_write_bytes


def init_base(layer_sizes, rng):
    """PyTorch `nn.Linear` default init, `U(+-1/sqrt(d_in))`, drawn in the core's order."""
    base = {}
    for i, (d_in, d_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        bound = 1.0 / np.sqrt(d_in)
        base[f"base.{i}.weight"] = rng.uniform(-bound, bound, (d_out, d_in))
        base[f"base.{i}.bias"] = rng.uniform(-bound, bound, (d_out,))
    return base


def base_forward(base, x):
    """SPEC §8 forward without an adapter. x: (n, d_in) -> (n, d_out)."""
    n_layers = len(base) // 2
    h = x
    for i in range(n_layers):
        h = h @ base[f"base.{i}.weight"].T + base[f"base.{i}.bias"]
        if i < n_layers - 1:
            h = np.tanh(h)
    return h


def _loss_and_grads(base, x, y):
    n_layers = len(base) // 2
    hs = [x]                                    # inputs of each layer
    for i in range(n_layers):
        a = hs[-1] @ base[f"base.{i}.weight"].T + base[f"base.{i}.bias"]
        hs.append(np.tanh(a) if i < n_layers - 1 else a)
    err = hs[-1] - y                            # (n, d_out)
    loss = float(np.mean(err ** 2))
    g = 2.0 * err / err.size                    # dL/d(output)
    grads = {}
    for i in reversed(range(n_layers)):
        if i < n_layers - 1:
            g = g * (1.0 - hs[i + 1] ** 2)      # through tanh
        grads[f"base.{i}.weight"] = g.T @ hs[i]
        grads[f"base.{i}.bias"] = g.sum(axis=0)
        g = g @ base[f"base.{i}.weight"]
    return loss, grads


def pretrain_base(layer_sizes, x, y, *, rng, steps=1500, lr=1e-2):
    """Initialise the MLP from `rng` and fit `y` from `x` by full-batch Adam with a cosine-decayed
    learning rate. Returns (base, final training MSE)."""
    base = init_base(layer_sizes, rng)
    m = {k: np.zeros_like(v) for k, v in base.items()}
    v = {k: np.zeros_like(v) for k, v in base.items()}
    b1, b2, eps = 0.9, 0.999, 1e-8
    loss = float("nan")
    for t in range(1, steps + 1):
        loss, grads = _loss_and_grads(base, x, y)
        lr_t = lr * 0.5 * (1.0 + np.cos(np.pi * (t - 1) / steps))
        for k in base:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            mhat, vhat = m[k] / (1 - b1 ** t), v[k] / (1 - b2 ** t)
            base[k] = base[k] - lr_t * mhat / (np.sqrt(vhat) + eps)
    return base, float(np.mean((base_forward(base, x) - y) ** 2))


def cached_base(cache_dir, key, layer_sizes, x, y, *, rng, steps, lr):
    """`pretrain_base`, cached in `cache_dir/<key>.npz` (written atomically)."""
    path = os.path.join(cache_dir, f"{key}.npz") if cache_dir else None
    if path and os.path.exists(path):
        with np.load(path) as f:
            base = {k: f[k] for k in f.files if k.startswith("base.")}
            return base, float(f["_loss"])
    base, loss = pretrain_base(layer_sizes, x, y, rng=rng, steps=steps, lr=lr)
    if path:
        import io
        buf = io.BytesIO()
        np.savez(buf, _loss=np.float64(loss), **base)
        atomic_write_bytes(path, buf.getvalue())
    return base, loss
