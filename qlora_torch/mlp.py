"""The regression base network of SPEC §8 as an `nn.Module`, adapted by Queryable LoRA or LoRA.

Mirror of `qlora_np/mlp.py` and `qlora_np/model.py`:

    h_{i+1} = tanh(h_i W0_i^T + b0_i + delta_i)   hidden layers
    y       = h_L W0_L^T + b0_L + delta_L         output layer (linear)

Naming rule: the module's `state_dict()` names ARE the canonical SPEC §2 names: `base.{i}.weight`,
`base.{i}.bias` (frozen), `layers.{i}.lora_A`, `layers.{i}.lora_B`, and the shared `bank.*`,
`router.*`, `summary.*`, `prior.*`. So `load_params(params)` with the NumPy side's params dict
(or a golden file's `params.*`) is a name lookup, and `canonical_grads()` gives the gradients
under the same names.
"""

import numpy as onp
import torch
from torch import nn

from qlora_np.mlp import mlp_layer_names, mlp_layer_shapes

from .adapter import InputError, QueryableAdapter, queryable_delta
from .config import LoraConfig, QLoRAConfig, expected_shapes
from .lora import LoRAFactors, lora_delta
from .prior import embed_instructions


class AdaptedMLP(nn.Module):
    """SPEC §8 MLP with `layer_sizes` [d_in, H, ..., d_out], every linear layer adapted.

    config: a `QLoRAConfig` or `LoraConfig` (bound or not; it is bound to the MLP's layers here).
    """

    def __init__(self, config, layer_sizes, dtype=torch.float64, device=None, seed=0):
        super().__init__()
        names, shapes = mlp_layer_names(layer_sizes), mlp_layer_shapes(layer_sizes)
        if isinstance(config, QLoRAConfig):
            blocks = config.blocks if config.is_bound else None
            config = config.bind(names, shapes, blocks)
        elif isinstance(config, LoraConfig):
            config = config.bind(names, shapes)
        else:
            raise InputError(f"config: expected a QLoRAConfig or LoraConfig, got "
                             f"{type(config).__name__}")
        self.config = config
        self.layer_sizes = list(layer_sizes)
        self.base = nn.ModuleList(nn.Linear(d_in, d_out, dtype=dtype, device=device)
                                  for d_out, d_in in shapes)
        self.base.requires_grad_(False)
        self.layers = nn.ModuleList(LoRAFactors(config.rank, d_in, d_out, dtype, device)
                                    for d_out, d_in in shapes)
        self.adapter = None
        if isinstance(config, QLoRAConfig):
            adapter = QueryableAdapter(config, dtype, device)
            # Register the shared parts directly, so their state_dict names are canonical.
            for part in ("bank", "router", "summary", "prior"):
                if getattr(adapter, part) is not None:
                    self.add_module(part, getattr(adapter, part))
            object.__setattr__(self, "adapter", adapter)
        self.reset_parameters(seed)

    def reset_parameters(self, seed=0):
        """SPEC §6 for the adapter (torch RNG; parity exchanges weights instead of seeds)."""
        g = torch.Generator().manual_seed(seed)
        for layer in self.layers:
            layer.reset_parameters(g)
        if self.adapter is not None:
            self.adapter.reset_parameters(g)

    # ----- parameters by canonical name -----
    def canonical_params(self):
        """Every parameter (base and adapter) by canonical name."""
        return dict(self.named_parameters())

    def trainable_params(self):
        """The adapter's trainable parameters by canonical name, in SPEC order."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def canonical_grads(self):
        """`.grad` of every trainable parameter, by canonical name; a parameter the loss does not
        reach (e.g. the router when N = 1) gets zeros, as autograd's `grad` gives."""
        return {n: torch.zeros_like(p) if p.grad is None else p.grad
                for n, p in self.trainable_params().items()}

    @torch.no_grad()
    def load_params(self, params, strict=True):
        """Copy arrays (NumPy or torch) named canonically into the module, checking shapes.

        With `strict`, the adapter's trainable names must match `expected_shapes(config)` exactly;
        `base.*` entries are loaded when present. `from_params` also requires every base tensor.
        """
        own = self.canonical_params()
        if strict:
            expected = set(expected_shapes(self.config))
            given = {n for n in params if not n.startswith("base.")}
            if given != expected:
                raise InputError(f"params: expected the tensors {sorted(expected)}, got "
                                 f"missing {sorted(expected - given)}, "
                                 f"unexpected {sorted(given - expected)}")
        for name, value in params.items():
            if name not in own:
                raise InputError(f"params: unknown tensor '{name}' for this model")
            target = own[name]
            value = torch.as_tensor(onp.asarray(value) if not torch.is_tensor(value) else value)
            if tuple(value.shape) != tuple(target.shape):
                raise InputError(f"tensor '{name}': expected shape {tuple(target.shape)}, "
                                 f"got {tuple(value.shape)}")
            target.copy_(value.to(target.dtype))

    @classmethod
    def from_params(cls, config, layer_sizes, params, dtype=torch.float64):
        """Build the MLP and load a canonical params dict (base and adapter) into it.

        Every tensor must be given: a missing one would silently keep its random init."""
        model = cls(config, layer_sizes, dtype=dtype)
        base_names = {n for n in model.canonical_params() if n.startswith("base.")}
        missing_base = sorted(base_names - set(params))
        if missing_base:
            raise InputError(f"params: missing base tensor(s) {missing_base}")
        model.load_params(params, strict=True)
        return model

    # ----- forward -----
    def _instruction(self, x, instruction, skip_prior):
        """Boundary check of the instruction: strings are embedded (SPEC §4), arrays checked."""
        if self.adapter is None:
            if instruction is not None:
                raise InputError("instruction: given, but a LoRA adapter has no instruction prior")
            return None
        if isinstance(instruction, (list, tuple)) and all(isinstance(t, str) for t in instruction):
            instruction = embed_instructions(list(instruction), self.config.d_instruction)
        if instruction is not None and not torch.is_tensor(instruction):
            instruction = torch.as_tensor(onp.asarray(instruction, dtype=float))
        if instruction is not None:
            instruction = instruction.to(device=x.device, dtype=x.dtype)
        return self.adapter.check_instruction(instruction, skip_prior, batch_size=x.shape[0])

    def forward(self, x, instruction=None, *, skip_prior=False, return_routing=False,
                adapted=True):
        """y (n, d_out) for x (n, d_in). instruction: n strings, an (n, d_e) array, or None.

        With `return_routing=True` also returns the pass's per-block routing log (SPEC §10
        `outputs.routing.<b>` is its `weights`). `adapted=False` runs the frozen base network.
        """
        d_in = self.layer_sizes[0]
        if not torch.is_tensor(x) or x.ndim != 2 or x.shape[1] != d_in:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise InputError(f"x: expected a tensor of shape (n, {d_in}), got {shape}")
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).sum())
            raise InputError(f"x: expected finite values, got {bad} NaN/inf entries")
        e = self._instruction(x, instruction, skip_prior)
        routing_pass = None
        if adapted and self.adapter is not None:
            routing_pass = self.adapter.begin_pass(e)
        h, last = x, len(self.base) - 1
        for i, (base, factors) in enumerate(zip(self.base, self.layers)):
            y = base(h)                                                   # (n, d_out_i)
            if adapted and routing_pass is not None:
                y = y + queryable_delta(routing_pass, self.config.block_of_layer[i], h,
                                        factors.lora_A, factors.lora_B, self.config.scale)
            elif adapted:
                y = y + lora_delta(h, factors.lora_A, factors.lora_B, self.config.scale)
            h = y if i == last else torch.tanh(y)
        if return_routing:
            return h, ([] if routing_pass is None else routing_pass.routing_log())
        return h

    def routing(self):
        """route() dicts of the last pass, in block order (for the losses)."""
        if self.adapter is None or self.adapter.current is None:
            return []
        return self.adapter.current.routing_list()
