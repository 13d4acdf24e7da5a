"""The running summary of earlier blocks: depth attention (SPEC §3.3).

Mirror of `qlora_np/summary.py`. Block 1 starts from a learned vector `m_0`; block `b >= 2`
attends, per row, over the normalised low-rank states `z_hat_{b'}` of the earlier blocks:

    a_{b,b'} = softmax_{b'}( (z_hat_b P_q^T) . (z_hat_{b'} P_k^T) / sqrt(d_s) )
    m_b      = sum_{b'<b} a_{b,b'} (z_hat_{b'} P_v^T)

state_dict names: `init`, `query`, `key`, `value`; registered as `summary` in a model, giving the
canonical `summary.init`, `summary.query`, ... With `summary = "none"` the module does not exist.
"""

import math

import torch
from torch import nn

from .query import _uniform


class DepthSummary(nn.Module):
    """`init` (d_s,), `query`/`key`/`value` (d_s, r) each."""

    def __init__(self, rank, d_summary, dtype=torch.float64, device=None):
        super().__init__()
        self.init = nn.Parameter(torch.empty(d_summary, dtype=dtype, device=device))
        self.query = nn.Parameter(torch.empty(d_summary, rank, dtype=dtype, device=device))
        self.key = nn.Parameter(torch.empty(d_summary, rank, dtype=dtype, device=device))
        self.value = nn.Parameter(torch.empty(d_summary, rank, dtype=dtype, device=device))

    @torch.no_grad()
    def reset_parameters(self, generator=None):
        """SPEC §6: `P_* ~ U(+-1/sqrt(r))` (fan_in = r), `m_0 = 0`. Drawn in the order q, k, v."""
        bound = 1.0 / math.sqrt(self.query.shape[1])
        self.init.zero_()
        for p in (self.query, self.key, self.value):
            p.copy_(_uniform(p.shape, bound, generator))

    def forward(self, z_hat, previous):
        """`m_b` (..., d_s) for a block with state `z_hat` (..., r), given the earlier blocks'
        states `previous` (a list of (..., r), in block order)."""
        if not previous:
            return self.init.expand(*z_hat.shape[:-1], -1)             # m_1 = m_0, (..., d_s)
        past = torch.stack(previous, dim=-2)                           # (..., b-1, r)
        q = z_hat @ self.query.T                                       # (..., d_s)
        k = past @ self.key.T                                          # (..., b-1, d_s)
        v = past @ self.value.T                                        # (..., b-1, d_s)
        scores = (q.unsqueeze(-2) * k).sum(-1) / math.sqrt(self.init.shape[0])  # (..., b-1)
        attn = torch.softmax(scores, dim=-1)                           # (..., b-1)
        return (attn.unsqueeze(-1) * v).sum(dim=-2)                    # (..., d_s)
