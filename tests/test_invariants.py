"""SPEC §9, invariants 1-6, each on its own, with non-zero B so none is vacuous."""

import numpy as np
import pytest

from builders import build
from qlora_np import LoraConfig, adapted_forward, bind_to_mlp, forward, merge, mlp_forward
from qlora_np.bank import apply_routed_operator


@pytest.mark.parametrize("kwargs", [dict(top_k=2), dict(), dict(summary="none", d_instruction=3)])
def test_1_zero_B_or_disabled_gives_the_base_output_exactly(kwargs):
    config, base, params, x, e = build(**kwargs)
    y_base = mlp_forward(base, x)
    y = forward(config, base, params, x, e)
    assert not np.allclose(y, y_base)          # the adapter does something with B != 0 ...
    zero_b = {k: (np.zeros_like(v) if k.endswith("lora_B") else v) for k, v in params.items()}
    assert np.array_equal(forward(config, base, zero_b, x, e), y_base)   # ... and nothing at B = 0
    assert np.array_equal(mlp_forward(base, x, adapter=None), y_base)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_2_routing_rows_on_simplex_with_at_most_k_nonzeros(k):
    config, base, params, x, e = build(n_atoms=5, top_k=k, block_size=1, n=11)
    _, routing = forward(config, base, params, x, e, return_routing=True)
    assert len(routing) == 3
    for r in routing:
        w = r["weights"]
        assert np.all(w >= 0)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-12)
        assert np.all((w > 0).sum(axis=1) <= k)
        assert np.array_equal(r["mask"].sum(axis=1), np.full(len(x), k))
        assert r["chosen"].shape == (len(x), k)
        assert np.all(np.take_along_axis(w, r["chosen"], axis=1) > 0)
        safe = np.where(w > 0, w, 1.0)
        np.testing.assert_allclose(r["entropy"], -np.sum(w * np.log(safe), axis=1), atol=1e-14)


def test_3_routed_operator_is_in_the_hull_and_update_rank_at_most_r():
    config, base, params, x, e = build(rank=3, n_atoms=6, top_k=3, n=9)
    _, adapter = adapted_forward(config, base, params, x, e)
    atoms = params["bank.atoms"]
    for r in adapter.routing:
        w = r["weights"]
        C = np.einsum("nj,jpq->npq", w, atoms)         # test-only: materialise C to measure it
        for order in ("fro", 2, 1, np.inf):
            bound = max(np.linalg.norm(m, order) for m in atoms)
            assert all(np.linalg.norm(c, order) <= bound + 1e-12 for c in C)
        # The cheap contraction used by the forward equals C u.
        u = np.random.default_rng(0).standard_normal((len(x), config.rank))
        np.testing.assert_allclose(apply_routed_operator(w, atoms, u),
                                   np.einsum("npq,nq->np", C, u), rtol=1e-13, atol=1e-14)
        for c in C:   # Delta W = (alpha / r) B C A for each layer, per row
            for name, (d_out, d_in) in zip(config.layer_names, config.layer_shapes):
                dw = config.scale * params[f"layers.{name}.lora_B"] @ c @ params[f"layers.{name}.lora_A"]
                assert np.linalg.matrix_rank(dw) <= config.rank


def test_4_one_atom_is_lora_with_B_times_M1():
    config, base, params, x, e = build(n_atoms=1, rank=3)
    y = forward(config, base, params, x, e)
    lora = bind_to_mlp(LoraConfig(rank=3, alpha=config.alpha), [3, 6, 6, 2])
    m1 = params["bank.atoms"][0]
    lora_params = {}
    for name in config.layer_names:
        lora_params[f"layers.{name}.lora_A"] = params[f"layers.{name}.lora_A"]
        lora_params[f"layers.{name}.lora_B"] = params[f"layers.{name}.lora_B"] @ m1
    np.testing.assert_allclose(forward(lora, base, lora_params, x), y, rtol=1e-12, atol=1e-13)
    assert not np.allclose(m1, np.eye(3))   # M_1 != I, so the test tells B from B M_1


def test_5_no_prior_weight_or_no_instruction_makes_routing_independent_of_e():
    config, base, params, x, e = build(d_instruction=6, prior_weight=1.0, n_atoms=5, top_k=2)
    other = np.random.default_rng(99).standard_normal(e.shape)
    w = lambda c, inst, **kw: [r["weights"] for r in forward(c, base, params, x, inst,
                                                              return_routing=True, **kw)[1]]
    assert any(not np.allclose(a, b) for a, b in zip(w(config, e), w(config, other)))
    import dataclasses
    silent = dataclasses.replace(config, prior_weight=0.0)
    for a, b in zip(w(silent, e), w(silent, other)):
        assert np.array_equal(a, b)
    for a, b in zip(w(silent, e), w(config, None, skip_prior=True)):
        assert np.array_equal(a, b)


def test_6_instruction_only_routing_merges_and_input_routing_refuses():
    config, base, params, x, _ = build(d_instruction=8, summary="none", n_atoms=5, top_k=2,
                                       block_size=2)
    text = "double the frequency"
    with pytest.raises(ValueError, match="routing depends on the input"):
        merge(config, base, params, text)
    static = dict(params, **{"router.weight": np.zeros_like(params["router.weight"])})
    merged = merge(config, base, static, text)
    y = forward(config, base, static, x, [text] * len(x))
    np.testing.assert_allclose(mlp_forward(merged, x), y, rtol=1e-12, atol=1e-12)
    assert not np.allclose(mlp_forward(base, x), y)
    # Another instruction merges to another network.
    other = merge(config, base, static, "shift the phase")
    assert not np.allclose(mlp_forward(other, x), y)


def test_lora_always_merges():
    lora = bind_to_mlp(LoraConfig(rank=2), [3, 6, 6, 2])
    _, base, _, x, _ = build()
    rng = np.random.default_rng(3)
    params = {f"layers.{i}.lora_{m}": rng.standard_normal(s)
              for i, (d_out, d_in) in enumerate(lora.layer_shapes)
              for m, s in (("A", (2, d_in)), ("B", (d_out, 2)))}
    np.testing.assert_allclose(mlp_forward(merge(lora, base, params), x),
                               forward(lora, base, params, x), rtol=1e-12, atol=1e-12)
