"""Losses (SPEC §5): `L = L_task + beta L_kl + gamma L_balance`.

`routing` is the list of per-block dicts that `routing.route` returns (a forward pass's
`adapter.routing`); the routing terms are zero for LoRA, whose list is empty.
"""

import autograd.numpy as np
import numpy as onp


def mse(pred, target):
    """Mean squared error over rows and outputs."""
    return np.mean((pred - target) ** 2)


def kl_loss(routing):
    """SPEC §5: mean over blocks and rows of `KL(w_b || pi) = sum_{j in S} w_j (log w_j - log pi_j)`."""
    per_block = [np.mean(np.sum(r["weights"] * (r["log_weights"] - r["log_prior"] * r["mask"]),
                                axis=1))
                 for r in routing]
    return sum(per_block) / len(per_block)


def balance_loss(routing):
    """SPEC §5: `N sum_j f_j P_j` over all blocks and rows (Switch Transformer).

    f_j: share of the top-k slots that chose atom j (a count, no gradient);
    P_j: mean dense routing probability softmax(s)_j.
    """
    masks = onp.concatenate([r["mask"] for r in routing], axis=0)          # (n * n_B, N)
    n_atoms = masks.shape[1]
    f = masks.sum(axis=0) / masks.sum()                                     # (N,)
    probs = np.concatenate([r["probs"] for r in routing], axis=0)          # (n * n_B, N)
    return n_atoms * np.sum(f * np.mean(probs, axis=0))


def total_loss(config, pred, target, routing):
    """`L_task + beta L_kl + gamma L_balance`; the routing terms only where they are switched on."""
    loss = mse(pred, target)
    if routing and getattr(config, "kl_weight", 0) > 0 and routing[0]["log_prior"] is not None:
        loss = loss + config.kl_weight * kl_loss(routing)
    if routing and getattr(config, "balance_weight", 0) > 0:
        loss = loss + config.balance_weight * balance_loss(routing)
    return loss

