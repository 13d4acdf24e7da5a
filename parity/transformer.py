"""The adapter injected into tiny transformers models, checked against NumPy layer by layer.

The NumPy side has no transformer, so the comparison is made where the adapter lives: at each
adapted linear layer. Forward hooks on every `QLoRALinear` capture, in call order, the layer's
input `h_l` and output `y_l`, and a tensor hook its cotangent `g_l = dL/dy_l` for
`L = sum(logits * cotangent)`. From the captured inputs alone, NumPy recomputes the whole pass with
its own functions (`qlora_np.adapter.make_pass`: blocks, lead layers, depth summary, per-sequence
prior broadcast to the tokens, top-k routing):

    y_l = h_l W0_l^T [+ b0_l] + (alpha / r) B_l C_b A_l h_l      every adapted layer, every token

and its gradients as `grad_theta sum_l <y_l(theta; h), g_l>`. That equals PyTorch's gradient of
`L` exactly (chain rule: theta enters `L` only through the adapted layers' outputs, and `g_l` is
the total derivative there), so PyTorch's `.grad` of every trainable parameter is compared with the
SPEC §9.7 tolerances, as are the per-layer outputs and the routing of every block and token.

Cases: a Llama (`q_proj`, `v_proj`, `down_proj`; blocks of 2 transformer layers; prior; top-2),
the same Llama with every linear module adapted (`all-linear`, one layer per block, no summary),
and a GPT-2 (`all-linear`: `Conv1D` modules, whose weights are stored `(in, out)`), each in a
float64 and a float32 model. Checkpoints: `QLoRAModel.save_pretrained` -> `qlora_np.load_adapter`
-> NumPy recomputation; and a NumPy-made update -> `qlora_np.save_adapter` ->
`QLoRAModel.from_pretrained` -> the same layer outputs and gradients.
"""

from __future__ import annotations

import tempfile

import autograd.numpy as anp
import numpy as np
from autograd import grad

from qlora_np import Adam, QLoRAConfig, embed_instructions, load_adapter, merge, save_adapter
from qlora_np.adapter import make_pass

from .metrics import TOL, Err, Row, compare, finish, grad_errors
from .mlp import MIN_MARGIN, TEXTS, randomise, routing_agreement, top_k_margin

BATCH, SEQ, VOCAB = 2, 7, 97
MAX_DRAWS = 50

# name: (architecture, target_modules, QLoRAConfig kwargs)
HF_CASES = {
    "llama_q_v_down_g2_prior_top2": ("llama", ["q_proj", "v_proj", "down_proj"],
                                     dict(rank=4, n_atoms=5, top_k=2, block_size=2, d_summary=3,
                                          d_instruction=6, prior_weight=0.7)),
    "gpt2_all_linear_conv1d_top3": ("gpt2", "all-linear",
                                    dict(rank=3, n_atoms=4, top_k=3, block_size=1, d_summary=2)),
    # every linear module of every layer (7 per layer, 28 in all), one layer per block, no
    # summary, no prior, top-3 of 6
    "llama_all_linear_g1_none_top3": ("llama", "all-linear",
                                      dict(rank=2, n_atoms=6, top_k=3, block_size=1,
                                           summary="none")),
}


def tiny_model(arch, dtype="float64", seed=0):
    """A tiny randomly initialised transformers model (offline; same seed -> same weights)."""
    import torch
    import transformers

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if arch == "llama":
            cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48,
                                           num_hidden_layers=4, num_attention_heads=4,
                                           num_key_value_heads=2, max_position_embeddings=64)
            model = transformers.LlamaForCausalLM(cfg)
        else:
            cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4,
                                          n_positions=64, bos_token_id=0, eos_token_id=0)
            model = transformers.GPT2LMHeadModel(cfg)
    return model.to({"float64": torch.float64, "float32": torch.float32}[dtype]).eval()


def capture(qmodel, ids, instruction, cot_seed=0):
    """Run forward + backward of `sum(logits * cotangent)`; per adapted-layer call, in call order:
    path, input `h`, output `y`, cotangent `g`; plus `.grad` by canonical name and the routing."""
    import torch

    records, handles = [], []

    def hook(module, args, output, path):
        rec = {"path": path, "h": args[0].detach().clone(), "y": output.detach().clone(),
               "g": torch.zeros_like(output)}
        if output.requires_grad:
            output.register_hook(lambda g: rec.__setitem__("g", g.detach().clone()))
        records.append(rec)

    for path, wrapper in qmodel.wrapped.items():
        handles.append(wrapper.register_forward_hook(
            lambda m, a, o, path=path: hook(m, a, o, path)))
    params = qmodel.trainable_parameters()
    try:
        for p in params.values():
            p.grad = None
        logits = qmodel(input_ids=ids, instruction=instruction).logits
        g = torch.Generator().manual_seed(cot_seed)
        cot = torch.randn(logits.shape, generator=g, dtype=torch.float64).to(logits.dtype)
        (logits * cot).sum().backward()
    finally:
        for h in handles:
            h.remove()
    grads = {n: (torch.zeros_like(p) if p.grad is None else p.grad.detach().clone())
             for n, p in params.items()}
    return records, grads, qmodel.routing_log()


def base_weights(qmodel):
    """path -> (W0 (d_out, d_in), b0 or None) as float64 NumPy; Conv1D stores (in, out)."""
    out = {}
    for path, wrapper in qmodel.wrapped.items():
        layer = wrapper.base_layer
        w = layer.weight.detach().double().cpu().numpy()
        if type(layer).__name__ == "Conv1D":
            w = w.T
        b = None if layer.bias is None else layer.bias.detach().double().cpu().numpy()
        out[path] = (w, b)
    return out


def _f64(t):
    return t.detach().double().cpu().numpy()


def numpy_layers(config, params, records, weights, e_rows):
    """NumPy recomputation from the captured inputs: (outputs per call, routing, grads)."""
    index = {name: i for i, name in enumerate(config.layer_names)}
    hs = [_f64(r["h"]).reshape(-1, r["h"].shape[-1]) for r in records]     # (tokens, d_in)
    gs = [_f64(r["g"]).reshape(-1, r["g"].shape[-1]) for r in records]     # (tokens, d_out)

    def run(p):
        adapter = make_pass(config, p, e_rows)
        ys = []
        for rec, h in zip(records, hs):
            w, b = weights[rec["path"]]
            y = h @ w.T + adapter(index[rec["path"]], h)
            ys.append(y if b is None else y + b)
        return ys, adapter

    ys, adapter = run(params)
    grads = grad(lambda p: sum(anp.sum(y * g) for y, g in zip(run(p)[0], gs)))(params)
    return ys, adapter.routing, grads


def build_hf(name, dtype="float64"):
    """(qmodel, ids, instruction, e_rows): injected model with random, tie-free adapter weights."""
    import torch

    from qlora_torch import inject_qlora

    arch, targets, kwargs = HF_CASES[name]
    qmodel = inject_qlora(tiny_model(arch, dtype), QLoRAConfig(**kwargs), targets, seed=0)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    instruction, e_rows = None, None
    d_e = qmodel.config.d_instruction
    if d_e:
        e = embed_instructions(TEXTS[:BATCH], d_e)                            # (batch, d_e)
        instruction = torch.tensor(e, dtype=torch.float64).to(next(qmodel.parameters()).dtype)
        e_rows = np.repeat(_f64(instruction), SEQ, axis=0)   # the prior of a sequence, per token
    init = qmodel.adapter_params()
    for attempt in range(MAX_DRAWS):
        params = randomise(init, np.random.default_rng([sorted(HF_CASES).index(name), attempt]))
        qmodel.load_adapter_params(params)
        records, _, _ = capture(qmodel, ids, instruction)
        _, routing, _ = numpy_layers(qmodel.config, _as_f64(qmodel.adapter_params()), records,
                                     base_weights(qmodel), e_rows)
        if top_k_margin(routing, qmodel.config.top_k) >= MIN_MARGIN:
            return qmodel, ids, instruction, e_rows
    raise RuntimeError(f"{name}: no draw with a top-k margin >= {MIN_MARGIN}")


def _as_f64(params):
    return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}


def compare_hf(row, qmodel, params, records, grads, log, e_rows):
    """Fill `row`: PyTorch's captured layer outputs, routing and grads vs NumPy from `params`."""
    dtype = row.dtype
    (ro, ao), (rg, ag) = TOL[dtype]["out"], TOL[dtype]["grad"]
    ys, routing, np_grads = numpy_layers(qmodel.config, params, records, base_weights(qmodel),
                                         e_rows)
    out = Err()
    for rec, y in zip(records, ys):
        out = out.worst(compare(rec["y"].reshape(y.shape), y, ro, ao))
    n_atoms = qmodel.config.n_atoms
    masks = [r["mask"].reshape(-1, n_atoms).cpu().numpy() for r in log]
    ref_masks = [np.asarray(r["mask"]) for r in routing]
    same, rows = routing_agreement(masks, ref_masks)
    row.routing = f"{same}/{rows}"
    if len(log) == len(routing):
        for r, r_np in zip(log, routing):
            werr = compare(r["weights"].reshape(-1, n_atoms), np.asarray(r_np["weights"]), ro, ao)
            if not werr.ok:
                row.fail(f"routing weights error {werr.used:.2g}x tolerance")
    errs, worst = grad_errors(grads, np_grads, rg, ag)
    margin = top_k_margin(routing, qmodel.config.top_k)
    if margin < MIN_MARGIN:
        row.fail(f"top-k margin {margin:.2g} < {MIN_MARGIN}: the comparison is not meaningful")
    return finish(row, out, errs, worst, routing_ok=same == rows)


def check_hf(name, dtype="float64"):
    """One row: the injected model (`dtype`, CPU) against the NumPy recomputation."""
    qmodel, ids, instruction, e_rows = build_hf(name, dtype)
    records, grads, log = capture(qmodel, ids, instruction)
    row = Row(f"hf/{name}", dtype, "cpu")
    row = compare_hf(row, qmodel, _as_f64(qmodel.adapter_params()), records, grads, log, e_rows)
    if row.passed:
        row.note = (f"{len(records)} adapted-layer calls x {BATCH * SEQ} tokens; out = layer "
                    f"outputs y_l")
    return row


def check_hf_checkpoints(name, dtype="float64"):
    """Two rows: save_pretrained -> qlora_np.load_adapter, and back after a NumPy Adam step.

    The checkpoint's dtype is the model's (`config.dtype`); in float32 NumPy computes in float64
    from the stored float32 values, and the float32 tolerances apply."""
    from qlora_torch import QLoRAModel

    qmodel, ids, instruction, e_rows = build_hf(name, dtype)
    records, grads, log = capture(qmodel, ids, instruction)
    arch = HF_CASES[name][0]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        qmodel.save_pretrained(folder)
        config, params = load_adapter(folder)
    row = Row(f"ckpt/hf torch->np/{name}", dtype, "cpu")
    if config != qmodel.config:
        row.fail("the config read back differs from the model's")
    own = qmodel.adapter_params()
    lossy = sorted(k for k in own if not np.array_equal(own[k], params[k]))
    if lossy:
        row.fail(f"tensors {lossy} changed in the round trip")
    rows.append(compare_hf(row, qmodel, _as_f64(params), records, grads, log, e_rows))
    if rows[-1].passed:
        row.note = "QLoRAModel.save_pretrained -> qlora_np.load_adapter -> NumPy layers"

    # NumPy makes new values (one Adam step on its own gradients), saves; PyTorch loads them.
    _, _, np_grads = numpy_layers(config, _as_f64(params), records, base_weights(qmodel), e_rows)
    stepped = Adam(lr=1e-3).step(_as_f64(params), np_grads)
    row = Row(f"ckpt/hf np->torch/{name}", dtype, "cpu")
    with tempfile.TemporaryDirectory() as folder:
        save_adapter(folder, config, stepped)
        _, saved = load_adapter(folder)                 # the values as stored (config.dtype)
        loaded = QLoRAModel.from_pretrained(tiny_model(arch, dtype), folder)
    records2, grads2, log2 = capture(loaded, ids, instruction)
    own = loaded.adapter_params()
    lossy = sorted(k for k in own if not np.array_equal(own[k], saved[k]))
    if lossy:
        row.fail(f"tensors {lossy} differ after QLoRAModel.from_pretrained")
    rows.append(compare_hf(row, loaded, _as_f64(saved), records2, grads2, log2, e_rows))
    if rows[-1].passed:
        row.note = "NumPy Adam step -> qlora_np.save_adapter -> QLoRAModel.from_pretrained"
    return rows


def check_hf_merge(name):
    """One row, float64: a static router (`router.weight = 0`, SPEC §9.6) merged into the base
    weights by `QLoRAModel.merge` equals `qlora_np.merge`, `W0 + (alpha / r) B C A`, per layer."""
    import torch

    qmodel, _, instruction, _ = build_hf(name, "float64")
    with torch.no_grad():
        qmodel.router.weight.zero_()
    config, params = qmodel.config, _as_f64(qmodel.adapter_params())
    weights = base_weights(qmodel)
    base = {f"base.{i}.weight": weights[path][0] for i, path in enumerate(config.layer_names)}
    e = None if instruction is None else _f64(instruction[0])
    expected = merge(config, base, params, e)
    merged = qmodel.merge(None if instruction is None else instruction[0])
    rtol, atol = TOL["float64"]["out"]
    row = Row(f"merge/hf/{name}", "float64", "cpu")
    out = Err()
    for i, path in enumerate(config.layer_names):
        layer = merged.get_submodule(path)
        w = _f64(layer.weight)
        w = w.T if type(layer).__name__ == "Conv1D" else w
        out = out.worst(compare(w, expected[f"base.{i}.weight"], rtol, atol))
    row = finish(row, out)
    if row.passed:
        row.note = f"QLoRAModel.merge vs qlora_np.merge, {len(config.layer_names)} merged weights"
    return row
