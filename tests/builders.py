"""Shared builders for the NumPy core's tests: small, seeded models with non-trivial weights."""

import numpy as np

from qlora_np import QLoRAConfig, bind_to_mlp, init_adapter, init_mlp

LAYER_SIZES = [3, 6, 6, 2]


def build(layer_sizes=LAYER_SIZES, seed=0, n=7, randomize_b=True, **kwargs):
    """(config, base, params, x, e): a bound config, base MLP, adapter with non-zero B, inputs."""
    config = bind_to_mlp(QLoRAConfig(**kwargs), layer_sizes)
    rng = np.random.default_rng(seed)
    base = init_mlp(layer_sizes, rng)
    params = init_adapter(config, rng)
    if randomize_b:  # B = 0 at init would make most tests vacuous
        params = {k: (0.5 * rng.standard_normal(v.shape) if k.endswith("lora_B") else v)
                  for k, v in params.items()}
        if "summary.init" in params:
            params["summary.init"] = rng.standard_normal(params["summary.init"].shape)
        if "prior.weight" in params:
            params["prior.weight"] = rng.standard_normal(params["prior.weight"].shape)
    x = rng.standard_normal((n, layer_sizes[0]))
    e = None
    if config.d_instruction:
        e = rng.standard_normal((n, config.d_instruction))
    return config, base, params, x, e


