"""Training-step time of Queryable LoRA / peft LoRA at matched trainable parameters (SPEC §7).

    python benchmarks/torch_step_time.py                  # SmolLM2-135M-Instruct on the CPU
    python benchmarks/torch_step_time.py --device cuda --dtype bf16

Both adapters wrap the same target modules of the same base model and train on the same batch
(forward, backward, AdamW step). Steps are timed in interleaved rounds (LoRA, Queryable LoRA,
LoRA, ...) so that a machine whose speed drifts, or that is shared, affects both alike; the
figure is the ratio of the medians. Targets from issue 4: <= 1.25 on a CPU, <= 1.15 on a GPU.
"Queryable LoRA" is arXiv 2605.08423, not quantized LoRA.
"""

import argparse
import copy
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from qlora_torch import QLoRAConfig, inject_qlora  # noqa: E402
from qlora_torch.config import matched_lora_rank  # noqa: E402
from qlora_torch.finetune import load_base  # noqa: E402
from qlora_torch.inject import find_targets, linear_shape  # noqa: E402
from qlora_torch.lora import peft_lora_config  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="HF path or name (default: SmolLM2 GGUF)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("float32", "bf16"), default="float32")
    p.add_argument("--targets", default="q_proj,v_proj")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--n-atoms", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--block-size", type=int, default=5)
    p.add_argument("--prior", action="store_true", help="Queryable LoRA with the prior")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps-per-round", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    args.targets = "all-linear" if args.targets == "all-linear" else args.targets.split(",")
    return args


def make_step(model, params, batch, device, autocast, instruction=None):
    opt = torch.optim.AdamW(params, lr=1e-4)
    kwargs = {} if instruction is None else {"instruction": instruction}

    def step():
        with autocast():
            out = model(input_ids=batch, labels=batch, **kwargs)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return step


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    base, _ = load_base(args.model, args.device, args.dtype)
    autocast = (lambda: torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16)) \
        if args.dtype == "bf16" else (lambda: torch.autocast("cpu", enabled=False))
    g = torch.Generator().manual_seed(0)
    vocab = base.get_input_embeddings().weight.shape[0]
    batch = torch.randint(0, vocab, (args.batch_size, args.seq_len), generator=g).to(args.device)

    d_e = base.get_input_embeddings().weight.shape[1] if args.prior else 0
    qconfig = QLoRAConfig(rank=args.rank, n_atoms=args.n_atoms, top_k=args.top_k,
                          block_size=args.block_size, d_instruction=d_e, dtype="float32")
    qmodel = inject_qlora(copy.deepcopy(base), qconfig, args.targets)
    with torch.no_grad():   # B != 0, so that the routed path is not trivially zero
        for w in qmodel.wrapped.values():
            w.lora_B.normal_(0, 0.01)
    q_params = list(qmodel.trainable_parameters().values())
    paths = find_targets(base, args.targets)
    shapes = [linear_shape(base.get_submodule(p)) for p in paths]
    rank = matched_lora_rank(qmodel.config, shapes)
    import peft

    lmodel = peft.get_peft_model(copy.deepcopy(base), peft_lora_config(rank, args.targets))
    l_params = [p for p in lmodel.parameters() if p.requires_grad]
    n_q, n_l = sum(p.numel() for p in q_params), sum(p.numel() for p in l_params)
    e = torch.randn(args.batch_size, d_e, generator=g).to(args.device) if args.prior else None
    steps = {"lora": make_step(lmodel, l_params, batch, args.device, autocast),
             "qlora": make_step(qmodel, q_params, batch, args.device, autocast, e)}
    for fn in steps.values():           # warm-up: allocator, kernels, AdamW state
        fn()
        fn()
    times = {k: [] for k in steps}
    for r in range(args.rounds):
        for name, fn in steps.items():
            for _ in range(args.steps_per_round):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{args.rounds}: lora {statistics.median(times['lora']):.3f} s, "
              f"qlora {statistics.median(times['qlora']):.3f} s", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["qlora"] / med["lora"]
    target = 1.15 if args.device.startswith("cuda") else 1.25
    print(f"model {args.model or 'SmolLM2-135M-Instruct (GGUF)'}, device {args.device}, "
          f"dtype {args.dtype}, {torch.get_num_threads()} threads, batch {args.batch_size}x"
          f"{args.seq_len}, targets {args.targets}")
    print(f"peft LoRA        r={rank:<3d} {n_l:>9,} params  {med['lora'] * 1000:8.1f} ms/step")
    print(f"Queryable LoRA   r={args.rank:<3d} {n_q:>9,} params  {med['qlora'] * 1000:8.1f} ms/step"
          f"  (N={args.n_atoms}, k={args.top_k}, blocks={qmodel.config.n_blocks}"
          f"{', prior' if args.prior else ''})")
    print(f"step-time ratio Queryable LoRA / peft LoRA: {ratio:.3f}  (target <= {target}: "
          f"{'met' if ratio <= target else 'NOT met'})")
    return ratio


if __name__ == "__main__":
    main()
