"""Golden vectors (SPEC §10): small float64 cases that any port can check itself against.

`python -m qlora_np golden [--out parity/golden]` regenerates every case from the NumPy
implementation, deterministically (fixed seeds, sorted keys). Each file holds

  params.<name>        every base and adapter parameter (SPEC §2, §8)
  inputs.x             (n, d_in)
  inputs.instruction   (n, d_e) instruction embeddings, when the case has a prior
  inputs.cotangent     (n, d_out)
  outputs.y            (n, d_out)
  outputs.routing.<b>  w_b of block b (0-based), (n, N)
  grads.<name>         d(sum y * cotangent) / d(name), every trainable parameter

and its safetensors metadata holds `config` (the adapter config JSON plus `layer_sizes`) and
`instructions` (the raw texts, JSON, so a port can check its hashed n-gram embedder too).
Parameters are random, not the SPEC §6 init (whose `B = 0` would make most gradients vacuous), and
top-k cases are drawn until every row has a margin of at least `MIN_MARGIN` between its k-th and
(k+1)-th routing score, so that a correct port never meets a tie.
"""

import argparse
import json
import os

import numpy as onp
from autograd import grad
from safetensors.numpy import load_file

from .checkpoint import atomic_write_bytes, serialize_safetensors
from .config import QLoRAConfig, config_from_dict
from .mlp import init_mlp
from .model import adapted_forward, bind_to_mlp, init_adapter
from .prior import embed_instructions

MIN_MARGIN = 1e-3
DEFAULT_DIR = os.path.join("parity", "golden")

# name: (layer_sizes, QLoRAConfig kwargs, rows). Covers summary none/attention, prior off/on,
# dense and top-k, N = 1, block size 1, 2 and 3 (with a shorter last block), 1-D and multi-D input.
CASES = {
    "01_none_dense_g1_x1": ([1, 6, 6, 1], dict(rank=2, n_atoms=4, summary="none"), 5),
    "02_attn_dense_g1_x1": ([1, 6, 6, 1], dict(rank=2, n_atoms=4, d_summary=3), 5),
    "03_attn_topk2_g2_short_last": ([3, 5, 5, 2], dict(rank=3, n_atoms=5, top_k=2, block_size=2,
                                                       d_summary=4, d_key=6), 6),
    "04_none_prior_topk2_g1": ([3, 5, 5, 2], dict(rank=2, n_atoms=6, top_k=2, summary="none",
                                                  d_instruction=8, prior_weight=0.7), 6),
    "05_attn_prior_dense_g2": ([2, 6, 6, 6, 1], dict(rank=3, n_atoms=4, block_size=2,
                                                     d_instruction=8, d_summary=3,
                                                     temperature=0.8), 5),
    "06_n1_attn_g2": ([2, 5, 5, 1], dict(rank=2, n_atoms=1, block_size=2, d_summary=2), 4),
    "07_attn_prior_topk1_g1": ([4, 5, 5, 5, 3], dict(rank=2, n_atoms=5, top_k=1, d_instruction=6,
                                                     d_summary=3, d_key=4), 6),
    "08_attn_prior_topk3_tau": ([2, 6, 6, 1], dict(rank=4, n_atoms=6, top_k=3, d_instruction=8,
                                                   prior_weight=0.5, temperature=0.6,
                                                   alpha=2.0, d_summary=5), 7),
    "09_rank1_none_dense_x1": ([1, 4, 4, 1], dict(rank=1, n_atoms=3, summary="none", d_key=3), 5),
    "10_attn_g3_short_last_batch1": ([3, 4, 4, 4, 4, 2], dict(rank=2, n_atoms=4, top_k=3,
                                                              block_size=3, d_summary=3), 1),
    "11_none_prior_n1_g1": ([2, 4, 4, 1], dict(rank=2, n_atoms=1, summary="none",
                                               d_instruction=4), 4),
}

INSTRUCTIONS = ["Shift the phase left by 0.3", "double the frequency on the right half",
                "flip the slope where x < 0", "Add a small bump near zero."]


def _randomise(params, rng):
    """Replace the init by random values of a sensible scale (B, m_0, prior included)."""
    return {k: rng.standard_normal(v.shape) * (1.0 if "atoms" in k or "keys" in k else 0.5)
            + (onp.eye(v.shape[-1])[None] if "atoms" in k else 0.0)
            for k, v in params.items()}


def _min_margin(adapter, k):
    """Smallest gap between each row's k-th and (k+1)-th routing score, over all blocks."""
    margins = [onp.inf]
    for r in adapter.routing:
        probs = onp.asarray(r["probs"])
        if k < probs.shape[1]:
            s = onp.sort(onp.log(probs), axis=1)[:, ::-1]   # log softmax(s) = s - const per row
            margins.append(float(onp.min(s[:, k - 1] - s[:, k])))
    return min(margins)


def make_case(name):
    """Build one golden case; returns (tensors, metadata)."""
    layer_sizes, kwargs, n = CASES[name]
    config = bind_to_mlp(QLoRAConfig(**kwargs), layer_sizes)
    case_index = sorted(CASES).index(name)
    for attempt in range(1000):
        rng = onp.random.default_rng([case_index, attempt])
        base = init_mlp(layer_sizes, rng)
        params = _randomise(init_adapter(config, rng), rng)
        x = rng.standard_normal((n, layer_sizes[0]))
        texts, e = None, None
        if config.d_instruction > 0:
            texts = [INSTRUCTIONS[i] for i in rng.integers(0, len(INSTRUCTIONS), n)]
            e = embed_instructions(texts, config.d_instruction)
        y, adapter = adapted_forward(config, base, params, x, e)
        if _min_margin(adapter, config.top_k) >= MIN_MARGIN:
            break
    else:  # pragma: no cover - the cases above all find a margin within a few draws
        raise RuntimeError(f"golden case {name}: no draw with a top-k margin >= {MIN_MARGIN}")
    cotangent = rng.standard_normal(y.shape)
    grads = grad(lambda p: onp.sum(adapted_forward(config, base, p, x, e)[0] * cotangent))(params)
    tensors = {f"params.{k}": v for k, v in {**base, **params}.items()}
    tensors["inputs.x"] = x
    tensors["inputs.cotangent"] = cotangent
    if e is not None:
        tensors["inputs.instruction"] = e
    tensors["outputs.y"] = y
    for b, r in enumerate(adapter.routing):
        tensors[f"outputs.routing.{b}"] = onp.asarray(r["weights"])
    tensors.update({f"grads.{k}": v for k, v in grads.items()})
    config_json = dict(config.to_dict(), layer_sizes=list(layer_sizes))
    metadata = {"config": json.dumps(config_json, sort_keys=True),
                "instructions": json.dumps(texts), "case": name}
    tensors = {k: onp.ascontiguousarray(v, dtype=onp.float64) for k, v in sorted(tensors.items())}
    return tensors, metadata


def write_all(out_dir=DEFAULT_DIR):
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name in sorted(CASES):
        tensors, metadata = make_case(name)
        path = os.path.join(out_dir, f"{name}.safetensors")
        atomic_write_bytes(path, serialize_safetensors(tensors, metadata))
        paths.append(path)
    return paths


def load_golden(path):
    """(config, layer_sizes, tensors, instructions) of a golden file."""
    from safetensors import safe_open
    with safe_open(path, framework="numpy") as f:
        metadata = f.metadata()
    config_dict = json.loads(metadata["config"])
    layer_sizes = config_dict.pop("layer_sizes")
    return (config_from_dict(config_dict), layer_sizes, load_file(path),
            json.loads(metadata.get("instructions", "null")))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m qlora_np golden",
                                     description="Regenerate the golden vectors (SPEC §10).")
    parser.add_argument("--out", default=DEFAULT_DIR, help=f"output folder (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    for path in write_all(args.out):
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    return 0
