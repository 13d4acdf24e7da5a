"""Adapter checkpoints (SPEC §10): `adapter_config.json` + `adapter_model.safetensors` in a folder.

Writes are atomic: everything is serialised in memory first (so a bad value fails before the disk
is touched), each file is written to a temporary name in the same folder, flushed to disk, and
renamed over the old one. The safetensors metadata repeats the config JSON, so that loading can
tell a folder whose two files come from different saves.

Loading validates against the config: every expected tensor is present, none is extra, each has the
expected shape and the config's dtype. Every failure names the tensor and what was expected.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as onp
from safetensors.numpy import load as st_load

from .config import ConfigError, LoraConfig, QLoRAConfig, config_from_dict
from .params import expected_shapes

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not match its config."""


def atomic_write_bytes(path, data: bytes):
    """Write `data` to `path` atomically: temporary file in the same folder, fsync, rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def serialize_safetensors(tensors, metadata=None) -> bytes:
    """Safetensors bytes with a deterministic header: tensors in sorted name order, sorted keys.

    The safetensors library's own writer orders the metadata entries arbitrarily, so two saves of
    the same tensors can differ byte for byte; this writer makes equal inputs give equal files.
    Format: 8-byte little-endian header length, JSON header padded with spaces to a multiple of 8,
    then the raw little-endian tensor bytes in header order.
    """
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, offset = [], 0
    for name in sorted(tensors):
        arr = onp.ascontiguousarray(tensors[name])
        dtype = {"float64": "F64", "float32": "F32", "int64": "I64", "bool": "BOOL"}.get(
            str(arr.dtype))
        if dtype is None:
            raise CheckpointError(f"tensor '{name}': dtype {arr.dtype} cannot be saved")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def _check_params(config, params):
    """Check names, shapes, dtypes and finiteness of `params` against `config`."""
    if not isinstance(params, dict):
        raise CheckpointError(f"params: expected a dict of arrays, got {type(params).__name__}")
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    if missing:
        raise CheckpointError(f"checkpoint: missing tensor(s) {missing} expected by the config")
    if extra:
        raise CheckpointError(f"checkpoint: unexpected tensor(s) {extra} not in the config")
    for name, shape in expected.items():
        value = params[name]
        if tuple(value.shape) != tuple(shape):
            raise CheckpointError(f"tensor '{name}': expected shape {tuple(shape)}, "
                                  f"got {tuple(value.shape)}")
        if str(value.dtype) != config.dtype:
            raise CheckpointError(f"tensor '{name}': expected dtype {config.dtype}, "
                                  f"got {value.dtype}")


def save_adapter(directory, config, params):
    """Save `params` (canonical names, SPEC §2) and the bound `config` to `directory`.

    Arrays are cast to `config.dtype`. Non-finite values are refused. The previous checkpoint in
    `directory`, if any, survives any error: everything is checked and serialised before the disk
    is touched, each file is replaced atomically, and a failure between the two replacements puts
    the old weights back.
    """
    if not isinstance(config, (QLoRAConfig, LoraConfig)) or not config.is_bound:
        raise ConfigError("config: expected a bound QLoRAConfig or LoraConfig "
                          "(call config.bind(layer_names, layer_shapes) first)")
    arrays = {}
    for name, value in params.items():
        value = onp.ascontiguousarray(onp.asarray(value, dtype=config.dtype))
        if not onp.all(onp.isfinite(value)):
            raise CheckpointError(f"tensor '{name}': contains NaN or inf; refusing to save")
        arrays[name] = value
    _check_params(config, arrays)
    config_json = config.to_json()
    weights = serialize_safetensors(arrays, {"config": config_json})
    os.makedirs(directory, exist_ok=True)
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    previous = None
    if os.path.isfile(weights_path):
        with open(weights_path, "rb") as f:
            previous = f.read()
    atomic_write_bytes(weights_path, weights)
    try:
        atomic_write_bytes(os.path.join(directory, CONFIG_FILE), (config_json + "\n").encode())
    except BaseException:
        # Put the old weights back so the folder stays one consistent save. (If the process dies
        # right here instead, loading reports the mismatch; it never loads a mixed pair.)
        if previous is not None:
            atomic_write_bytes(weights_path, previous)
        raise


def load_adapter(directory):
    """Load `(config, params)` from `directory`, validating every tensor against the config."""
    config_path = os.path.join(directory, CONFIG_FILE)
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise CheckpointError(f"checkpoint: file '{os.path.basename(path)}' not found in "
                                  f"'{directory}'")
    with open(config_path, encoding="utf-8") as f:
        try:
            config_dict = json.load(f)
        except json.JSONDecodeError as err:
            raise CheckpointError(f"checkpoint: '{CONFIG_FILE}' is not valid JSON ({err})") from None
    config = config_from_dict(config_dict)
    with open(weights_path, "rb") as f:
        data = f.read()
    try:
        params = st_load(data)
    except Exception as err:  # SafetensorError or a decoding error: truncated or corrupt file
        raise CheckpointError(f"checkpoint: '{WEIGHTS_FILE}' is unreadable (truncated or "
                              f"corrupt): {err}") from None
    metadata = _safetensors_metadata(data)
    if metadata.get("config") is not None and json.loads(metadata["config"]) != config_dict:
        raise CheckpointError(f"checkpoint: '{CONFIG_FILE}' and '{WEIGHTS_FILE}' come from "
                              "different saves (the config stored with the weights differs)")
    _check_params(config, params)
    return config, params


def _safetensors_metadata(data: bytes):
    """The `__metadata__` dict of a safetensors byte string (its JSON header)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]).get("__metadata__", {}) or {}
