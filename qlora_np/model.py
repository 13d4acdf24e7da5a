"""The public entry points: bind, initialise, run and merge an adapted MLP.

This is the boundary of the NumPy implementation: it checks what users pass in (shapes, NaN/inf,
instruction vs prior) and raises `InputError` naming the argument, the expected and the actual
value. Inside, the math runs unchecked (`adapted_forward`), which is what training loops call.
"""

import autograd.numpy as np
import numpy as onp

from .adapter import init_queryable, make_pass, static_operator
from .config import LoraConfig, QLoRAConfig
from .lora import init_lora_factors
from .mlp import mlp_forward, mlp_layer_names, mlp_layer_shapes
from .params import lora_names
from .prior import embed_instructions


class InputError(ValueError):
    """An input array or instruction does not fit the model."""


def bind_to_mlp(config, layer_sizes, blocks=None):
    """Bind a config to every linear layer of the SPEC §8 MLP with sizes `layer_sizes`."""
    names, shapes = mlp_layer_names(layer_sizes), mlp_layer_shapes(layer_sizes)
    if isinstance(config, LoraConfig):
        return config.bind(names, shapes)
    return config.bind(names, shapes, blocks)


def init_adapter(config, rng):
    """Trainable parameters of a bound config. `rng`: a `numpy.random.Generator` or an int seed."""
    if not config.is_bound:
        raise InputError("config: expected a bound config; call bind_to_mlp(config, layer_sizes) "
                         "or config.bind(layer_names, layer_shapes) first")
    rng = onp.random.default_rng(rng)
    if isinstance(config, LoraConfig):
        return init_lora_factors(config, rng)
    return init_queryable(config, rng)


def _check_array(name, value, ndim):
    arr = onp.asarray(value, dtype=float)
    if arr.ndim != ndim:
        raise InputError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if not onp.all(onp.isfinite(arr)):
        bad = int(onp.size(arr) - onp.isfinite(arr).sum())
        raise InputError(f"{name}: expected finite values, got {bad} NaN/inf entries")
    return arr


def prepare_inputs(config, base, x, instruction=None, skip_prior=False):
    """Validate `x` (n, d_in) and the instruction; return `(x, e)` with `e` (n, d_e) or None.

    instruction: a list of n strings (embedded with the built-in hashed n-gram embedder, SPEC §4),
    an (n, d_e) array of embeddings, or None. A config with a prior needs one, unless
    `skip_prior=True` routes without the prior (SPEC §3.6: then `l~ = l`).
    """
    x = _check_array("x", x, 2)
    d_in = base["base.0.weight"].shape[1]
    if x.shape[1] != d_in:
        raise InputError(f"x: expected shape (n, {d_in}), got {x.shape}")
    d_e = getattr(config, "d_instruction", 0)
    if instruction is None:
        if d_e > 0 and not skip_prior:
            raise InputError(f"instruction: expected {x.shape[0]} instructions for the prior "
                             f"(d_instruction={d_e}), got None; pass skip_prior=True to route "
                             "without the prior")
        return x, None
    if d_e == 0:
        raise InputError("instruction: given, but the config has no instruction prior "
                         "(d_instruction=0)")
    if skip_prior:
        raise InputError("skip_prior: True, but an instruction was given; pass one or the other")
    if isinstance(instruction, (list, tuple)) and all(isinstance(t, str) for t in instruction):
        e = embed_instructions(list(instruction), d_e)
    else:
        e = _check_array("instruction", instruction, 2)
    if e.shape != (x.shape[0], d_e):
        raise InputError(f"instruction: expected {x.shape[0]} rows of width {d_e} "
                         f"(one per row of x), got shape {e.shape}")
    return x, e


def adapted_forward(config, base, params, x, e=None):
    """Unchecked forward: returns `(y, adapter_pass)`; the pass holds the routing (SPEC §3)."""
    adapter = make_pass(config, params, e)
    return mlp_forward(base, x, adapter), adapter


def forward(config, base, params, x, instruction=None, *, skip_prior=False, return_routing=False):
    """The adapted MLP's output `y` (n, d_out), checked at the boundary.

    With `return_routing=True` also returns, per block, a dict with `weights` (n, N), `mask`
    (n, N) and `chosen` (n, k) of the chosen atoms, and `entropy` (n,) (an empty list for LoRA).
    """
    x, e = prepare_inputs(config, base, x, instruction, skip_prior)
    y, adapter = adapted_forward(config, base, params, x, e)
    return (y, adapter.routing_log()) if return_routing else y


def merge(config, base, params, instruction=None):
    """Fold the adapter into the base weights: `W0 + (alpha / r) B C A` (SPEC §9.6).

    LoRA always merges (`C = I`). Queryable LoRA merges only when routing is static, i.e. depends
    on the instruction alone; `instruction` is then one string or one embedding (d_e,).
    """
    if isinstance(config, QLoRAConfig):
        if isinstance(instruction, str):
            instruction = embed_instructions([instruction], config.d_instruction)
        if instruction is not None and config.d_instruction == 0:
            raise InputError("instruction: given, but the config has no instruction prior")
        operator = static_operator(config, params, instruction)       # (r, r)
    else:
        operator = np.eye(config.rank)
    merged = dict(base)
    for i, name in enumerate(config.layer_names):
        a, b = lora_names(name)
        key = f"base.{i}.weight"
        merged[key] = base[key] + config.scale * (params[b] @ operator @ params[a])
    return merged
