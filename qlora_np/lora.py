"""Standard LoRA, the baseline: a static low-rank update per layer (Hu et al., 2021).

    delta = (alpha / r) (h A^T) B^T

It shares the canonical names `layers.{i}.lora_A` / `layers.{i}.lora_B` and the initialisation of
SPEC §6 with Queryable LoRA, and the same per-pass interface (`delta = p(i, h)`), so the two run
through the same base network, training loop and checkpoint code.
"""

import autograd.numpy as np

from .params import lora_names


def init_lora_factors(config, rng):
    """SPEC §6: `A ~ U(+-1/sqrt(d_in))`, `B = 0` for every adapted layer, in forward order."""
    params = {}
    for name, (d_out, d_in) in zip(config.layer_names, config.layer_shapes):
        a, b = lora_names(name)
        bound = 1.0 / np.sqrt(d_in)
        params[a] = rng.uniform(-bound, bound, (config.rank, d_in))   # (r, d_in)
        params[b] = np.zeros((d_out, config.rank))                     # (d_out, r)
    return params


class LoraPass:
    """LoRA's per-pass adapter: stateless, the same update for every input."""

    routing = ()   # LoRA does not route

    def __init__(self, config, params):
        self.config = config
        self.params = params

    def __call__(self, i, h):
        a_name, b_name = lora_names(self.config.layer_names[i])
        return self.config.scale * ((h @ self.params[a_name].T) @ self.params[b_name].T)

    def routing_log(self):
        return []
