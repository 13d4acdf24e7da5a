"""Attention routing: instruction prior, temperature, top-k softmax (SPEC §3.6-3.7).

Mirror of `qlora_np/routing.py`:

    l~ = l + lambda log pi          (only with an instruction prior)
    s  = l~ / tau
    S  = the k largest entries of each row of s (ties: the lower atom index wins)
    w_j = exp(s_j - max_S s) / sum_{i in S} exp(s_i - max_S s)   for j in S, else 0

The choice of `S` is discrete and carries no gradient; the gradient flows through the weights of
the chosen atoms. `k = N` is dense routing.
"""

import torch


def top_k_mask(scores, k):
    """Boolean (..., N) mask of the `k` largest entries per row; ties go to the lower index.

    A stable ascending sort of `-scores` keeps equal entries in index order, exactly as the NumPy
    side's `argsort(-s, kind="stable")`.
    """
    n_atoms = scores.shape[-1]
    if k >= n_atoms:
        return torch.ones_like(scores, dtype=torch.bool)
    order = torch.sort(-scores.detach(), dim=-1, stable=True).indices[..., :k]   # (..., k)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    return mask.scatter_(-1, order, True)


def route(logits, k, temperature, log_prior=None, prior_weight=0.0):
    """SPEC §3.6-3.7 for one block. logits: (..., N); log_prior: broadcastable to it, or None.

    Returns a dict with `weights` (..., N) w_b, `log_weights` (log w on the chosen atoms, 0
    elsewhere), `mask` (bool, the chosen set S), `probs` (dense softmax(s), for the balance loss)
    and `log_prior` (or None), as the NumPy side does.
    """
    routed = logits if log_prior is None else logits + prior_weight * log_prior
    s = routed / temperature                                             # (..., N)
    mask = top_k_mask(s, k)
    shifted = s - s.max(dim=-1, keepdim=True).values                     # max_S s = max s
    exp = torch.exp(shifted)
    chosen = exp * mask
    total = chosen.sum(dim=-1, keepdim=True)
    weights = chosen / total                                             # (..., N)
    log_weights = (shifted - torch.log(total)) * mask
    probs = exp / exp.sum(dim=-1, keepdim=True)
    return {"weights": weights, "log_weights": log_weights, "mask": mask, "probs": probs,
            "log_prior": log_prior}


def routing_entropy(route_out):
    """Entropy `-sum_j w_j log w_j` over the chosen atoms, per row: (...,)."""
    return -(route_out["weights"] * route_out["log_weights"]).sum(dim=-1)
