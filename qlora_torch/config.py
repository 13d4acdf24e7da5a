"""The adapter configuration, shared with the NumPy side (SPEC §2, §10).

There is one config format in the project: `qlora_np.config`. The PyTorch side re-exports it so
that a checkpoint written by either side loads in the other. What only an LLM needs (which target
modules were adapted, which base model) goes into the config's `extra` dict, which the math never
reads and the checkpoint round-trips unchanged (see `qlora_torch.inject`).
"""

from qlora_np.config import (  # noqa: F401  (re-exported)
    FORMAT_VERSION,
    ConfigError,
    LoraConfig,
    QLoRAConfig,
    config_from_dict,
    consecutive_blocks,
)
from qlora_np.params import (  # noqa: F401  (re-exported)
    expected_shapes,
    lora_names,
    lora_param_count,
    matched_lora_rank,
    queryable_param_count,
)

def torch_dtype(name):
    """The torch dtype of a config's `dtype` string ("float64" | "float32")."""
    import torch

    return {"float64": torch.float64, "float32": torch.float32}[name]
