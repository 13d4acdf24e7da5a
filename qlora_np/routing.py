"""Attention routing: instruction prior, temperature, top-k softmax (SPEC §3.6-3.7).

    l~ = l + lambda log pi          (only with an instruction prior)
    s  = l~ / tau
    S  = the k largest entries of each row of s (ties: the lower atom index wins)
    w_j = exp(s_j - max_S s) / sum_{i in S} exp(s_i - max_S s)   for j in S, else 0

The choice of `S` is a discrete, non-differentiable step: it is made on the values alone, and the
gradient flows through the weights of the chosen atoms. `k = N` is dense routing.
"""

import autograd.numpy as np
import numpy as onp
from autograd.tracer import getval


def top_k_mask(scores, k):
    """Boolean (n, N) mask of the `k` largest entries per row; ties go to the lower index.

    A stable sort of `-scores` keeps equal entries in index order, so among ties the lower atom
    index comes first. Computed on plain values: the selection carries no gradient.
    """
    s = onp.asarray(getval(scores))
    n, n_atoms = s.shape
    if k >= n_atoms:
        return onp.ones((n, n_atoms), dtype=bool)
    order = onp.argsort(-s, axis=1, kind="stable")[:, :k]         # (n, k) chosen atom indices
    mask = onp.zeros((n, n_atoms), dtype=bool)
    onp.put_along_axis(mask, order, True, axis=1)
    return mask


def route(logits, k, temperature, log_prior=None, prior_weight=0.0):
    """SPEC §3.6-3.7: routing weights and what the losses and logs need, for one block.

    logits: (n, N) attention logits `l_b`; log_prior: (n, N) `log pi` or None.
    Returns a dict with
      weights      (n, N)  w_b: top-k softmax, each row on the simplex with <= k non-zeros
      log_weights  (n, N)  log w_b on the chosen atoms (exact, no log of 0), 0 elsewhere
      mask         (n, N)  bool, the chosen set S
      probs        (n, N)  dense softmax(s), for the load-balance loss (SPEC §5)
      log_prior    (n, N)  log pi or None
    """
    routed = logits if log_prior is None else logits + prior_weight * log_prior
    s = routed / temperature                                       # (n, N)
    mask = top_k_mask(s, k)
    shifted = s - np.max(s, axis=1, keepdims=True)                 # max_S s = max s: top-1 is in S
    exp = np.exp(shifted)
    chosen = exp * mask
    total = np.sum(chosen, axis=1, keepdims=True)
    weights = chosen / total                                       # (n, N)
    log_weights = (shifted - np.log(total)) * mask                 # (n, N)
    probs = exp / np.sum(exp, axis=1, keepdims=True)               # (n, N) dense softmax(s)
    return {"weights": weights, "log_weights": log_weights, "mask": mask, "probs": probs,
            "log_prior": log_prior}


def routing_entropy(route_out):
    """Entropy of each row's routing weights, `-sum_j w_j log w_j` over the chosen atoms: (n,)."""
    return -np.sum(route_out["weights"] * route_out["log_weights"], axis=1)


def chosen_atoms(mask):
    """(n, k) indices of the chosen atoms of each row, in ascending index order."""
    m = onp.asarray(mask)
    k = int(m[0].sum()) if m.shape[0] else 0
    return onp.nonzero(m)[1].reshape(m.shape[0], k)
