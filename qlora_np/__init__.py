"""qlora_np: the reference NumPy + autograd implementation of Queryable LoRA (arXiv 2605.08423).

"QLoRA" here means *Queryable* LoRA, not the quantized LoRA of Dettmers et al. (2023).

Read in this order: config -> bank -> query -> summary -> routing -> prior -> adapter -> lora ->
mlp -> model -> losses -> optim -> train -> checkpoint. Every equation cites its step in SPEC.md.
"""

from .adapter import QueryablePass
from .checkpoint import CheckpointError, load_adapter, save_adapter
from .config import ConfigError, LoraConfig, QLoRAConfig, config_from_dict
from .losses import balance_loss, kl_loss, mse, total_loss
from .lora import LoraPass
from .mlp import init_mlp, mlp_forward, mlp_layer_names, mlp_layer_shapes
from .model import (InputError, adapted_forward, bind_to_mlp, forward, init_adapter, merge,
                    prepare_inputs)
from .optim import Adam
from .params import (count_params, expected_shapes, lora_param_count, matched_lora_rank,
                     queryable_param_count)
from .prior import embed_instruction, embed_instructions
from .train import fit, make_loss

__version__ = "0.1.0"

__all__ = [
    "QLoRAConfig", "LoraConfig", "ConfigError", "config_from_dict",
    "init_mlp", "mlp_forward", "mlp_layer_names", "mlp_layer_shapes",
    "bind_to_mlp", "init_adapter", "forward", "adapted_forward", "prepare_inputs", "merge",
    "InputError", "QueryablePass", "LoraPass",
    "mse", "kl_loss", "balance_loss", "total_loss", "Adam", "fit", "make_loss",
    "count_params", "expected_shapes", "lora_param_count", "queryable_param_count",
    "matched_lora_rank", "embed_instruction", "embed_instructions",
    "save_adapter", "load_adapter", "CheckpointError",
]
