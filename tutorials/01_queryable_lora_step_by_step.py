# %% [markdown]
# # Queryable LoRA, step by step
#
# This tutorial walks through one forward pass of Queryable LoRA (arXiv 2605.08423) by hand,
# equation by equation of `docs/SPEC.md` §3, checks each step against the library, and then
# trains a small adapter next to plain LoRA.
#
# ("QLoRA" here is *Queryable* LoRA, not the quantized LoRA of Dettmers et al.)
#
# Run it as a script (`python tutorials/01_queryable_lora_step_by_step.py`) or open it as a
# notebook with jupytext. `QLORA_TUTORIAL_STEPS` sets the number of training steps (the test
# suite runs it with a handful).

# %%
import os

import numpy as np

from qlora_np import (LoraConfig, QLoRAConfig, adapted_forward, bind_to_mlp, count_params,
                      embed_instructions, fit, forward, init_adapter, init_mlp,
                      matched_lora_rank, mlp_forward)

STEPS = int(os.environ.get("QLORA_TUTORIAL_STEPS", "400"))
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. A frozen base network and an adapter
#
# The base network is the SPEC §8 tanh MLP. We adapt all three of its linear layers, grouped into
# blocks of two: block 0 = layers 0 and 1, block 1 = layer 2 (a shorter last block).

# %%
sizes = [1, 16, 16, 1]
base = init_mlp(sizes, rng)
config = bind_to_mlp(QLoRAConfig(rank=2, n_atoms=4, top_k=2, d_key=8, d_summary=4,
                                 block_size=2, d_instruction=16), sizes)
params = init_adapter(config, rng)
# B starts at zero, so the adapter starts as the base network. Give B some values to see it act.
params = {k: (0.3 * rng.standard_normal(v.shape) if k.endswith("lora_B") else v)
          for k, v in params.items()}
print("blocks:", config.blocks)
for name, value in params.items():
    print(f"  {name:22s} {value.shape}")

# %% [markdown]
# ## 2. One forward pass by hand
#
# Four inputs, each with an instruction. The instruction becomes a vector with the built-in
# hashed character n-gram embedder (SPEC §4).

# %%
x = np.linspace(-1, 1, 4)[:, None]                                  # (n, d_in) = (4, 1)
e = embed_instructions(["raise the left side"] * 2 + ["flatten the right side"] * 2, 16)
P = params

def rms_norm(z):                                                    # SPEC §3.2
    return z / np.sqrt(np.mean(z ** 2, axis=-1, keepdims=True) + config.norm_eps)

def softmax(a, axis=-1):
    a = np.exp(a - a.max(axis=axis, keepdims=True))
    return a / a.sum(axis=axis, keepdims=True)

log_pi = np.log(softmax(e @ P["prior.weight"].T + P["prior.bias"]))  # SPEC §3.6, (n, N)
h, states, routed = x, [], []
for i in range(3):
    block = config.block_of_layer[i]
    A, B = P[f"layers.{i}.lora_A"], P[f"layers.{i}.lora_B"]
    u = h @ A.T                                                     # (n, r)
    if block == len(routed):                                        # lead layer of the block
        z_hat = rms_norm(u)                                         # SPEC §3.1-3.2
        if not states:                                              # SPEC §3.3
            m = np.tile(P["summary.init"], (len(x), 1))
        else:
            past = np.stack(states, axis=1)                         # (n, b-1, r)
            q_s = z_hat @ P["summary.query"].T
            k_s = past @ P["summary.key"].T
            a = softmax(np.einsum("nd,nbd->nb", q_s, k_s) / np.sqrt(config.d_summary))
            m = np.einsum("nb,nbd->nd", a, past @ P["summary.value"].T)
        q = np.concatenate([z_hat, m], axis=1) @ P["router.weight"].T + P["router.bias"]  # §3.4
        logits = q @ P["bank.keys"].T / np.sqrt(config.d_key)      # SPEC §3.5
        s = (logits + config.prior_weight * log_pi) / config.temperature  # SPEC §3.6-3.7
        top = np.argsort(-s, axis=1, kind="stable")[:, :config.top_k]
        w = np.zeros_like(s)
        np.put_along_axis(w, top, softmax(np.take_along_axis(s, top, axis=1)), axis=1)
        states.append(z_hat)
        routed.append(w)
    C = np.einsum("nj,jpq->npq", routed[block], P["bank.atoms"])    # SPEC §3.8 (for clarity)
    v = np.einsum("npq,nq->np", C, u)
    y = h @ base[f"base.{i}.weight"].T + base[f"base.{i}.bias"] + config.scale * v @ B.T  # §3.9
    h = y if i == 2 else np.tanh(y)

y_lib, routing = forward(config, base, params, x, e, return_routing=True)
print("by hand :", h.ravel())
print("library :", y_lib.ravel())
assert np.allclose(h, y_lib, rtol=1e-12, atol=1e-12)
for b, w in enumerate(routed):
    assert np.allclose(w, routing[b]["weights"], rtol=1e-12, atol=1e-12)
    print(f"block {b}: chosen atoms per row {routing[b]['chosen'].tolist()}")

# %% [markdown]
# The library never builds the per-row `C` tensor of shape `(n, r, r)`: it applies all atoms to
# `u` in one matrix product and mixes the results by `w` (see `qlora_np/bank.py`).
#
# ## 3. Train next to LoRA
#
# A target that differs from the base network differently on the two halves of the input — the
# kind of input-dependent correction a single static LoRA update finds hard. We compare Queryable
# LoRA (without a prior) with a LoRA of the smallest rank that has at least as many parameters.

# %%
qconfig = bind_to_mlp(QLoRAConfig(rank=2, n_atoms=4, d_key=8, d_summary=4), sizes)
x_train = rng.uniform(-2, 2, (256, 1))
target = lambda t: mlp_forward(base, t) + np.where(t > 0, 0.5 * np.sin(3 * t), 0.3 * t)
y_train = target(x_train) + 0.05 * rng.standard_normal(x_train.shape)
x_test = np.linspace(-2, 2, 200)[:, None]

lconfig = bind_to_mlp(LoraConfig(rank=matched_lora_rank(qconfig, qconfig.layer_shapes)), sizes)
results = {}
for label, cfg in (("Queryable LoRA", qconfig), (f"LoRA r={lconfig.rank}", lconfig)):
    p0 = init_adapter(cfg, rng=1)
    p, hist = fit(cfg, base, p0, x_train, y_train, steps=STEPS, lr=1e-2)
    test_mse = float(np.mean((forward(cfg, base, p, x_test) - target(x_test)) ** 2))
    results[label] = (p, test_mse)
    print(f"{label:16s} params {count_params(p):4d}  train MSE {hist['train_loss'][-1]:.4f}  "
          f"test MSE {test_mse:.4f}")

# %% [markdown]
# One seed and a toy task prove nothing either way: `python -m qlora_np regress` runs the
# seeded comparison with spreads, and `docs/results.md` reports it.
#
# ## 4. Where does the routing go?
#
# Per block, the mean routing weight of each atom over inputs on the left and on the right half.

# %%
_, adapter = adapted_forward(qconfig, base, results["Queryable LoRA"][0], x_test)
for b, r in enumerate(adapter.routing):
    w = np.asarray(r["weights"])
    left, right = w[x_test[:, 0] < 0].mean(axis=0), w[x_test[:, 0] >= 0].mean(axis=0)
    print(f"block {b}: left {np.round(left, 2)}  right {np.round(right, 2)}")
