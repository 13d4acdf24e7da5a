"""Injection into tiny randomly initialised Llama and GPT-2 models (offline, SPEC §9, §10)."""

import dataclasses
import json

import numpy as onp
import pytest
import torch

transformers = pytest.importorskip("transformers")

from qlora_np.checkpoint import CheckpointError, load_adapter  # noqa: E402
from qlora_torch import InputError, QLoRAConfig, QLoRAModel, inject_qlora  # noqa: E402
from qlora_torch.inject import canonical_name, state_dict_name  # noqa: E402
from qlora_torch.config import queryable_param_count  # noqa: E402


def tiny_llama(seed=0, hidden=32, layers=4, dtype=torch.float32):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=hidden, intermediate_size=48,
                                   num_hidden_layers=layers, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(cfg).to(dtype).eval()


def tiny_gpt2(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=97, n_embd=32, n_layer=3, n_head=4, n_positions=64)
    return transformers.GPT2LMHeadModel(cfg).eval()


def randomize_B(qmodel, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for w in qmodel.wrapped.values():
            w.lora_B.copy_(0.3 * torch.randn(w.lora_B.shape, generator=g))


IDS = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(0))


def test_targets_blocks_and_frozen_base():
    q = inject_qlora(tiny_llama(), QLoRAConfig(rank=4, n_atoms=4, block_size=2),
                     ["q_proj", "v_proj"])
    names = list(q.config.layer_names)
    assert names == [f"model.layers.{i}.self_attn.{m}" for i in range(4) for m in ("q_proj",
                                                                                    "v_proj")]
    assert [list(b) for b in q.config.blocks] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert q.config.dtype == "float32"
    trainable = q.trainable_parameters()
    assert all(not p.requires_grad for n, p in q.model.named_parameters()
               if "lora_" not in n)
    assert sum(p.numel() for p in trainable.values()) == queryable_param_count(
        q.config, q.config.layer_shapes)
    assert q.count_trainable_parameters()[0] == queryable_param_count(q.config,
                                                                      q.config.layer_shapes)
    for sd_name in q.state_dict():
        if "lora_" in sd_name or sd_name.split(".")[0] in ("bank", "router", "summary"):
            assert state_dict_name(canonical_name(sd_name)) == sd_name
    assert "layers.model.layers.0.self_attn.q_proj.lora_A" in trainable


def test_all_linear_and_regex_on_gpt2():
    q = inject_qlora(tiny_gpt2(), QLoRAConfig(rank=2, n_atoms=3, block_size=1), "all-linear")
    suffixes = {n.rsplit(".", 1)[-1] for n in q.config.layer_names}
    assert suffixes == {"c_attn", "c_proj", "c_fc"} and "lm_head" not in q.config.layer_names
    assert q.config.n_blocks == 3
    q2 = inject_qlora(tiny_gpt2(), QLoRAConfig(rank=2, n_atoms=3), r".*\.attn\.c_attn")
    assert list(q2.config.layer_names) == [f"transformer.h.{i}.attn.c_attn" for i in range(3)]
    assert q2.config.layer_shapes[0] == (96, 32)   # Conv1D stores (in, out); config is (out, in)


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
def test_disable_is_exact_and_B_zero_is_base(make):
    base_model = make()
    with torch.no_grad():
        base = base_model(IDS).logits
    q = inject_qlora(base_model, QLoRAConfig(rank=4, n_atoms=4, top_k=2), "all-linear")
    with torch.no_grad():
        assert torch.equal(q(input_ids=IDS).logits, base)        # B = 0 at init
        randomize_B(q)
        adapted = q(input_ids=IDS).logits
        assert not torch.allclose(adapted, base)
        with q.disable():
            assert torch.equal(q(input_ids=IDS).logits, base)
        assert torch.equal(q(input_ids=IDS).logits, adapted)


def test_gradients_reach_only_the_adapter():
    q = inject_qlora(tiny_llama(), QLoRAConfig(rank=4, n_atoms=4, top_k=2, block_size=2),
                     ["q_proj", "down_proj"])
    randomize_B(q)
    out = q(input_ids=IDS, labels=IDS)
    out.loss.backward()
    grads = {n: p.grad for n, p in q.trainable_parameters().items()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["bank.atoms"].abs().sum() > 0 and grads["router.weight"].abs().sum() > 0
    assert all(p.grad is None for n, p in q.model.named_parameters() if "lora_" not in n)


def test_lead_layer_is_first_called_and_state_resets_per_forward():
    q = inject_qlora(tiny_llama(dtype=torch.float64), QLoRAConfig(rank=3, n_atoms=5, top_k=2,
                                                                  block_size=2), "all-linear")
    randomize_B(q)
    with torch.no_grad():
        y1 = q(input_ids=IDS).logits
        log = q.routing_log()
        assert [r["block"] for r in log] == [0, 1]
        assert log[0]["weights"].shape == (2, 7, 5)
        y2 = q(input_ids=IDS).logits     # a second call must not see the first call's state
    assert torch.equal(y1, y2)
    stats = q.routing_stats()
    assert len(stats) == 2 and abs(sum(stats[0]["usage"]) - 1) < 1e-9


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
def test_generation_with_cache_equals_without(make):
    q = inject_qlora(make().double(), QLoRAConfig(rank=4, n_atoms=4, top_k=2, block_size=1),
                     "all-linear")
    randomize_B(q, seed=3)
    prompt = IDS[:1, :4]
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        cached = q.generate(prompt, use_cache=True, **kw)
        uncached = q.generate(prompt, use_cache=False, **kw)
    assert torch.equal(cached, uncached)
    assert cached.shape[1] == 10


def test_instruction_prior_broadcast_and_errors():
    q = inject_qlora(tiny_llama(), QLoRAConfig(rank=4, n_atoms=4, top_k=2, d_instruction=6),
                     ["q_proj"])
    e = torch.randn(2, 6)
    with torch.no_grad():
        q.prior.weight.normal_()
        q(input_ids=IDS, instruction=e)
        w_a = q.routing_log()[0]["weights"]
        q(input_ids=IDS, instruction=-e)
        w_b = q.routing_log()[0]["weights"]
    assert not torch.equal(w_a, w_b)
    with pytest.raises(InputError, match="instruction: expected 2 rows"):
        q(input_ids=IDS, instruction=torch.randn(3, 6))
    with pytest.raises(InputError, match=r"instruction: expected an embedding of width 6"):
        q(input_ids=IDS)
    q(input_ids=IDS, skip_prior=True)
    with pytest.raises(InputError, match=r"expected a tensor of shape \(batch, 6\)"):
        q(input_ids=IDS, instruction=torch.randn(2, 5))


class _Toy(torch.nn.Module):
    """Registers `b` before `a` but calls `a` first: the lead layer is `a`."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.ModuleDict(
            {"b": torch.nn.Linear(4, 4), "a": torch.nn.Linear(4, 4)}) for _ in range(2))

    def forward(self, x):
        for layer in self.layers:
            x = layer["b"](layer["a"](x))
        return x


def test_lead_layer_is_the_first_called_not_the_first_registered():
    q = inject_qlora(_Toy().double(), QLoRAConfig(rank=2, n_atoms=3, block_size=1), ["a", "b"])
    assert list(q.config.layer_names)[:2] == ["layers.0.b", "layers.0.a"]
    x = torch.randn(5, 4, dtype=torch.float64)
    q(x)
    z = x @ q.wrapped["layers.0.a"].lora_A.T
    z_hat = z / torch.sqrt((z * z).mean(-1, keepdim=True) + q.config.norm_eps)
    torch.testing.assert_close(q.adapter.current.states[0], z_hat, rtol=0, atol=0)


def test_bad_targets_have_clear_messages():
    with pytest.raises(InputError, match=r"\['nope_proj'\] matched no module"):
        inject_qlora(tiny_llama(), QLoRAConfig(), ["q_proj", "nope_proj"])
    with pytest.raises(InputError, match="matched no module"):
        inject_qlora(tiny_llama(), QLoRAConfig(), r"xyz\..*")
    with pytest.raises(InputError, match="expected only nn.Linear"):
        inject_qlora(tiny_llama(), QLoRAConfig(), ["input_layernorm"])
    with pytest.raises(InputError, match="no transformer-layer index"):
        inject_qlora(tiny_llama(), QLoRAConfig(), ["lm_head"])


def test_merge_refused_for_input_routing_and_exact_for_static():
    q = inject_qlora(tiny_llama(dtype=torch.float64),
                     QLoRAConfig(rank=3, n_atoms=4, top_k=2, summary="none", d_instruction=5),
                     "all-linear")
    randomize_B(q)
    with pytest.raises(ValueError, match="router.weight is non-zero"):
        q.merge(torch.randn(5, dtype=torch.float64))
    with torch.no_grad():
        q.router.weight.zero_()
        q.router.bias.normal_()
        q.prior.weight.normal_()
    e = torch.randn(1, 5, dtype=torch.float64)
    with torch.no_grad():
        adapted = q(input_ids=IDS[:1], instruction=e).logits
        merged_model = q.merge(e[0])
        merged = merged_model(IDS[:1]).logits
    torch.testing.assert_close(merged, adapted, rtol=1e-9, atol=1e-9)
    assert not any("lora_" in n for n, _ in merged_model.named_parameters())


def test_save_load_round_trip(tmp_path):
    q = inject_qlora(tiny_llama(seed=0), QLoRAConfig(rank=4, n_atoms=3, top_k=2, block_size=2,
                                                     d_instruction=4), ["q_proj", "o_proj"])
    randomize_B(q)
    e = torch.randn(2, 4)
    with torch.no_grad():
        y = q(input_ids=IDS, instruction=e).logits
    q.save_pretrained(tmp_path / "ad")
    saved = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert saved["extra"]["target_modules"] == ["q_proj", "o_proj"]
    config, params = load_adapter(tmp_path / "ad")          # the NumPy side reads it
    assert params["bank.atoms"].dtype == onp.float32
    q2 = QLoRAModel.from_pretrained(tiny_llama(seed=0), tmp_path / "ad")
    with torch.no_grad():
        assert torch.equal(q2(input_ids=IDS, instruction=e).logits, y)
    with pytest.raises(InputError, match=r"layer 'model.layers.0.self_attn.q_proj': expected "
                                         r"shape \(d_out, d_in\) = \(32, 32\)"):
        QLoRAModel.from_pretrained(tiny_llama(hidden=48), tmp_path / "ad")
    (tmp_path / "ad" / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        QLoRAModel.from_pretrained(tiny_llama(), tmp_path / "ad")


def test_bound_config_reinjects_same_layers():
    q = inject_qlora(tiny_llama(), QLoRAConfig(rank=2, n_atoms=2), ["v_proj"])
    again = inject_qlora(tiny_llama(), dataclasses.replace(q.config))
    assert again.config.layer_names == q.config.layer_names


def test_bf16_autocast_training_step_and_routing_loss():
    q = inject_qlora(tiny_llama(), QLoRAConfig(rank=4, n_atoms=4, top_k=2, d_instruction=6,
                                               kl_weight=0.1, balance_weight=0.01), ["q_proj"])
    assert q.bank.atoms.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(input_ids=IDS, labels=IDS, instruction=torch.randn(2, 6))
    aux = q.routing_loss()
    assert torch.is_tensor(aux) and aux.item() > 0
    (out.loss + aux).backward()
    assert q.prior.weight.grad is not None and torch.isfinite(q.prior.weight.grad).all()
    assert q.bank.atoms.grad.dtype == torch.float32


def test_gradient_checkpointing_is_refused_clearly():
    model = tiny_llama()
    q = inject_qlora(model, QLoRAConfig(rank=2, n_atoms=2, block_size=2), ["q_proj"])
    enable = getattr(q.model, "activation_checkpointing_enable", None) \
        or q.model.gradient_checkpointing_enable
    enable()
    q.train()
    with pytest.raises(InputError, match="gradient checkpointing: expected it off"):
        q(input_ids=IDS, labels=IDS)
    with torch.no_grad():
        q(input_ids=IDS)                 # inference is unaffected
