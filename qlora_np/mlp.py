"""The regression base network (SPEC §8): a tanh MLP whose linear layers can be adapted.

    h_{i+1} = tanh(h_i W0_i^T + b0_i + delta_i)   hidden layers
    y       = h_L W0_L^T + b0_L + delta_L         output layer (linear)

`delta_i = adapter(i, h_i)` comes from the adapter pass (Queryable LoRA or LoRA); without one the
network is the frozen base. Parameters: `base.{i}.weight` (d_out, d_in) and `base.{i}.bias`.
"""

import autograd.numpy as np


def mlp_layer_shapes(layer_sizes):
    """(d_out, d_in) of each linear layer of an MLP with sizes `[d_in, H, ..., d_out]`."""
    return [(d_out, d_in) for d_in, d_out in zip(layer_sizes[:-1], layer_sizes[1:])]


def mlp_layer_names(layer_sizes):
    """Names of the adapted layers of the MLP: its layer indices, "0", "1", ..."""
    return [str(i) for i in range(len(layer_sizes) - 1)]


def init_mlp(layer_sizes, rng):
    """PyTorch `nn.Linear`'s default: weight and bias `~ U(+-1/sqrt(d_in))`."""
    if len(layer_sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                                   for s in layer_sizes):
        raise ValueError(f"layer_sizes: expected a list of >= 2 positive integers, "
                         f"got {layer_sizes!r}")
    base = {}
    for i, (d_out, d_in) in enumerate(mlp_layer_shapes(layer_sizes)):
        bound = 1.0 / np.sqrt(d_in)
        base[f"base.{i}.weight"] = rng.uniform(-bound, bound, (d_out, d_in))
        base[f"base.{i}.bias"] = rng.uniform(-bound, bound, (d_out,))
    return base


def n_layers(base):
    return sum(1 for k in base if k.endswith(".weight"))


def mlp_forward(base, x, adapter=None):
    """SPEC §8 forward. x: (n, d_in) -> (n, d_out). `adapter(i, h)` adds layer i's update."""
    h = x
    last = n_layers(base) - 1
    for i in range(last + 1):
        y = h @ base[f"base.{i}.weight"].T + base[f"base.{i}.bias"]     # (n, d_out_i)
        if adapter is not None:
            y = y + adapter(i, h)
        h = y if i == last else np.tanh(y)
    return h
