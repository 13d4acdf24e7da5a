"""The query: RMS-normalised low-rank state plus running summary, projected (SPEC §3.1-3.5).

For block `b`, the lead layer's low-rank code `z_b = h A_lead^T` is RMS-normalised (no affine) so
that the routing does not depend on the scale of `A` or `h`; it is joined with the running summary
`m_b` and projected to a query `q_b`, whose scaled dot products with the atom keys are the routing
logits.
"""

import autograd.numpy as np


def rms_norm(z, eps):
    """SPEC §3.2: `z / sqrt(mean(z^2, axis=-1) + eps)`. z: (n, r) -> (n, r)."""
    return z / np.sqrt(np.mean(z * z, axis=-1, keepdims=True) + eps)


def init_router(config, rng):
    """SPEC §6: `W_q ~ U(+-1/sqrt(fan_in))` with fan_in = r + d_s, `b_q = 0`."""
    fan_in = config.rank + config.d_summary
    bound = 1.0 / np.sqrt(fan_in)
    return {
        "router.weight": rng.uniform(-bound, bound, (config.d_key, fan_in)),  # (d_k, r + d_s)
        "router.bias": np.zeros(config.d_key),                                 # (d_k,)
    }


def make_query(params, z_hat, summary):
    """SPEC §3.4: `q = [z_hat, m] W_q^T + b_q`. z_hat: (n, r), summary: (n, d_s) or None."""
    features = z_hat if summary is None else np.concatenate([z_hat, summary], axis=1)
    return features @ params["router.weight"].T + params["router.bias"]  # (n, d_k)


def attention_logits(query, keys):
    """SPEC §3.5: `l = q K^T / sqrt(d_k)`. query: (n, d_k), keys: (N, d_k) -> (n, N)."""
    return query @ keys.T / np.sqrt(keys.shape[1])
