"""The shared bank of low-rank update atoms and the routed operator (SPEC §3.8).

The bank holds `N` atoms `M_j` (each `r x r`, shared by every adapted layer) and one key `K_j` per
atom that queries attend over. A row's routed operator is the convex combination
`C = sum_j w_j M_j`; it is never built as an `(n, r, r)` tensor. Instead every atom is applied to
the row's low-rank code at once, as one matrix product, and the results are mixed by `w`.
"""

import autograd.numpy as np


def init_bank(config, rng):
    """SPEC §6: `M_j = I_r + sigma_M G_j` with `G_j ~ N(0, 1/r)`, keys `K ~ N(0, 1)`."""
    r, n = config.rank, config.n_atoms
    noise = rng.standard_normal((n, r, r)) / np.sqrt(r)
    return {
        "bank.atoms": np.eye(r)[None] + config.atom_init_scale * noise,  # (N, r, r)
        "bank.keys": rng.standard_normal((n, config.d_key)),             # (N, d_k)
    }


def apply_routed_operator(weights, atoms, u):
    """SPEC §3.8-3.9: `v_n = C_n u_n` with `C_n = sum_j w_nj M_j`, i.e. `(C u)_p = sum_q C_pq u_q`.

    weights: (n, N) rows on the simplex; atoms: (N, r, r); u: (n, r). Returns v: (n, r).
    """
    n_atoms, r, _ = atoms.shape
    # Every atom applied to every row in one product: (n, r) @ (r, N*r) -> (n, N, r).
    all_atoms = np.reshape(np.transpose(atoms, (2, 0, 1)), (r, n_atoms * r))
    per_atom = np.reshape(u @ all_atoms, (u.shape[0], n_atoms, r))    # [n, j, p] = (M_j u_n)_p
    return np.sum(weights[:, :, None] * per_atom, axis=1)             # (n, r)
