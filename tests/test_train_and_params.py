import numpy as np
import pytest

from builders import build
from qlora_np import (LoraConfig, QLoRAConfig, bind_to_mlp, count_params, expected_shapes, fit,
                      forward, init_adapter, lora_param_count, matched_lora_rank,
                      queryable_param_count)
from qlora_np.optim import Adam


@pytest.mark.parametrize("kwargs", [dict(), dict(summary="none", d_instruction=5, top_k=2),
                                    dict(n_atoms=1, block_size=3)])
def test_param_count_formula_matches_the_parameters(kwargs):
    config = bind_to_mlp(QLoRAConfig(**kwargs), [3, 6, 6, 2])
    params = init_adapter(config, 0)
    assert count_params(params) == queryable_param_count(config, config.layer_shapes)
    assert list(params) == list(expected_shapes(config))
    assert all(params[k].shape == s for k, s in expected_shapes(config).items())


def test_matched_lora_rank_is_the_smallest_with_at_least_as_many():
    config = bind_to_mlp(QLoRAConfig(rank=2, n_atoms=8), [2, 48, 48, 48, 1])
    target = queryable_param_count(config, config.layer_shapes)
    r = matched_lora_rank(config, config.layer_shapes)
    assert lora_param_count(r, config.layer_shapes) >= target
    assert lora_param_count(r - 1, config.layer_shapes) < target
    lora = bind_to_mlp(LoraConfig(rank=r), [2, 48, 48, 48, 1])
    assert count_params(init_adapter(lora, 0)) == lora_param_count(r, config.layer_shapes)


def _task(n=64, seed=0):
    config, base, params, x, e = build(n=n, seed=seed, randomize_b=False, n_atoms=4, top_k=2,
                                       d_instruction=3, kl_weight=0.01, balance_weight=0.01)
    y = np.sin(2 * x[:, :2]) + 0.3 * x[:, 2:3]
    return config, base, params, x, e, y


def test_fit_reduces_loss_and_same_seed_gives_same_numbers():
    config, base, params, x, e, y = _task()
    p1, h1 = fit(config, base, params, x, y, steps=60, lr=1e-2, batch_size=32, rng=5, instruction=e)
    p2, h2 = fit(config, base, params, x, y, steps=60, lr=1e-2, batch_size=32, rng=5, instruction=e)
    assert h1["train_loss"] == h2["train_loss"]
    assert all(np.array_equal(p1[k], p2[k]) for k in p1)
    before = np.mean((forward(config, base, params, x, e) - y) ** 2)
    after = np.mean((forward(config, base, p1, x, e) - y) ** 2)
    assert after < 0.7 * before
    _, h3 = fit(config, base, params, x, y, steps=60, lr=1e-2, batch_size=32, rng=6, instruction=e)
    assert h3["train_loss"] != h1["train_loss"]


def test_fit_callback_and_lora():
    lora = bind_to_mlp(LoraConfig(rank=2), [3, 6, 6, 2])
    _, base, _, x, _, y = _task()
    seen = []
    params, hist = fit(lora, base, init_adapter(lora, 1), x, y, steps=10, eval_every=4,
                       callback=lambda step, p, loss: seen.append(step) or loss)
    assert seen == [4, 8, 10] and [s for s, _ in hist["evals"]] == seen
    assert len(hist["train_loss"]) == 10


def test_adam_matches_a_hand_computed_step_and_decays():
    opt = Adam(lr=0.1)
    new = opt.step({"w": np.array([1.0, -2.0])}, {"w": np.array([0.5, -4.0])})
    # First step: m_hat = g, v_hat = g^2, update = lr * g / (|g| + eps) = lr * sign(g).
    np.testing.assert_allclose(new["w"], [0.9, -1.9], rtol=1e-7)
    opt = Adam(lr=0.1, weight_decay=0.5, decay_keys=["w"])
    new = opt.step({"w": np.array([2.0]), "b": np.array([2.0])},
                   {"w": np.array([0.0]), "b": np.array([0.0])})
    assert new["w"][0] == pytest.approx(2.0 - 0.1 * 0.5 * 2.0) and new["b"][0] == 2.0
    with pytest.raises(ValueError, match="lr"):
        Adam(lr=-1)
