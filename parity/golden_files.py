"""PyTorch reproduces every golden file (SPEC §10) — the same check a new port runs.

A golden file holds `params.*`, `inputs.*` and the NumPy results `outputs.*`, `grads.*`. Here the
file becomes a `Case` whose reference is the file's own results instead of a fresh NumPy run, and
`mlp.check_mlp` compares PyTorch against it in float64 and float32 with the SPEC §9.7 tolerances.
The raw instruction texts in the metadata are also re-embedded, so a port's embedder is checked.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from qlora_np.golden import load_golden

from .mlp import Case, check_mlp

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def golden_paths():
    """The golden files, in name order."""
    return sorted(glob.glob(os.path.join(GOLDEN_DIR, "*.safetensors")))


def golden_case(path):
    """A `Case` whose `ref` is the golden file's stored outputs and gradients."""
    config, layer_sizes, t, texts = load_golden(path)
    base = {k[len("params."):]: v for k, v in t.items() if k.startswith("params.base.")}
    params = {k[len("params."):]: v for k, v in t.items()
              if k.startswith("params.") and not k.startswith("params.base.")}
    weights = [t[f"outputs.routing.{b}"] for b in range(config.n_blocks)]
    case = Case(os.path.basename(path)[:-len(".safetensors")], config, layer_sizes, base, params,
                t["inputs.x"], t.get("inputs.instruction"), t["inputs.cotangent"])
    case.ref = {"y": t["outputs.y"], "weights": weights,
                # the chosen set of each row: its non-zero weights (golden cases have margins,
                # so no chosen weight underflows to 0)
                "masks": [w > 0 for w in weights],
                "grads": {k[len("grads."):]: v for k, v in t.items() if k.startswith("grads.")}}
    case.texts = texts
    return case


def check_golden(path, dtype="float64"):
    """PyTorch (`dtype`, CPU) against one golden file; also its instruction embeddings."""
    case = golden_case(path)
    row = check_mlp(case, dtype, label=f"golden/{case.name}")
    if case.texts is not None:
        from qlora_torch.prior import embed_instructions
        if not np.array_equal(embed_instructions(case.texts, case.config.d_instruction), case.e):
            row.fail("the hashed n-gram embedder does not reproduce inputs.instruction")
        elif dtype == "float64":
            row.note = "embedder reproduces inputs.instruction bit for bit"
    return row
