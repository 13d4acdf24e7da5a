"""The Queryable LoRA adapter: route once per block, apply its operator in each layer (SPEC §3).

Mirror of `qlora_np/adapter.py`. `QueryableAdapter` owns the parameters shared by the whole model
(atom bank, query projection, summary, prior); one per model. A forward pass opens a
`RoutingPass` that holds the pass's routing state. Each adapted layer asks the pass for its block's
routing weights, passing its low-rank code `u = h A^T`: the first layer of a block to arrive (the
**lead layer**, SPEC §3) routes the block with `z_b = u`; every later layer of the block reuses
the weights. Then (SPEC §3.9)

    u = h A^T,  v = C_b u,  delta = (alpha / r) v B^T

`QLoRALinear` wraps one frozen linear layer of a model (peft-style: `base_layer` + `lora_A`,
`lora_B`); the MLP of SPEC §8 calls `queryable_delta` directly. Both use the same function, so the
equations live here only.
"""

import math

import torch
from torch import nn

from .bank import AtomBank, apply_routed_operator
from .prior import InstructionPrior
from .query import QueryProjection, attention_logits, rms_norm
from .routing import route, routing_entropy
from .summary import DepthSummary


class InputError(ValueError):
    """An input tensor or instruction does not fit the model; the message names it."""


class QueryableAdapter(nn.Module):
    """The shared parameters of one model's Queryable LoRA: `bank`, `router`, `summary`, `prior`.

    state_dict names are the canonical SPEC §2 names (`bank.atoms`, `router.weight`, ...).
    """

    def __init__(self, config, dtype=torch.float64, device=None):
        super().__init__()
        self.config = config
        c = config
        self.bank = AtomBank(c.n_atoms, c.rank, c.d_key, dtype, device)
        self.router = QueryProjection(c.rank, c.d_summary, c.d_key, dtype, device)
        self.summary = DepthSummary(c.rank, c.d_summary, dtype, device) \
            if c.summary == "attention" else None
        self.prior = InstructionPrior(c.n_atoms, c.d_instruction, dtype, device) \
            if c.d_instruction > 0 else None
        self.enabled = True         # False inside `disable()`: layers return the base output
        self.current = None         # the RoutingPass of the forward pass in progress

    def reset_parameters(self, generator=None):
        """SPEC §6 initialisation, in the NumPy side's order: bank, router, summary, prior."""
        self.bank.reset_parameters(self.config.atom_init_scale, generator)
        self.router.reset_parameters(generator)
        if self.summary is not None:
            self.summary.reset_parameters(generator)
        if self.prior is not None:
            self.prior.reset_parameters(generator)

    def check_instruction(self, instruction, skip_prior, batch_size=None):
        """Validate the instruction embedding at the boundary; returns it (or None)."""
        d_e = self.config.d_instruction
        if instruction is None:
            if d_e > 0 and not skip_prior:
                raise InputError(
                    f"instruction: expected an embedding of width {d_e} per sequence for the "
                    "prior (d_instruction > 0), got None; pass skip_prior=True to route without "
                    "the prior")
            return None
        if d_e == 0:
            raise InputError("instruction: given, but the config has no instruction prior "
                             "(d_instruction=0)")
        if skip_prior:
            raise InputError("skip_prior: True, but an instruction was given; pass one or the "
                             "other")
        if not torch.is_tensor(instruction) or instruction.ndim != 2 \
                or instruction.shape[1] != d_e:
            shape = tuple(instruction.shape) if hasattr(instruction, "shape") else instruction
            raise InputError(f"instruction: expected a tensor of shape (batch, {d_e}), "
                             f"got {shape!r}")
        if not torch.isfinite(instruction).all():
            bad = int((~torch.isfinite(instruction)).sum())
            raise InputError(f"instruction: expected finite values, got {bad} NaN/inf entries")
        if batch_size is not None and instruction.shape[0] != batch_size:
            raise InputError(f"instruction: expected {batch_size} rows (one per sequence of the "
                             f"batch), got {instruction.shape[0]}")
        return instruction

    def begin_pass(self, instruction=None, record=False):
        """Start a forward pass (resets the routing state). `instruction` is already checked."""
        self.current = RoutingPass(self, instruction, record)
        return self.current


class RoutingPass:
    """The routing state of one forward pass (SPEC §3): the blocks routed so far."""

    def __init__(self, adapter, instruction=None, record=False):
        self.adapter = adapter
        self.instruction = instruction       # (batch, d_e) or None
        self.record = record
        self.log_prior = None                # (batch, N), computed at the first block
        self.states = {}                     # block -> z_hat (..., r), for the summary
        self.routing = {}                    # block -> route() dict

    def _log_prior(self, z):
        """SPEC §3.6: log pi per sequence, broadcast to the rows of z (..., r) -> (..., N)."""
        if self.instruction is None:
            return None
        if self.log_prior is None:
            e = self.instruction.to(device=z.device, dtype=self.adapter.prior.weight.dtype)
            self.log_prior = self.adapter.prior(e)                       # (batch, N)
        if self.log_prior.shape[0] != z.shape[0]:
            raise InputError(f"instruction: expected {z.shape[0]} rows (one per sequence of the "
                             f"batch), got {self.log_prior.shape[0]}")
        return self.log_prior.reshape(z.shape[0], *([1] * (z.ndim - 2)), self.log_prior.shape[-1])

    def route_block(self, block, z):
        """SPEC §3.1-3.7 for `block`, with the lead layer's low-rank code z (..., r)."""
        a, c = self.adapter, self.adapter.config
        z_hat = rms_norm(z, c.norm_eps)                                  # §3.2, (..., r)
        m = None
        if a.summary is not None:                                        # §3.3, (..., d_s)
            m = a.summary(z_hat, [s for b, s in sorted(self.states.items()) if b < block])
        q = a.router(z_hat, m)                                           # §3.4, (..., d_k)
        logits = attention_logits(q, a.bank.keys)                        # §3.5, (..., N)
        out = route(logits, c.top_k, c.temperature, self._log_prior(z), c.prior_weight)
        self.states[block] = z_hat
        self.routing[block] = out
        return out

    def weights(self, block, u):
        """The routing weights w_b (..., N) of `block`; the first caller (lead layer) routes."""
        out = self.routing.get(block)
        if out is None:
            out = self.route_block(block, u)
        return out["weights"]

    def routing_list(self):
        """route() dicts in block order (what the losses read)."""
        return [self.routing[b] for b in sorted(self.routing)]

    def routing_log(self):
        """Per block: `weights` (..., N), chosen-atom `mask` and `entropy` (...,), detached."""
        return [{"block": b, "weights": r["weights"].detach(), "mask": r["mask"],
                 "entropy": routing_entropy(r).detach()}
                for b, r in sorted(self.routing.items())]


def queryable_delta(routing_pass, block, h, lora_A, lora_B, scale):
    """SPEC §3.9: `(alpha / r) (C_b (h A^T)) B^T`. h: (..., d_in) -> (..., d_out)."""
    u = h @ lora_A.T                                                     # (..., r)
    w = routing_pass.weights(block, u)                                   # (..., N)
    v = apply_routed_operator(w, routing_pass.adapter.bank.atoms, u)     # §3.8, (..., r)
    return scale * (v @ lora_B.T)                                        # (..., d_out)


def linear_shape(layer):
    """(d_out, d_in) of an `nn.Linear` or a transformers `Conv1D` (weight stored (in, out))."""
    if isinstance(layer, nn.Linear):
        return layer.out_features, layer.in_features
    if type(layer).__name__ == "Conv1D" and hasattr(layer, "nf"):
        d_in, d_out = layer.weight.shape
        return d_out, d_in
    raise TypeError(f"layer: expected nn.Linear or transformers Conv1D, got "
                    f"{type(layer).__name__}")


class QLoRALinear(nn.Module):
    """A frozen linear layer plus its Queryable LoRA factors (peft layout: `base_layer`, `lora_A`,
    `lora_B`). The shared `QueryableAdapter` is referenced, not owned, so that it appears once in
    the model's state_dict."""

    def __init__(self, base_layer, adapter, block, dtype=torch.float32):
        super().__init__()
        d_out, d_in = linear_shape(base_layer)
        r = adapter.config.rank
        device = base_layer.weight.device
        self.base_layer = base_layer
        self.lora_A = nn.Parameter(torch.empty(r, d_in, dtype=dtype, device=device))
        self.lora_B = nn.Parameter(torch.zeros(d_out, r, dtype=dtype, device=device))
        self.block = block
        self.scale = adapter.config.scale
        object.__setattr__(self, "adapter", adapter)   # shared: not registered as a submodule

    @torch.no_grad()
    def reset_parameters(self, generator=None):
        """SPEC §6: `A ~ U(+-1/sqrt(d_in))`, `B = 0`."""
        bound = 1.0 / math.sqrt(self.lora_A.shape[1])
        a = (torch.rand(self.lora_A.shape, generator=generator, dtype=torch.float64) * 2 - 1)
        self.lora_A.copy_(a * bound)
        self.lora_B.zero_()

    def forward(self, h, *args, **kwargs):
        y = self.base_layer(h, *args, **kwargs)
        adapter = self.adapter
        if not adapter.enabled:
            return y
        routing_pass = adapter.current
        if routing_pass is None:     # called outside a model's forward: open a pass here
            routing_pass = adapter.begin_pass(adapter.check_instruction(None, False))
        x = h.to(self.lora_A.dtype)
        return y + queryable_delta(routing_pass, self.block, x, self.lora_A, self.lora_B,
                                   self.scale).to(y.dtype)

    def delta_weight(self, operator):
        """The merged update `(alpha / r) B C A` (d_out, d_in) for a static operator C (r, r)."""
        return self.scale * (self.lora_B @ operator @ self.lora_A)

    def extra_repr(self):
        return f"rank={self.lora_A.shape[0]}, block={self.block}"
