"""Adapter checkpoints (SPEC §10): round trip, validation on load, atomic saves."""

import json
import os

import numpy as np
import pytest

from builders import build
from qlora_np import CheckpointError, LoraConfig, bind_to_mlp, load_adapter, save_adapter
from qlora_np.checkpoint import CONFIG_FILE, WEIGHTS_FILE, serialize_safetensors


@pytest.fixture
def saved(tmp_path):
    config, _, params, _, _ = build(d_instruction=4, top_k=2, block_size=2)
    save_adapter(tmp_path / "ck", config, params)
    return tmp_path / "ck", config, params


def test_round_trip_is_bitwise(saved):
    path, config, params = saved
    config2, params2 = load_adapter(path)
    assert config2 == config
    assert sorted(params2) == sorted(params)
    for k in params:
        assert params2[k].dtype == np.float64
        assert params2[k].tobytes() == np.asarray(params[k]).tobytes()


def test_lora_round_trip(tmp_path):
    config = bind_to_mlp(LoraConfig(rank=2), [2, 3, 1])
    params = {"layers.0.lora_A": np.ones((2, 2)), "layers.0.lora_B": np.ones((3, 2)),
              "layers.1.lora_A": np.ones((2, 3)), "layers.1.lora_B": np.ones((1, 2))}
    save_adapter(tmp_path, config, params)
    assert load_adapter(tmp_path)[0] == config


def _rewrite(path, mutate):
    """Rewrite the weights file with `mutate(tensors)` applied, keeping the stored config."""
    from safetensors import safe_open
    with safe_open(path / WEIGHTS_FILE, framework="numpy") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    mutate(tensors)
    (path / WEIGHTS_FILE).write_bytes(serialize_safetensors(tensors, meta))


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.pop("bank.keys"), r"missing tensor\(s\) \['bank.keys'\]"),
    (lambda t: t.update(extra=np.ones(2)), r"unexpected tensor\(s\) \['extra'\]"),
    (lambda t: t.update({"router.bias": np.ones(3)}),
     r"tensor 'router.bias': expected shape \(16,\), got \(3,\)"),
    (lambda t: t.update({"bank.atoms": t["bank.atoms"].astype(np.float32)}),
     "tensor 'bank.atoms': expected dtype float64, got float32"),
])
def test_load_names_the_offending_tensor(saved, mutate, message):
    path, _, _ = saved
    _rewrite(path, mutate)
    with pytest.raises(CheckpointError, match=message):
        load_adapter(path)


def test_truncated_and_missing_files(saved):
    path, _, _ = saved
    data = (path / WEIGHTS_FILE).read_bytes()
    (path / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_adapter(path)
    os.remove(path / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match=f"'{WEIGHTS_FILE}' not found"):
        load_adapter(path)


def test_files_from_different_saves_are_detected(saved):
    path, config, _ = saved
    d = json.loads((path / CONFIG_FILE).read_text())
    d["temperature"] = 2.0
    (path / CONFIG_FILE).write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="different saves"):
        load_adapter(path)


def test_failed_save_leaves_previous_checkpoint_intact(saved):
    path, config, params = saved
    before = {f: (path / f).read_bytes() for f in (CONFIG_FILE, WEIGHTS_FILE)}
    broken = dict(params, **{"bank.keys": np.full_like(params["bank.keys"], np.nan)})
    with pytest.raises(CheckpointError, match="NaN"):
        save_adapter(path, config, broken)
    wrong = dict(params)
    wrong.pop("router.bias")
    with pytest.raises(CheckpointError, match="missing"):
        save_adapter(path, config, wrong)
    assert {f: (path / f).read_bytes() for f in before} == before
    assert sorted(os.listdir(path)) == sorted(before)   # no temporary files left behind
    load_adapter(path)


def test_float32_checkpoint(tmp_path):
    import dataclasses
    config, _, params, _, _ = build()
    config32 = dataclasses.replace(config, dtype="float32")
    save_adapter(tmp_path, config32, params)
    _, loaded = load_adapter(tmp_path)
    assert all(v.dtype == np.float32 for v in loaded.values())


def test_failure_between_the_two_renames_restores_the_old_weights(saved, monkeypatch):
    import qlora_np.checkpoint as ck
    path, config, params = saved
    before = {f: (path / f).read_bytes() for f in (CONFIG_FILE, WEIGHTS_FILE)}
    real = ck.atomic_write_bytes

    def failing(target, data):
        if str(target).endswith(CONFIG_FILE):
            raise OSError("disk full")
        return real(target, data)
    monkeypatch.setattr(ck, "atomic_write_bytes", failing)
    changed = dict(params, **{"bank.keys": params["bank.keys"] + 1.0})
    with pytest.raises(OSError, match="disk full"):
        ck.save_adapter(path, config, changed)
    monkeypatch.undo()
    assert {f: (path / f).read_bytes() for f in before} == before
