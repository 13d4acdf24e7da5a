"""Parameter names, shapes and counts (SPEC §2, §7).

`expected_shapes(config)` is the one place that says which trainable tensors an adapter has, under
which canonical name, with which shape. Initialisation, checkpoints, counting and the parity suite
all read it.
"""

from __future__ import annotations

import numpy as onp

from .config import ConfigError, LoraConfig


def lora_names(layer_name):
    """Canonical names of one adapted layer's LoRA factors."""
    return f"layers.{layer_name}.lora_A", f"layers.{layer_name}.lora_B"


def expected_shapes(config):
    """Ordered dict: canonical name -> shape of every trainable tensor of a bound config."""
    if not config.is_bound:
        raise ConfigError("config: expected a bound config (call config.bind(...) first)")
    r = config.rank
    shapes = {}
    for name, (d_out, d_in) in zip(config.layer_names, config.layer_shapes):
        a, b = lora_names(name)
        shapes[a] = (r, d_in)
        shapes[b] = (d_out, r)
    if isinstance(config, LoraConfig):
        return shapes
    n, d_k, d_s = config.n_atoms, config.d_key, config.d_summary
    shapes["bank.atoms"] = (n, r, r)
    shapes["bank.keys"] = (n, d_k)
    shapes["router.weight"] = (d_k, r + d_s)
    shapes["router.bias"] = (d_k,)
    if config.summary == "attention":
        shapes["summary.init"] = (d_s,)
        shapes["summary.query"] = (d_s, r)
        shapes["summary.key"] = (d_s, r)
        shapes["summary.value"] = (d_s, r)
    if config.d_instruction > 0:
        shapes["prior.weight"] = (n, config.d_instruction)
        shapes["prior.bias"] = (n,)
    return shapes


def count_params(params):
    """Number of scalars in a parameter dict."""
    return int(sum(onp.size(v) for v in params.values()))


def lora_param_count(rank, layer_shapes):
    """SPEC §7: LoRA has `sum_l r (d_in + d_out)` trainable parameters."""
    return int(sum(rank * (d_in + d_out) for d_out, d_in in layer_shapes))


def queryable_param_count(config, layer_shapes):
    """SPEC §7: LoRA's count plus the bank, router, summary and prior."""
    r, n, d_k, d_s = config.rank, config.n_atoms, config.d_key, config.d_summary
    extra = n * r * r + n * d_k + d_k * (r + d_s + 1)
    if config.summary == "attention":
        extra += d_s * (3 * r + 1)
    if config.d_instruction > 0:
        extra += n * (config.d_instruction + 1)
    return lora_param_count(r, layer_shapes) + extra


def matched_lora_rank(config, layer_shapes):
    """SPEC §7: the smallest LoRA rank with at least as many parameters as `config`."""
    target = queryable_param_count(config, layer_shapes)
    per_rank = lora_param_count(1, layer_shapes)
    return max(1, -(-target // per_rank))

