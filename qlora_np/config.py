"""The adapter configuration: one dataclass for Queryable LoRA, one for the LoRA baseline.

Every hyper-parameter of SPEC §2 lives here under its canonical snake_case key, so that
`adapter_config.json` (SPEC §10) is `config.to_dict()` and nothing else. Values are validated
when the object is built: a bad value raises `ConfigError` naming the key, what was expected and
what was given. The inner math never checks anything again.

A config is first written by a user with hyper-parameters only, then *bound* to the layers it
adapts (`bind`): that fills in the adapted layers' names, their `(d_out, d_in)` shapes and the
resolved list of blocks. Only a bound config can initialise parameters or be saved.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

FORMAT_VERSION = 1
SUMMARY_MODES = ("attention", "none")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key, expected and actual value."""


def _bad(key, expected, actual):
    raise ConfigError(f"config '{key}': expected {expected}, got {actual!r}")


def _check_int(key, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _bad(key, f"an integer >= {minimum}", value)


def _check_real(key, value, *, positive=False, nonnegative=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive and value <= 0:
        ok = False
    if ok and nonnegative and value < 0:
        ok = False
    if not ok:
        what = "a finite number" + (" > 0" if positive else " >= 0" if nonnegative else "")
        _bad(key, what, value)


def consecutive_blocks(n_layers, block_size):
    """Group layers `0..n_layers-1` into consecutive blocks of `block_size` (the last may be shorter)."""
    return [list(range(s, min(s + block_size, n_layers))) for s in range(0, n_layers, block_size)]


@dataclass(frozen=True)
class _Bound:
    """Fields shared by both adapter types: the layers an adapter is bound to (SPEC §10)."""

    # Adapted layers in forward order: names ("0", "1", ... for the MLP; module paths for an LLM).
    layer_names: tuple = ()
    # (d_out, d_in) of each adapted layer, PyTorch Linear layout.
    layer_shapes: tuple = ()
    # Implementation-specific metadata that the math never reads (e.g. an LLM's target modules
    # and base model name). JSON-serialisable; round-trips through the checkpoint unchanged.
    extra: dict = field(default_factory=dict)

    @property
    def is_bound(self):
        return len(self.layer_names) > 0

    @property
    def n_layers(self):
        return len(self.layer_names)

    def _check_layers(self):
        if not isinstance(self.extra, dict):
            _bad("extra", "a dict", self.extra)
        if len(self.layer_names) != len(self.layer_shapes):
            _bad("layer_shapes", f"one (d_out, d_in) per layer name ({len(self.layer_names)})",
                 list(self.layer_shapes))
        if len(set(self.layer_names)) != len(self.layer_names):
            _bad("layer_names", "unique names", list(self.layer_names))
        for name, shape in zip(self.layer_names, self.layer_shapes):
            if not isinstance(name, str) or not name:
                _bad("layer_names", "non-empty strings", name)
            if (len(shape) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                                       for s in shape)):
                _bad(f"layer_shapes[{name}]", "(d_out, d_in) of positive integers", shape)


@dataclass(frozen=True)
class QLoRAConfig(_Bound):
    """Queryable LoRA hyper-parameters (SPEC §2). Defaults are the project's tuned defaults."""

    rank: int = 4                  # r: LoRA bottleneck width; atoms are r x r
    n_atoms: int = 8               # N: atoms in the shared bank
    top_k: int | None = None       # k: atoms mixed per row; None -> N (dense routing)
    d_key: int = 16                # d_k: width of queries and atom keys
    summary: str = "attention"     # running summary of earlier blocks: "attention" | "none"
    d_summary: int | None = None   # d_s: summary width; None -> 8 for "attention", 0 for "none"
    block_size: int = 1            # G: adapted layers per block (LLM: transformer layers per block)
    blocks: tuple | None = None    # resolved blocks, lists of layer indices; None -> consecutive G
    alpha: float | None = None     # LoRA scale numerator, update is (alpha / r) B C A h; None -> r
    temperature: float = 1.0       # tau: routing softmax temperature
    prior_weight: float = 1.0      # lambda: weight of log pi added to the routing logits
    d_instruction: int = 0         # d_e: instruction-embedding width; 0 -> no instruction prior
    kl_weight: float = 0.0         # beta: weight of KL(w || pi) in the loss (SPEC §5)
    balance_weight: float = 0.0    # gamma: weight of the load-balance loss (SPEC §5)
    norm_eps: float = 1e-6         # epsilon of the RMS norm of the low-rank state (SPEC §3.2)
    atom_init_scale: float = 0.1   # sigma_M: atoms start at I + sigma_M G, G ~ N(0, 1/r)
    dtype: str = "float64"         # dtype of the trainable parameters in a checkpoint

    adapter_type = "queryable"     # class constant, written to the JSON

    def __post_init__(self):
        _check_int("rank", self.rank, 1)
        _check_int("n_atoms", self.n_atoms, 1)
        if self.top_k is None:
            object.__setattr__(self, "top_k", self.n_atoms)
        _check_int("top_k", self.top_k, 1)
        if self.top_k > self.n_atoms:
            _bad("top_k", f"1 <= top_k <= n_atoms ({self.n_atoms})", self.top_k)
        _check_int("d_key", self.d_key, 1)
        if self.summary not in SUMMARY_MODES:
            _bad("summary", f"one of {SUMMARY_MODES}", self.summary)
        if self.d_summary is None:
            object.__setattr__(self, "d_summary", 8 if self.summary == "attention" else 0)
        if self.summary == "attention":
            _check_int("d_summary", self.d_summary, 1)
        elif self.d_summary != 0:
            _bad("d_summary", "0 when summary is 'none'", self.d_summary)
        _check_int("block_size", self.block_size, 1)
        if self.alpha is None:
            object.__setattr__(self, "alpha", float(self.rank))
        _check_real("alpha", self.alpha)
        _check_real("temperature", self.temperature, positive=True)
        _check_real("prior_weight", self.prior_weight)
        _check_int("d_instruction", self.d_instruction, 0)
        _check_real("kl_weight", self.kl_weight, nonnegative=True)
        _check_real("balance_weight", self.balance_weight, nonnegative=True)
        if self.kl_weight > 0 and self.d_instruction == 0:
            _bad("kl_weight", "0 when there is no instruction prior (d_instruction = 0)",
                 self.kl_weight)
        _check_real("norm_eps", self.norm_eps, positive=True)
        _check_real("atom_init_scale", self.atom_init_scale, nonnegative=True)
        if self.dtype not in ("float64", "float32"):
            _bad("dtype", "'float64' or 'float32'", self.dtype)
        object.__setattr__(self, "layer_names", tuple(self.layer_names))
        object.__setattr__(self, "layer_shapes", tuple(tuple(s) for s in self.layer_shapes))
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(tuple(b) for b in self.blocks))
        if self.is_bound:
            self._check_layers()
            if self.blocks is None:
                object.__setattr__(self, "blocks", tuple(
                    tuple(b) for b in consecutive_blocks(self.n_layers, self.block_size)))
            self._check_blocks()
        elif self.blocks is not None:
            _bad("blocks", "no blocks before the config is bound to layers", self.blocks)

    def _check_blocks(self):
        # Blocks are contiguous runs of layers in forward order covering each layer once (SPEC §1).
        flat = [i for b in self.blocks for i in b]
        expected = list(range(self.n_layers))
        if any(len(b) == 0 for b in self.blocks) or flat != expected:
            missing = sorted(set(expected) - set(flat))
            repeated = sorted({i for i in flat if flat.count(i) > 1})
            _bad("blocks", f"non-empty contiguous blocks covering layers 0..{self.n_layers - 1} "
                 f"once each, in order (missing {missing}, repeated {repeated})",
                 [list(b) for b in self.blocks])

    # ----- derived quantities -----
    @property
    def scale(self):
        """alpha / r, the LoRA scale of SPEC §3.9."""
        return self.alpha / self.rank

    @property
    def n_blocks(self):
        return len(self.blocks)

    @property
    def block_of_layer(self):
        """Block index of each adapted layer."""
        return {i: b for b, layer_ids in enumerate(self.blocks) for i in layer_ids}

    def bind(self, layer_names, layer_shapes, blocks=None):
        """Return a copy bound to the given adapted layers (names in forward order)."""
        return dataclasses.replace(self, layer_names=tuple(layer_names),
                                   layer_shapes=tuple(tuple(s) for s in layer_shapes),
                                   blocks=None if blocks is None else tuple(map(tuple, blocks)))

    def to_dict(self):
        return _to_dict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@dataclass(frozen=True)
class LoraConfig(_Bound):
    """Standard LoRA baseline: y = W0 h + b0 + (alpha / r) B A h, one (A, B) per layer."""

    rank: int = 4
    alpha: float | None = None     # None -> rank (scale 1)
    dtype: str = "float64"

    adapter_type = "lora"

    def __post_init__(self):
        _check_int("rank", self.rank, 1)
        if self.alpha is None:
            object.__setattr__(self, "alpha", float(self.rank))
        _check_real("alpha", self.alpha)
        if self.dtype not in ("float64", "float32"):
            _bad("dtype", "'float64' or 'float32'", self.dtype)
        object.__setattr__(self, "layer_names", tuple(self.layer_names))
        object.__setattr__(self, "layer_shapes", tuple(tuple(s) for s in self.layer_shapes))
        if self.is_bound:
            self._check_layers()

    @property
    def scale(self):
        return self.alpha / self.rank

    def bind(self, layer_names, layer_shapes):
        return dataclasses.replace(self, layer_names=tuple(layer_names),
                                   layer_shapes=tuple(tuple(s) for s in layer_shapes))

    def to_dict(self):
        return _to_dict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _to_dict(config):
    out = {"format_version": FORMAT_VERSION, "adapter_type": config.adapter_type}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[f.name] = value
    return out


def config_from_dict(d):
    """Rebuild a config from its JSON dict, with a clear error for unknown or missing keys."""
    if not isinstance(d, dict):
        _bad("adapter_config", "a JSON object", type(d).__name__)
    d = dict(d)
    version = d.pop("format_version", None)
    if version != FORMAT_VERSION:
        _bad("format_version", FORMAT_VERSION, version)
    kind = d.pop("adapter_type", None)
    classes = {"queryable": QLoRAConfig, "lora": LoraConfig}
    if kind not in classes:
        _bad("adapter_type", f"one of {sorted(classes)}", kind)
    cls = classes[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        _bad("adapter_config", f"only the keys {sorted(known)}", f"unknown keys {unknown}")
    return cls(**d)
