"""Checkpoint interchange (SPEC §10): a checkpoint written by one side runs the same on the other.

`np->torch`: `qlora_np.save_adapter` writes the folder; the PyTorch side reads it with its own
tools only (`json` + `safetensors.torch.load_file`) and the loaded `AdaptedMLP` must match the
NumPy outputs and gradients of the saved parameters.

`torch->np`: PyTorch makes new parameter values (one `torch.optim.Adam` step, so they exist only on
that side), writes them with `safetensors.torch.save_file` and the config JSON, and
`qlora_np.load_adapter` must read them back bit for bit and match PyTorch's outputs.

Both directions run in float64 and float32 checkpoints (`config.dtype`). The injected-transformer
round trips (`QLoRAModel.save_pretrained` / `from_pretrained`) are in `transformer.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import numpy as np

from qlora_np import adapted_forward, load_adapter, save_adapter
from qlora_np.checkpoint import CONFIG_FILE, WEIGHTS_FILE

from .metrics import Row
from .mlp import MIN_MARGIN, check_mlp, top_k_margin, torch_dtype, torch_inputs, torch_model


def check_np_to_torch(case, dtype="float64"):
    """NumPy saves the case's adapter; PyTorch loads the files itself and reproduces NumPy."""
    from safetensors.torch import load_file

    from qlora_torch import config_from_dict

    config = dataclasses.replace(case.config, dtype=dtype)
    with tempfile.TemporaryDirectory() as folder:
        save_adapter(folder, config, case.params)
        with open(os.path.join(folder, CONFIG_FILE), encoding="utf-8") as f:
            loaded = config_from_dict(json.load(f))
        tensors = load_file(os.path.join(folder, WEIGHTS_FILE))
    row = check_mlp(case, dtype, params=tensors, label=f"ckpt/np->torch/{case.name}")
    if loaded != config:
        row.fail("the config read back differs from the config saved")
    wrong = sorted(n for n, t in tensors.items() if t.dtype != torch_dtype(dtype))
    if wrong:
        row.fail(f"tensors {wrong} not stored as {dtype}")
    if row.passed:
        row.note = "qlora_np.save_adapter -> json + safetensors.torch.load_file -> AdaptedMLP"
    return row


def check_torch_to_np(case, dtype="float64", lr=1e-3):
    """PyTorch takes one Adam step, saves with its own writer; NumPy loads and reproduces it."""
    import torch
    from safetensors.torch import save_file

    model = torch_model(case, dtype)
    x, e, cot = torch_inputs(case, dtype)
    opt = torch.optim.Adam(model.trainable_params().values(), lr=lr)
    (model(x, e, skip_prior=case.skip_prior) * cot).sum().backward()
    opt.step()
    tensors = {n: p.detach().contiguous() for n, p in model.trainable_params().items()}
    config = dataclasses.replace(case.config, dtype=dtype)
    with tempfile.TemporaryDirectory() as folder:
        save_file(tensors, os.path.join(folder, WEIGHTS_FILE),
                  metadata={"config": config.to_json()})
        with open(os.path.join(folder, CONFIG_FILE), "w", encoding="utf-8") as f:
            f.write(config.to_json() + "\n")
        loaded_config, params = load_adapter(folder)
    label = f"ckpt/torch->np/{case.name}"
    if loaded_config != config:
        return Row(label, dtype).fail("the config read back differs from the config saved")
    lossy = sorted(n for n in tensors if not np.array_equal(params[n], tensors[n].numpy()))
    moved = dataclasses.replace(case, params={k: v.astype(np.float64) for k, v in params.items()},
                                ref={})
    _, adapter = adapted_forward(moved.config, moved.base, moved.params, moved.x, moved.e)
    margin = top_k_margin(adapter.routing, moved.config.top_k)
    if margin < MIN_MARGIN:
        return Row(label, dtype).fail(f"the Adam step left a top-k margin of {margin:.2g} "
                                      f"< {MIN_MARGIN}: pick another case")
    row = check_mlp(moved, dtype, label=label)
    if lossy:
        row.fail(f"tensors {lossy} changed in the round trip")
    elif row.passed:
        row.note = "torch Adam step -> safetensors.torch.save_file -> qlora_np.load_adapter, exact"
    return row
