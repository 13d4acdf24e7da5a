"""Standard LoRA, the baseline: a static low-rank update per layer (Hu et al., 2021).

Mirror of `qlora_np/lora.py`:

    delta = (alpha / r) (h A^T) B^T

`LoRAFactors` holds one layer's `lora_A` (r, d_in) and `lora_B` (d_out, r), with the
initialisation of SPEC §6; the SPEC §8 MLP uses it for both adapter types (Queryable LoRA adds the
routed operator between A and B). For LLMs the LoRA baseline is peft's own `LoraConfig`, the
implementation users trust; `peft_lora_config` builds it at a matched rank (SPEC §7).
"""

import math

import torch
from torch import nn

from .config import lora_param_count, matched_lora_rank, queryable_param_count  # noqa: F401


class LoRAFactors(nn.Module):
    """One adapted layer's `lora_A` (r, d_in) and `lora_B` (d_out, r)."""

    def __init__(self, rank, d_in, d_out, dtype=torch.float64, device=None):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, d_in, dtype=dtype, device=device))
        self.lora_B = nn.Parameter(torch.zeros(d_out, rank, dtype=dtype, device=device))

    @torch.no_grad()
    def reset_parameters(self, generator=None):
        """SPEC §6: `A ~ U(+-1/sqrt(d_in))`, `B = 0`."""
        bound = 1.0 / math.sqrt(self.lora_A.shape[1])
        a = torch.rand(self.lora_A.shape, generator=generator, dtype=torch.float64) * 2 - 1
        self.lora_A.copy_(a * bound)
        self.lora_B.zero_()


def lora_delta(h, lora_A, lora_B, scale):
    """`(alpha / r) (h A^T) B^T`. h: (..., d_in) -> (..., d_out)."""
    return scale * ((h @ lora_A.T) @ lora_B.T)


def peft_lora_config(rank, target_modules, alpha=None, **kwargs):
    """peft's `LoraConfig` for the LLM baseline, with this project's scale convention:
    `alpha = rank` (scale 1) unless given, no dropout."""
    import peft

    return peft.LoraConfig(r=rank, lora_alpha=rank if alpha is None else alpha,
                           target_modules=target_modules, lora_dropout=0.0, bias="none",
                           **kwargs)
