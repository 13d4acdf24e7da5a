"""Reverse-mode gradients of every trainable parameter, checked against finite differences."""

import numpy as np
import pytest
from autograd.test_util import check_grads

from builders import build
from qlora_np import adapted_forward, balance_loss, kl_loss
from qlora_np.routing import top_k_mask


def _margin(config, base, params, x, e):
    """Smallest gap between the k-th and (k+1)-th routing score of any row and block."""
    _, adapter = adapted_forward(config, base, params, x, e)
    gaps = []
    for r in adapter.routing:
        s = np.sort(np.log(r["probs"]), axis=1)[:, ::-1]
        gaps.append(np.min(s[:, config.top_k - 1] - s[:, config.top_k]))
    return min(gaps)


@pytest.mark.parametrize("kwargs", [
    dict(n_atoms=4),                                                   # dense, summary
    dict(n_atoms=4, summary="none", d_instruction=3),                  # dense, prior
    dict(n_atoms=5, top_k=2, d_instruction=3, block_size=2),           # top-k, everything on
    dict(n_atoms=5, top_k=1, block_size=1, temperature=0.5),           # top-1
])
def test_output_gradients_of_every_parameter(kwargs):
    config, base, params, x, e = build(**kwargs, n=5)
    if config.top_k < config.n_atoms:
        # Finite differences step 1e-6; a margin far above it keeps the chosen set fixed.
        assert _margin(config, base, params, x, e) > 1e-3
    cot = np.random.default_rng(1).standard_normal((5, 2))
    f = lambda p: np.sum(adapted_forward(config, base, p, x, e)[0] * cot)
    check_grads(f, modes=["rev"], order=1)(params)


def test_kl_and_balance_gradients():
    config, base, params, x, e = build(n_atoms=5, top_k=3, d_instruction=3, n=6)
    assert _margin(config, base, params, x, e) > 1e-3

    def f(p):
        _, adapter = adapted_forward(config, base, p, x, e)
        return kl_loss(adapter.routing) + 0.7 * balance_loss(adapter.routing)
    check_grads(f, modes=["rev"], order=1)(params)


def test_kl_matches_its_definition():
    config, base, params, x, e = build(n_atoms=5, top_k=2, d_instruction=3, n=6)
    _, adapter = adapted_forward(config, base, params, x, e)
    expected = []
    for r in adapter.routing:
        w, lp = r["weights"], r["log_prior"]
        rows = [sum(w[i, j] * (np.log(w[i, j]) - lp[i, j]) for j in range(5) if w[i, j] > 0)
                for i in range(len(x))]
        expected.append(np.mean(rows))
    np.testing.assert_allclose(kl_loss(adapter.routing), np.mean(expected), rtol=1e-12)


def test_balance_loss_is_one_for_uniform_routing_and_grows_when_collapsed():
    n, N = 8, 4
    uniform = {"mask": np.ones((n, N), bool), "probs": np.full((n, N), 1 / N)}
    np.testing.assert_allclose(balance_loss([uniform]), 1.0)
    mask = np.zeros((n, N), bool)
    mask[:, 0] = True
    probs = np.tile([0.97, 0.01, 0.01, 0.01], (n, 1))
    assert balance_loss([{"mask": mask, "probs": probs}]) > 3.5


def test_top_k_ties_go_to_the_lower_index():
    s = np.array([[1.0, 2.0, 2.0, 0.5, 2.0]])
    assert top_k_mask(s, 2).tolist() == [[False, True, True, False, False]]
    assert top_k_mask(s, 1).tolist() == [[False, True, False, False, False]]
