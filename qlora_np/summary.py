"""The running summary of earlier blocks: depth attention (SPEC §3.3).

Block 1 starts from a learned vector `m_0`. Block `b >= 2` attends, per row, over the normalised
low-rank states `z_hat_{b'}` of the earlier blocks `b' < b`:

    a_{b,b'} = softmax_{b'}( (z_hat_b P_q^T) . (z_hat_{b'} P_k^T) / sqrt(d_s) )
    m_b      = sum_{b'<b} a_{b,b'} (z_hat_{b'} P_v^T)

With `summary = "none"` there is no summary and no parameters.
"""

import autograd.numpy as np


def init_summary(config, rng):
    """SPEC §6: `P_* ~ U(+-1/sqrt(r))` (fan_in = r), `m_0 = 0`."""
    if config.summary == "none":
        return {}
    d_s, r = config.d_summary, config.rank
    bound = 1.0 / np.sqrt(r)
    return {
        "summary.init": np.zeros(d_s),
        "summary.query": rng.uniform(-bound, bound, (d_s, r)),
        "summary.key": rng.uniform(-bound, bound, (d_s, r)),
        "summary.value": rng.uniform(-bound, bound, (d_s, r)),
    }


def running_summary(config, params, z_hat, previous):
    """The summary `m_b` for a block with state `z_hat` (n, r), given earlier states `previous`.

    previous: list of the earlier blocks' `z_hat` (each (n, r)), in block order.
    Returns (n, d_s), or None when `summary = "none"`.
    """
    if config.summary == "none":
        return None
    if not previous:
        return np.zeros((z_hat.shape[0], 1)) + params["summary.init"]   # m_1 = m_0, (n, d_s)
    past = np.stack(previous, axis=1)                                  # (n, b-1, r)
    q = z_hat @ params["summary.query"].T                              # (n, d_s)
    k = past @ params["summary.key"].T                                 # (n, b-1, d_s)
    v = past @ params["summary.value"].T                               # (n, b-1, d_s)
    scores = np.sum(q[:, None, :] * k, axis=-1) / np.sqrt(config.d_summary)  # (n, b-1)
    scores = scores - np.max(scores, axis=1, keepdims=True)
    attn = np.exp(scores)
    attn = attn / np.sum(attn, axis=1, keepdims=True)                  # (n, b-1)
    return np.sum(attn[:, :, None] * v, axis=1)                        # (n, d_s)
