"""The PyTorch core against the NumPy reference (SPEC §9.7) and the SPEC §9 invariants."""

import numpy as onp
import pytest
import torch
from autograd import grad
import autograd.numpy as anp

from qlora_np import model as np_model
from qlora_np.mlp import init_mlp
from qlora_torch import AdaptedMLP, InputError, LoraConfig, QLoRAConfig
from qlora_torch.losses import balance_loss, kl_loss
from qlora_torch.routing import route, top_k_mask
from qlora_np import losses as np_losses

SIZES = [3, 7, 5, 2]

CONFIGS = {
    "dense_attention": dict(rank=3, n_atoms=4, d_key=5, block_size=1),
    "topk_attention_prior": dict(rank=2, n_atoms=5, top_k=2, d_key=4, block_size=2,
                                 d_instruction=6, prior_weight=0.7, temperature=0.8),
    "topk_none": dict(rank=4, n_atoms=3, top_k=1, summary="none", block_size=1, alpha=2.5),
    "one_atom": dict(rank=2, n_atoms=1, block_size=3),
}


def _numpy_side(kwargs, seed=1):
    config = np_model.bind_to_mlp(QLoRAConfig(**kwargs), SIZES)
    rng = onp.random.default_rng(seed)
    base = init_mlp(SIZES, rng)
    params = np_model.init_adapter(config, rng)
    # B = 0 at init would hide most of the math: give every B a random value.
    for name in params:
        if name.endswith("lora_B"):
            params[name] = rng.standard_normal(params[name].shape)
    if "router.weight" in params:
        params["router.weight"] = params["router.weight"] * 3.0   # sharper, less tied routing
    return config, base, params, rng


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_float64_matches_numpy(name):
    config, base, params, rng = _numpy_side(CONFIGS[name])
    n = 6
    x = rng.standard_normal((n, SIZES[0]))
    cot = rng.standard_normal((n, SIZES[-1]))
    e = None
    if config.d_instruction:
        e = np_model.embed_instructions([f"task {i % 3}" for i in range(n)], config.d_instruction)

    y_np, routing_np = np_model.forward(config, base, params, x, e, return_routing=True)
    g_np = grad(lambda p: anp.sum(np_model.adapted_forward(config, base, p, x, e)[0] * cot))(params)

    model = AdaptedMLP.from_params(config, SIZES, {**base, **params})
    xt = torch.tensor(x)
    et = None if e is None else torch.tensor(e)
    y, routing = model(xt, et, return_routing=True)
    (y * torch.tensor(cot)).sum().backward()

    onp.testing.assert_allclose(y.detach().numpy(), y_np, rtol=1e-10, atol=1e-12)
    assert len(routing) == len(routing_np) == config.n_blocks
    for r_t, r_np in zip(routing, routing_np):
        onp.testing.assert_allclose(r_t["weights"].numpy(), r_np["weights"], rtol=1e-10,
                                    atol=1e-12)
    grads = model.canonical_grads()
    assert set(grads) == set(g_np)
    for k in g_np:
        onp.testing.assert_allclose(grads[k].numpy(), g_np[k], rtol=1e-8, atol=1e-10, err_msg=k)


def test_float32_close_to_float64():
    config, base, params, rng = _numpy_side(CONFIGS["topk_attention_prior"])
    x = torch.tensor(rng.standard_normal((5, SIZES[0])))
    e = [f"instr {i}" for i in range(5)]
    m64 = AdaptedMLP.from_params(config, SIZES, {**base, **params})
    m32 = AdaptedMLP.from_params(config, SIZES, {**base, **params}, dtype=torch.float32)
    y64, y32 = m64(x, e), m32(x.float(), e)
    onp.testing.assert_allclose(y32.detach().numpy(), y64.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_zero_B_and_unadapted_give_base_output():
    model = AdaptedMLP(QLoRAConfig(rank=2, n_atoms=3, top_k=2), SIZES, seed=3)  # B = 0 at init
    x = torch.randn(4, SIZES[0], dtype=torch.float64)
    base = model(x, adapted=False)
    assert torch.equal(model(x), base)
    with torch.no_grad():
        model.layers[0].lora_B.normal_()
    assert not torch.allclose(model(x), base)
    assert torch.equal(model(x, adapted=False), base)


def test_routing_rows_on_simplex_with_at_most_k_nonzeros():
    model = AdaptedMLP(QLoRAConfig(rank=3, n_atoms=6, top_k=2, block_size=1), SIZES, seed=4)
    _, routing = model(torch.randn(50, SIZES[0], dtype=torch.float64), return_routing=True)
    for r in routing:
        w = r["weights"]
        assert torch.all(w >= 0)
        assert torch.allclose(w.sum(-1), torch.ones(50, dtype=w.dtype))
        assert int((w > 0).sum(-1).max()) <= 2


def test_top_k_ties_go_to_lower_index():
    s = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.0]])
    assert top_k_mask(s, 2).tolist() == [[False, True, True, False, False]]
    w = route(torch.zeros(1, 4), k=1, temperature=1.0)["weights"]
    assert w.tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_one_atom_equals_lora_with_B_times_M():
    config, base, params, rng = _numpy_side(CONFIGS["one_atom"])
    q = AdaptedMLP.from_params(config, SIZES, {**base, **params})
    lora_params = {k: v for k, v in params.items() if k.startswith("layers.")}
    for k in lora_params:
        if k.endswith("lora_B"):
            lora_params[k] = params[k] @ params["bank.atoms"][0]
    lora = AdaptedMLP.from_params(LoraConfig(rank=config.rank, alpha=config.alpha), SIZES,
                                  {**base, **lora_params})
    x = torch.tensor(rng.standard_normal((5, SIZES[0])))
    torch.testing.assert_close(q(x), lora(x), rtol=1e-12, atol=1e-12)


def test_prior_ignored_when_weight_zero():
    config = QLoRAConfig(rank=2, n_atoms=4, top_k=2, d_instruction=8, prior_weight=0.0)
    model = AdaptedMLP(config, SIZES, seed=5)
    with torch.no_grad():
        model.prior.weight.normal_()
    x = torch.randn(3, SIZES[0], dtype=torch.float64)
    _, r1 = model(x, ["alpha", "beta", "gamma"], return_routing=True)
    _, r2 = model(x, ["delta", "eps", "zeta"], return_routing=True)
    for a, b in zip(r1, r2):
        assert torch.equal(a["weights"], b["weights"])


def test_losses_match_numpy():
    config, base, params, rng = _numpy_side(dict(CONFIGS["topk_attention_prior"], kl_weight=0.5,
                                                 balance_weight=0.1))
    x = rng.standard_normal((7, SIZES[0]))
    e = np_model.embed_instructions([f"t{i % 2}" for i in range(7)], config.d_instruction)
    _, p = np_model.adapted_forward(config, base, params, x, e)
    model = AdaptedMLP.from_params(config, SIZES, {**base, **params})
    model(torch.tensor(x), torch.tensor(e))
    routing = model.routing()
    onp.testing.assert_allclose(kl_loss(routing).item(), np_losses.kl_loss(p.routing), rtol=1e-10)
    onp.testing.assert_allclose(balance_loss(routing).item(), np_losses.balance_loss(p.routing),
                                rtol=1e-10)


def test_bad_inputs_name_the_argument():
    model = AdaptedMLP(QLoRAConfig(rank=2, n_atoms=3, d_instruction=4), SIZES)
    x = torch.randn(3, SIZES[0], dtype=torch.float64)
    with pytest.raises(InputError, match="instruction: expected an embedding of width 4"):
        model(x)
    with pytest.raises(InputError, match="instruction: expected 3 rows"):
        model(x, torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(InputError, match=r"x: expected a tensor of shape \(n, 3\)"):
        model(torch.randn(3, 4, dtype=torch.float64), skip_prior=True)
    plain = AdaptedMLP(QLoRAConfig(rank=2, n_atoms=3), SIZES)
    with pytest.raises(InputError, match="d_instruction=0"):
        plain(x, torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(InputError, match="tensor 'bank.atoms': expected shape"):
        plain.load_params({"bank.atoms": onp.zeros((2, 2, 2))}, strict=False)


def test_empty_batch_and_non_finite_inputs():
    model = AdaptedMLP(QLoRAConfig(rank=2, n_atoms=3, top_k=2, d_instruction=4), SIZES)
    y = model(torch.zeros(0, SIZES[0], dtype=torch.float64), torch.zeros(0, 4,
                                                                         dtype=torch.float64))
    assert y.shape == (0, SIZES[-1])
    x = torch.randn(2, SIZES[0], dtype=torch.float64)
    e = torch.randn(2, 4, dtype=torch.float64)
    with pytest.raises(InputError, match="x: expected finite values, got 2 NaN/inf"):
        model(torch.where(torch.arange(SIZES[0]) == 0, torch.nan, x), e)
    with pytest.raises(InputError, match="instruction: expected finite values"):
        model(x, torch.full_like(e, torch.inf))


def test_from_params_refuses_a_missing_tensor():
    config = np_model.bind_to_mlp(QLoRAConfig(rank=2, n_atoms=3), SIZES)
    base = init_mlp(SIZES, onp.random.default_rng(0))
    params = np_model.init_adapter(config, 1)
    partial = {k: v for k, v in params.items() if k != "summary.init"}
    with pytest.raises(InputError, match=r"missing \['summary.init'\]"):
        AdaptedMLP.from_params(config, SIZES, {**base, **partial})
    no_base = {k: v for k, v in base.items() if k != "base.1.bias"}
    with pytest.raises(InputError, match=r"missing base tensor\(s\) \['base.1.bias'\]"):
        AdaptedMLP.from_params(config, SIZES, {**no_base, **params})
