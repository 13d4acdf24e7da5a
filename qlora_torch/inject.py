"""Queryable LoRA in any Hugging Face model, peft-shaped: inject, train, disable, merge, save, load.

    qmodel = inject_qlora(model, QLoRAConfig(rank=8, n_atoms=8, block_size=6),
                          target_modules=["q_proj", "v_proj"])
    out = qmodel(input_ids=ids, instruction=e)        # e: (batch, d_instruction) or None
    qmodel.save_pretrained("adapter/")                # SPEC §10, loads in qlora_np too

**Targets.** `target_modules` is a list of names (a module matches when its path equals the name or
ends with "." + name), a string (a regular expression that must match the whole path), or
"all-linear" (every `nn.Linear` / GPT-2 `Conv1D` except the output embedding). Each matched module
is wrapped in a `QLoRALinear`; the base model is frozen.

**Blocks.** A module's transformer layer is the first all-digit component of its path
(`model.layers.3.self_attn.q_proj` -> 3); block = layer // G with G = `config.block_size`
(transformer layers per block). The adapted modules, in module-registration order, are the bound
config's `layer_names`, and the blocks are lists of their indices. The lead layer of a block is
the first adapted module *called* in it during a forward pass (SPEC §3).

**One pass per forward.** A forward pre-hook on the model opens a new `RoutingPass` before every
call of the model, so block states and summary never leak between calls; a generation step with a
KV cache routes its new tokens exactly as a full forward would (routing is per token).

**Naming rule (state_dict <-> SPEC §2).** `QLoRAModel` registers the wrapped model as `model` and
the shared parts directly as `bank`, `router`, `summary`, `prior`, so:

    state_dict name                      canonical name
    bank.atoms, router.weight, ...       the same
    model.{path}.lora_A / .lora_B        layers.{path}.lora_A / .lora_B
    model.{path}.base_layer.weight       (frozen base: not in adapter checkpoints)

`canonical_name` and `state_dict_name` apply the rule; checkpoints use canonical names only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re

import numpy as onp
import torch
from torch import nn

from qlora_np.checkpoint import load_adapter, save_adapter

from .adapter import InputError, QLoRALinear, QueryableAdapter, linear_shape
from .config import ConfigError, QLoRAConfig
from .losses import routing_loss
from .query import attention_logits
from .routing import route, routing_entropy

SHARED_PARTS = ("bank", "router", "summary", "prior")


# ----- naming -----
def canonical_name(name):
    """state_dict name of a `QLoRAModel` -> canonical SPEC §2 name (see the module docstring)."""
    if name.startswith("model.") and name.endswith((".lora_A", ".lora_B")):
        return "layers." + name[len("model."):]
    return name


def state_dict_name(name):
    """Canonical SPEC §2 name -> state_dict name of a `QLoRAModel`."""
    if name.startswith("layers."):
        return "model." + name[len("layers."):]
    return name


def layer_index(path):
    """The transformer-layer index of a module path: its first all-digit component, or None."""
    for part in path.split("."):
        if part.isdigit():
            return int(part)
    return None


def _is_linear(module):
    return isinstance(module, nn.Linear) or (type(module).__name__ == "Conv1D"
                                             and hasattr(module, "nf"))


def find_targets(model, target_modules):
    """Paths of the modules matched by `target_modules`, in registration order (see docstring)."""
    modules = dict(model.named_modules())
    linear = [p for p, m in modules.items() if _is_linear(m)]
    if isinstance(target_modules, str) and target_modules == "all-linear":
        out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        found = [p for p in linear if modules[p] is not out_emb]
    elif isinstance(target_modules, str):
        pattern = re.compile(target_modules)
        found = [p for p in modules if p and pattern.fullmatch(p)]
    elif isinstance(target_modules, (list, tuple)) and target_modules \
            and all(isinstance(t, str) for t in target_modules):
        def hit(path, t):
            return path == t or path.endswith("." + t)
        unknown = [t for t in target_modules if not any(hit(p, t) for p in modules if p)]
        if unknown:
            suffixes = sorted({p.rsplit(".", 1)[-1] for p in linear})
            raise InputError(f"target_modules: {unknown} matched no module of the model; "
                             f"expected names of its linear modules, e.g. {suffixes}")
        found = [p for p in modules if p and any(hit(p, t) for t in target_modules)]
    else:
        raise InputError(f"target_modules: expected a list of module names, a regular "
                         f"expression or 'all-linear', got {target_modules!r}")
    if not found:
        suffixes = sorted({p.rsplit(".", 1)[-1] for p in linear})
        raise InputError(f"target_modules: {target_modules!r} matched no module of the model; "
                         f"its linear modules are named {suffixes}")
    not_linear = [f"{p} ({type(modules[p]).__name__})" for p in found if not _is_linear(modules[p])]
    if not_linear:
        raise InputError(f"target_modules: expected only nn.Linear / Conv1D modules, but matched "
                         f"{not_linear}")
    return found


def resolve_blocks(paths, block_size):
    """Blocks of G transformer layers: lists of indices into `paths` (SPEC §3, module docstring)."""
    ids = []
    for p in paths:
        t = layer_index(p)
        if t is None:
            raise InputError(f"target_modules: module '{p}' has no transformer-layer index in its "
                             "path, so it cannot be put in a block; leave it out of the targets")
        ids.append(t // block_size)
    if ids != sorted(ids):
        raise InputError(f"target_modules: modules are not in transformer-layer order: {paths}")
    blocks, order = [], {}
    for i, b in enumerate(ids):
        if b not in order:
            order[b] = len(blocks)
            blocks.append([])
        blocks[order[b]].append(i)
    return blocks


def _set_module(root, path, module):
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, child, module)


def _adapter_dtype(model):
    """Adapter parameters: float64 in a float64 model (parity), else float32 (autocast trains)."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return "float64" if dtype == torch.float64 else "float32"


def inject_qlora(model, config, target_modules=None, *, seed=0):
    """Wrap `model`'s target modules with Queryable LoRA; returns a `QLoRAModel`.

    config: a `QLoRAConfig` (unbound: it is bound here; bound: its layer names must be found).
    target_modules: see the module docstring; None -> `config.extra["target_modules"]`.
    The base model is frozen; the adapter's parameters are initialised per SPEC §6 from `seed`.
    """
    if not isinstance(config, QLoRAConfig):
        raise InputError(f"config: expected a QLoRAConfig, got {type(config).__name__}")
    if target_modules is None:
        target_modules = config.extra.get("target_modules")
        if target_modules is None:
            raise InputError("target_modules: expected module names, a pattern or 'all-linear', "
                             "got None (and the config's extra has none)")
    paths = find_targets(model, target_modules)
    modules = dict(model.named_modules())
    shapes = [tuple(linear_shape(modules[p])) for p in paths]
    blocks = resolve_blocks(paths, config.block_size)
    extra = dict(config.extra, target_modules=target_modules,
                 base_model=getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    dtype_name = config.dtype if config.is_bound else _adapter_dtype(model)
    bound = dataclasses.replace(config, extra=extra, dtype=dtype_name).bind(paths, shapes, blocks)
    if config.is_bound and (tuple(config.layer_names) != tuple(paths)
                            or tuple(config.layer_shapes) != tuple(shapes)):
        raise InputError(_layer_mismatch(config, paths, shapes))
    return QLoRAModel(model, bound, seed=seed)


def _layer_mismatch(config, paths, shapes):
    have = dict(zip(paths, shapes))
    for name, shape in zip(config.layer_names, config.layer_shapes):
        if name not in have:
            return f"checkpoint: layer '{name}' not found in the model (it has {paths[:4]} ...)"
        if tuple(have[name]) != tuple(shape):
            return (f"checkpoint: layer '{name}': expected shape (d_out, d_in) = {tuple(shape)}, "
                    f"the model has {tuple(have[name])}")
    extra = sorted(set(paths) - set(config.layer_names))
    return f"checkpoint: the model has adapted layers {extra} that the checkpoint does not"


class QLoRAModel(nn.Module):
    """A model with Queryable LoRA injected. Built by `inject_qlora` or `from_pretrained`."""

    def __init__(self, model, config, seed=0):
        super().__init__()
        dtype = torch.float64 if config.dtype == "float64" else torch.float32
        device = next(model.parameters()).device
        model.requires_grad_(False)
        adapter = QueryableAdapter(config, dtype, device)
        self.model = model
        for part in SHARED_PARTS:
            if getattr(adapter, part) is not None:
                self.add_module(part, getattr(adapter, part))
        object.__setattr__(self, "adapter", adapter)
        self.config = config
        self._instruction = None
        self.record_routing = False
        self.wrapped = {}
        for path, block_of in zip(config.layer_names, _block_of(config)):
            wrapper = QLoRALinear(model.get_submodule(path), adapter, block_of, dtype)
            _set_module(model, path, wrapper)
            self.wrapped[path] = wrapper
        self.reset_parameters(seed)
        self._hook = model.register_forward_pre_hook(self._begin_pass)

    def reset_parameters(self, seed=0):
        """SPEC §6 initialisation: A, B per layer in forward order, then the shared parts."""
        g = torch.Generator().manual_seed(seed)
        for wrapper in self.wrapped.values():
            wrapper.reset_parameters(g)
        self.adapter.reset_parameters(g)

    def _begin_pass(self, module, args):
        if module.training and torch.is_grad_enabled() and _checkpointing(module):
            raise InputError(
                "gradient checkpointing: expected it off, got it on; a block's routing (computed "
                "by its lead layer, SPEC §3) is shared by later layers, which recomputing one "
                "layer at a time cannot reproduce; call model.gradient_checkpointing_disable()")
        self.adapter.begin_pass(self._instruction, self.record_routing)

    # ----- running -----
    def _with_instruction(self, fn, args, kwargs, instruction, skip_prior):
        ids = kwargs.get("input_ids", kwargs.get("inputs_embeds", args[0] if args else None))
        batch = ids.shape[0] if torch.is_tensor(ids) else None
        self._instruction = self.adapter.check_instruction(instruction, skip_prior, batch)
        try:
            return fn(*args, **kwargs)
        finally:
            self._instruction = None

    def forward(self, *args, instruction=None, skip_prior=False, **kwargs):
        """The wrapped model's forward. instruction: (batch, d_instruction) embeddings, one per
        sequence (SPEC §4), required when the config has a prior unless `skip_prior=True`."""
        return self._with_instruction(self.model, args, kwargs, instruction, skip_prior)

    def generate(self, *args, instruction=None, skip_prior=False, **kwargs):
        """`model.generate`, with the instruction held for every step of the generation."""
        return self._with_instruction(self.model.generate, args, kwargs, instruction, skip_prior)

    def routing_loss(self):
        """`beta L_kl + gamma L_balance` of the last forward pass (SPEC §5); 0.0 when both off."""
        current = self.adapter.current
        return 0.0 if current is None else routing_loss(self.config, current.routing_list())

    @contextlib.contextmanager
    def disable(self):
        """Inside this context the model gives exactly the base model's output."""
        previous = self.adapter.enabled
        self.adapter.enabled = False
        try:
            yield self
        finally:
            self.adapter.enabled = previous

    # ----- parameters -----
    def trainable_parameters(self):
        """The adapter's trainable parameters by canonical name (factors, bank, router, ...)."""
        return {canonical_name(n): p for n, p in self.named_parameters() if p.requires_grad}

    def count_trainable_parameters(self):
        """(trainable, total) parameter counts."""
        trainable = sum(p.numel() for p in self.trainable_parameters().values())
        return trainable, sum(p.numel() for p in self.parameters())

    def adapter_params(self):
        """Canonical name -> float32/float64 NumPy array of every trainable tensor (SPEC §10)."""
        dtype = torch.float64 if self.config.dtype == "float64" else torch.float32
        return {n: p.detach().cpu().to(dtype).numpy()      # bf16 has no NumPy dtype: cast first
                for n, p in self.trainable_parameters().items()}

    @torch.no_grad()
    def load_adapter_params(self, params):
        """Copy a canonical params dict (NumPy or torch) into the adapter, checking names/shapes."""
        own = self.trainable_parameters()
        missing, extra = sorted(set(own) - set(params)), sorted(set(params) - set(own))
        if missing or extra:
            raise InputError(f"params: expected the tensors of this adapter; missing {missing}, "
                             f"unexpected {extra}")
        for name, value in params.items():
            value = torch.as_tensor(onp.asarray(value)) if not torch.is_tensor(value) else value
            if tuple(value.shape) != tuple(own[name].shape):
                raise InputError(f"tensor '{name}': expected shape {tuple(own[name].shape)}, "
                                 f"got {tuple(value.shape)}")
            own[name].copy_(value.to(own[name].dtype))

    def save_pretrained(self, directory):
        """Write the SPEC §10 checkpoint (config JSON + safetensors, canonical names) atomically."""
        save_adapter(directory, self.config, self.adapter_params())

    @classmethod
    def from_pretrained(cls, model, directory):
        """Inject the checkpoint in `directory` into `model` and load its weights."""
        config, params = load_adapter(directory)
        if not isinstance(config, QLoRAConfig):
            raise ConfigError(f"checkpoint: expected a Queryable LoRA adapter, got "
                              f"'{config.adapter_type}'")
        target_modules = config.extra.get("target_modules")
        paths = find_targets(model, target_modules)
        shapes = [tuple(linear_shape(model.get_submodule(p))) for p in paths]
        if tuple(paths) != tuple(config.layer_names) or tuple(shapes) != tuple(config.layer_shapes):
            raise InputError(_layer_mismatch(config, paths, shapes))
        qmodel = cls(model, config)
        qmodel.load_adapter_params(params)
        return qmodel

    # ----- merge -----
    @torch.no_grad()
    def static_operator(self, instruction=None, skip_prior=False):
        """The routed operator C (r, r) when routing depends on the instruction alone (SPEC §9.6).

        Routing is static when `router.weight` is zero: every row's query is then `b_q`. Anything
        else refuses with a clear error, as the NumPy side's `static_operator` does.
        """
        if torch.any(self.router.weight != 0):
            raise ValueError("merge: routing depends on the input (router.weight is non-zero), "
                             "so the update differs per token and cannot be merged into W0; only "
                             "adapters whose routing depends on the instruction alone can merge")
        if instruction is not None:
            instruction = torch.as_tensor(instruction).reshape(1, -1)
        e = self.adapter.check_instruction(instruction, skip_prior, batch_size=1)
        c = self.config
        logits = attention_logits(self.router.bias[None, :], self.bank.keys)     # (1, N)
        lp = None if e is None else self.prior(e.to(self.prior.weight))
        w = route(logits, c.top_k, c.temperature, lp, c.prior_weight)["weights"]
        return torch.einsum("j,jpq->pq", w[0], self.bank.atoms)                  # (r, r)

    @torch.no_grad()
    def merge(self, instruction=None, skip_prior=False):
        """Fold the adapter into the base weights (`W0 += (alpha/r) B C A`) and unwrap the
        modules; returns the plain base model. Only for static routing (SPEC §9.6)."""
        operator = self.static_operator(instruction, skip_prior)
        for path, wrapper in self.wrapped.items():
            base = wrapper.base_layer
            delta = wrapper.delta_weight(operator.to(wrapper.lora_A.dtype))      # (d_out, d_in)
            if isinstance(base, nn.Linear):
                base.weight += delta.to(base.weight.dtype)
            else:                                                                # Conv1D (in, out)
                base.weight += delta.T.to(base.weight.dtype)
            _set_module(self.model, path, base)
        self._hook.remove()
        self.wrapped = {}
        return self.model

    # ----- routing logs -----
    def routing_log(self):
        """Per block of the last forward pass: `weights` (batch, seq, N), `mask`, `entropy`."""
        current = self.adapter.current
        return [] if current is None else current.routing_log()

    @torch.no_grad()
    def routing_stats(self, attention_mask=None):
        """Per block of the last pass: mean weight per atom, atom usage (share of top-k slots),
        mean routing entropy; rows where `attention_mask` is 0 are left out."""
        stats = []
        current = self.adapter.current
        for b, r in ([] if current is None else sorted(current.routing.items())):
            w, mask, ent = r["weights"], r["mask"], routing_entropy(r)
            if attention_mask is not None:
                keep = attention_mask.bool().reshape(w.shape[:-1])
                w, mask, ent = w[keep], mask[keep], ent[keep]
            n_atoms = w.shape[-1]
            w, mask = w.reshape(-1, n_atoms), mask.reshape(-1, n_atoms).to(w.dtype)
            stats.append({"block": b, "mean_weight": w.mean(0).tolist(),
                          "usage": (mask.sum(0) / mask.sum()).tolist(),
                          "entropy": float(ent.float().mean())})
        return stats

    def print_trainable_parameters(self):
        trainable, total = self.count_trainable_parameters()
        print(f"trainable params: {trainable:,} || all params: {total:,} || "
              f"trainable%: {100 * trainable / total:.4f}")


def _checkpointing(model):
    """Whether a transformers model has gradient (activation) checkpointing switched on."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if isinstance(getattr(type(model), name, None), property):
            return bool(getattr(model, name))
    return False


def _block_of(config):
    of = config.block_of_layer
    return [of[i] for i in range(config.n_layers)]

