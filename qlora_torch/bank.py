"""The shared bank of low-rank update atoms and the routed operator (SPEC §3.8).

Mirror of `qlora_np/bank.py`. The bank holds `N` atoms `M_j` (each `r x r`, shared by every adapted
layer of the model) and one key `K_j` per atom. A row's routed operator `C = sum_j w_j M_j` is
never built as an `(n, r, r)` tensor: every atom is applied to the row's low-rank code in one
matrix product and the results are mixed by `w`.

state_dict names: `atoms`, `keys`; inside a model the bank is registered as `bank`, so the names
are the canonical `bank.atoms`, `bank.keys`.
"""

import math

import torch
from torch import nn


class AtomBank(nn.Module):
    """`atoms` (N, r, r) and `keys` (N, d_k)."""

    def __init__(self, n_atoms, rank, d_key, dtype=torch.float64, device=None):
        super().__init__()
        self.atoms = nn.Parameter(torch.empty(n_atoms, rank, rank, dtype=dtype, device=device))
        self.keys = nn.Parameter(torch.empty(n_atoms, d_key, dtype=dtype, device=device))

    @torch.no_grad()
    def reset_parameters(self, atom_init_scale, generator=None):
        """SPEC §6: `M_j = I_r + sigma_M G_j` with `G_j ~ N(0, 1/r)`, keys `K ~ N(0, 1)`."""
        n, r, _ = self.atoms.shape
        noise = torch.randn(n, r, r, generator=generator, dtype=torch.float64) / math.sqrt(r)
        eye = torch.eye(r, dtype=torch.float64)[None]
        self.atoms.copy_(eye + atom_init_scale * noise)
        self.keys.copy_(torch.randn(self.keys.shape, generator=generator, dtype=torch.float64))


def apply_routed_operator(weights, atoms, u):
    """SPEC §3.8-3.9: `v = C u` per row with `C = sum_j w_j M_j`.

    weights: (..., N) rows on the simplex; atoms: (N, r, r); u: (..., r). Returns v: (..., r).
    """
    n_atoms, r, _ = atoms.shape
    # Every atom applied to every row in one product: (..., r) @ (r, N*r) -> (..., N, r).
    all_atoms = atoms.permute(2, 0, 1).reshape(r, n_atoms * r)
    per_atom = (u @ all_atoms).unflatten(-1, (n_atoms, r))          # [..., j, p] = (M_j u)_p
    return (weights.unsqueeze(-1) * per_atom).sum(dim=-2)           # (..., r)
