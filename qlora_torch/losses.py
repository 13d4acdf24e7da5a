"""Losses (SPEC §5): `L = L_task + beta L_kl + gamma L_balance`. Mirror of `qlora_np/losses.py`.

`routing` is the list of per-block dicts that `routing.route` returns (a pass's
`routing_list()`); the routing terms are zero for LoRA, whose list is empty.
"""

import torch


def kl_loss(routing):
    """SPEC §5: mean over blocks and rows of `KL(w_b || pi)`.

    `KL(w || pi) = sum_{j in S} w_j (log w_j - log pi_j)`, over the chosen atoms only."""
    per_block = [(r["weights"] * (r["log_weights"] - r["log_prior"] * r["mask"])).sum(-1).mean()
                 for r in routing]
    return sum(per_block) / len(per_block)


def balance_loss(routing):
    """SPEC §5: `N sum_j f_j P_j` over all blocks and rows (Switch Transformer).

    f_j: share of the top-k slots that chose atom j (no gradient); P_j: mean dense probability.
    """
    n_atoms = routing[0]["mask"].shape[-1]
    masks = torch.cat([r["mask"].reshape(-1, n_atoms) for r in routing]).to(routing[0]["probs"])
    f = masks.sum(0) / masks.sum()                                       # (N,)
    probs = torch.cat([r["probs"].reshape(-1, n_atoms) for r in routing])
    return n_atoms * (f * probs.mean(0)).sum()


def routing_loss(config, routing):
    """`beta L_kl + gamma L_balance`, only the terms that are switched on (0.0 otherwise)."""
    loss = 0.0
    if routing and getattr(config, "kl_weight", 0) > 0 and routing[0]["log_prior"] is not None:
        # log_prior broadcast to the rows of each block: expand before the per-row sum.
        routing = [dict(r, log_prior=r["log_prior"].expand_as(r["weights"])) for r in routing]
        loss = loss + config.kl_weight * kl_loss(routing)
    if routing and getattr(config, "balance_weight", 0) > 0:
        loss = loss + config.balance_weight * balance_loss(routing)
    return loss
