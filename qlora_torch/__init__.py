"""Queryable LoRA in PyTorch (arXiv 2605.08423) — NOT quantized LoRA.

The same SPEC as `qlora_np`, as `nn.Module`s: the SPEC §8 regression MLP (`AdaptedMLP`) and
injection into any Hugging Face model (`inject_qlora`, peft-shaped). Config and checkpoint format
are the NumPy side's, so a checkpoint written by either side loads in the other.
"""

from .adapter import InputError, QLoRALinear, QueryableAdapter, RoutingPass  # noqa: F401
from .config import ConfigError, LoraConfig, QLoRAConfig, config_from_dict  # noqa: F401
from .mlp import AdaptedMLP  # noqa: F401
from .inject import QLoRAModel, canonical_name, find_targets, inject_qlora, state_dict_name  # noqa: F401,E501
