"""The Queryable LoRA adapter: route once per block, apply the routed operator in every layer (SPEC §3).

A forward pass through an adapted network visits the adapted layers in forward order. For each
layer it asks the adapter for the layer's update, given the layer's input `h`. The adapter keeps
the pass's routing state: when a block's **lead layer** (its first layer) arrives, it forms the
block's low-rank state, summary and query, and routes over the atom bank (SPEC §3.1-3.7); every
layer of the block then applies the block's routed operator inside its own bottleneck (§3.9):

    u = h A^T,  v = C_b u,  delta = (alpha / r) v B^T

`QueryablePass` holds that state for one pass; `LoraPass` (in lora.py) has the same interface, so
the base network does not know which adapter it runs.
"""

import autograd.numpy as np
from autograd.tracer import getval

from .bank import apply_routed_operator, init_bank
from .config import LoraConfig, QLoRAConfig
from .lora import LoraPass, init_lora_factors
from .params import lora_names
from .prior import init_prior, log_prior
from .query import attention_logits, init_router, make_query, rms_norm
from .routing import chosen_atoms, route, routing_entropy
from .summary import init_summary, running_summary


def init_queryable(config, rng):
    """All trainable parameters of a bound `QLoRAConfig`, drawn from `rng` in a fixed order."""
    params = init_lora_factors(config, rng)
    params.update(init_bank(config, rng))
    params.update(init_router(config, rng))
    params.update(init_summary(config, rng))
    if config.d_instruction > 0:
        params.update(init_prior(config, rng))
    return params


class QueryablePass:
    """The routing state of one forward pass (SPEC §3). Call it as `delta = p(i, h)` per layer."""

    def __init__(self, config: QLoRAConfig, params, instruction=None):
        self.config = config
        self.params = params
        # SPEC §3.6: the prior is computed once per pass from the instruction embedding e (n, d_e).
        self.log_prior = None if instruction is None else log_prior(params, instruction)
        self.block_of = config.block_of_layer
        self.states = []    # z_hat of each block routed so far (for the summary)
        self.routing = []   # one route() dict per block routed so far

    def _route_block(self, z):
        c, p = self.config, self.params
        z_hat = rms_norm(z, c.norm_eps)                                   # §3.2, (n, r)
        m = running_summary(c, p, z_hat, self.states)                     # §3.3, (n, d_s)
        q = make_query(p, z_hat, m)                                       # §3.4, (n, d_k)
        logits = attention_logits(q, p["bank.keys"])                      # §3.5, (n, N)
        out = route(logits, c.top_k, c.temperature, self.log_prior, c.prior_weight)  # §3.6-3.7
        self.states.append(z_hat)
        self.routing.append(out)

    def __call__(self, i, h):
        c, p = self.config, self.params
        a_name, b_name = lora_names(c.layer_names[i])
        u = h @ p[a_name].T                                               # §3.1/§3.9, (n, r)
        b = self.block_of[i]
        if b == len(self.routing):          # the block's lead layer: u is z_b, route once
            self._route_block(u)
        elif b != len(self.routing) - 1:
            raise RuntimeError(f"layer {i} of block {b} called out of forward order "
                               f"({len(self.routing)} blocks routed so far)")
        v = apply_routed_operator(self.routing[b]["weights"], p["bank.atoms"], u)  # §3.8, (n, r)
        return c.scale * (v @ p[b_name].T)                                # §3.9, (n, d_out)

    def routing_log(self):
        """Per block, as plain values: `weights` (n, N), `mask` (n, N) of the chosen atoms,
        `chosen` (n, k) their indices (ascending) and the routing `entropy` (n,)."""
        return [{"weights": np.asarray(getval(r["weights"])), "mask": r["mask"],
                 "chosen": chosen_atoms(r["mask"]),
                 "entropy": np.asarray(getval(routing_entropy(r)))} for r in self.routing]


def make_pass(config, params, instruction=None):
    """The per-pass adapter object for either adapter type."""
    if isinstance(config, LoraConfig):
        return LoraPass(config, params)
    return QueryablePass(config, params, instruction)


def static_operator(config, params, instruction=None):
    """The routed operator `C` (r, r) when routing cannot depend on the input (SPEC §9.6).

    Routing is static when the router weight is zero: every row's query is then `b_q`, so the
    logits (plus the instruction's prior) are the same for every input. Anything else refuses.
    instruction: one embedding `e` of shape (d_e,) or (1, d_e), or None.
    """
    if np.any(params["router.weight"] != 0):
        raise ValueError("merge: routing depends on the input (router.weight is non-zero), so "
                         "the update differs per input and cannot be merged into W0; only "
                         "adapters whose routing depends on the instruction alone can merge")
    q = params["router.bias"][None, :]                                    # (1, d_k)
    logits = attention_logits(q, params["bank.keys"])                     # (1, N)
    lp = None
    if instruction is not None:
        lp = log_prior(params, np.reshape(instruction, (1, -1)))
    w = route(logits, config.top_k, config.temperature, lp, config.prior_weight)["weights"]
    return np.einsum("j,jpq->pq", w[0], params["bank.atoms"])            # (r, r)
