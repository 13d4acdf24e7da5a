"""The query: RMS-normalised low-rank state plus running summary, projected (SPEC §3.1-3.5).

Mirror of `qlora_np/query.py`. state_dict names of `QueryProjection`: `weight` (d_k, r + d_s) and
`bias` (d_k,); inside a model it is registered as `router`, giving the canonical `router.weight`,
`router.bias`.
"""

import math

import torch
from torch import nn


def rms_norm(z, eps):
    """SPEC §3.2: `z / sqrt(mean(z^2, axis=-1) + eps)`. z: (..., r) -> (..., r)."""
    return z / torch.sqrt(torch.mean(z * z, dim=-1, keepdim=True) + eps)


class QueryProjection(nn.Module):
    """SPEC §3.4: `q = [z_hat, m] W_q^T + b_q`."""

    def __init__(self, rank, d_summary, d_key, dtype=torch.float64, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_key, rank + d_summary, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.empty(d_key, dtype=dtype, device=device))

    @torch.no_grad()
    def reset_parameters(self, generator=None):
        """SPEC §6: `W_q ~ U(+-1/sqrt(fan_in))` with fan_in = r + d_s, `b_q = 0`."""
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        self.weight.copy_(_uniform(self.weight.shape, bound, generator))
        self.bias.zero_()

    def forward(self, z_hat, summary=None):
        """z_hat: (..., r), summary: (..., d_s) or None -> q: (..., d_k)."""
        features = z_hat if summary is None else torch.cat([z_hat, summary], dim=-1)
        return features @ self.weight.T + self.bias


def attention_logits(query, keys):
    """SPEC §3.5: `l = q K^T / sqrt(d_k)`. query: (..., d_k), keys: (N, d_k) -> (..., N)."""
    return query @ keys.T / math.sqrt(keys.shape[1])


def _uniform(shape, bound, generator):
    """`U(-bound, bound)` in float64 (cast by the caller's copy_)."""
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
