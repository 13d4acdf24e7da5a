"""`--task FILE.py:FUNC`: load a user's own task and check what it returns.

`FUNC(seed: int)` must return a dict of NumPy arrays (docs/experiments.md, "Your own task"):

    x_pretrain (n_p, d_in)  y_pretrain (n_p, d_out)   source data for pretraining the base network
    x_train    (n, d_in)    y_train    (n, d_out)     target data (noisy) for fine-tuning
    x_test     (m, d_in)    y_test     (m, d_out)     target data (clean) for evaluation
    instructions_train  list of n strings   optional, one instruction per training row
    instructions_test   list of m strings   optional; required if instructions_train is given

A 1-D array of length n is read as a column (n, 1). Every problem raises `TaskError` with a
message that names the file, function, key, what was expected and what was found.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys

import numpy as np

from .tasks import REQUIRED_KEYS

OPTIONAL_KEYS = ("instructions_train", "instructions_test")
_PAIRS = (("x_pretrain", "y_pretrain"), ("x_train", "y_train"), ("x_test", "y_test"))


class TaskError(ValueError):
    """A user task cannot be loaded or returned something unusable."""


def parse_spec(spec):
    """'path/to/file.py:func' -> (path, func)."""
    if not isinstance(spec, str) or ":" not in spec:
        raise TaskError(f"--task: expected FILE.py:FUNC (e.g. my_task.py:make_task), got {spec!r}")
    path, func = spec.rsplit(":", 1)
    if not path or not func:
        raise TaskError(f"--task: expected FILE.py:FUNC with both parts non-empty, got {spec!r}")
    if not func.isidentifier():
        raise TaskError(f"--task: FUNC must be a Python function name, got {func!r} in {spec!r}")
    return path, func


def load_task(spec):
    """Import FUNC from FILE.py. Returns (function, description) where description holds the
    spec and a SHA-256 of the file, so that editing the file changes the runs' config hash."""
    path, func = parse_spec(spec)
    if not os.path.isfile(path):
        raise TaskError(f"--task: task file '{path}' not found (current directory: "
                        f"'{os.getcwd()}')")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    mod_name = f"_qlora_user_task_{digest}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise TaskError(f"--task: cannot import '{path}' as a Python module (is it a .py file?)")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's module failed at import time
        del sys.modules[mod_name]
        raise TaskError(f"--task: importing '{path}' failed: {type(e).__name__}: {e}") from e
    fn = getattr(module, func, None)
    if fn is None:
        defined = sorted(n for n, v in vars(module).items()
                         if inspect.isfunction(v) and not n.startswith("_"))
        raise TaskError(f"--task: task file '{path}' has no function '{func}' "
                        f"(functions defined there: {', '.join(defined) or 'none'})")
    if not callable(fn):
        raise TaskError(f"--task: '{func}' in '{path}' is a {type(fn).__name__}, "
                        "expected a function FUNC(seed: int) -> dict")
    name = os.path.splitext(os.path.basename(path))[0] + "." + func
    return fn, {"name": name, "spec": spec, "file_sha256": digest}


def _as_2d(where, key, value):
    if not isinstance(value, np.ndarray):
        raise TaskError(f"{where}: key '{key}' must be a NumPy array, got {type(value).__name__}")
    if value.dtype.kind not in "fiu":
        raise TaskError(f"{where}: key '{key}' must hold real numbers, got dtype {value.dtype}")
    if value.ndim == 1:
        value = value[:, None]
    if value.ndim != 2:
        raise TaskError(f"{where}: key '{key}' must have shape (n, d) or (n,), "
                        f"got shape {value.shape}")
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise TaskError(f"{where}: key '{key}' must be non-empty, got shape {value.shape}")
    if not np.all(np.isfinite(value)):
        raise TaskError(f"{where}: key '{key}' contains NaN or infinite values")
    return value.astype(np.float64)


def validate_task_data(data, where="task"):
    """Check a task's dict (keys, types, shapes) and return a normalised copy: float64 (n, d)
    arrays and lists of str. Extra keys of the built-in tasks (stages, task ids, extra test
    splits) are passed through unchecked."""
    if not isinstance(data, dict):
        raise TaskError(f"{where}: must return a dict of NumPy arrays, got {type(data).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise TaskError(f"{where}: missing key(s) {missing}; a task must return "
                        f"{list(REQUIRED_KEYS)} (optional: {list(OPTIONAL_KEYS)}); "
                        f"got keys {sorted(data)}")
    out = dict(data)
    for k in REQUIRED_KEYS:
        out[k] = _as_2d(where, k, data[k])
    for xk, yk in _PAIRS:
        if out[xk].shape[0] != out[yk].shape[0]:
            raise TaskError(f"{where}: '{xk}' has {out[xk].shape[0]} rows but '{yk}' has "
                            f"{out[yk].shape[0]}; they must have the same number of rows")
    d_in, d_out = out["x_pretrain"].shape[1], out["y_pretrain"].shape[1]
    for xk, yk in _PAIRS[1:]:
        if out[xk].shape[1] != d_in:
            raise TaskError(f"{where}: '{xk}' has {out[xk].shape[1]} input columns but "
                            f"'x_pretrain' has {d_in}; all x arrays must have the same width")
        if out[yk].shape[1] != d_out:
            raise TaskError(f"{where}: '{yk}' has {out[yk].shape[1]} output columns but "
                            f"'y_pretrain' has {d_out}; all y arrays must have the same width")
    given = [k for k in OPTIONAL_KEYS if k in data]
    if len(given) == 1:
        other = [k for k in OPTIONAL_KEYS if k not in data][0]
        raise TaskError(f"{where}: '{given[0]}' is given but '{other}' is not; "
                        "give both or neither")
    for k in given:
        split = k.split("_", 1)[1]
        texts = data[k]
        n = out[f"x_{split}"].shape[0]
        if isinstance(texts, np.ndarray):
            texts = texts.tolist()
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise TaskError(f"{where}: '{k}' must be a list of strings, one per row of "
                            f"'x_{split}'")
        if len(texts) != n:
            raise TaskError(f"{where}: '{k}' has {len(texts)} strings but 'x_{split}' has "
                            f"{n} rows; give one instruction per row")
        out[k] = list(texts)
    return out


def call_task(fn, seed, where="task"):
    """Run a task function for `seed` and validate what it returns."""
    try:
        data = fn(seed)
    except TaskError:
        raise
    except Exception as e:
        raise TaskError(f"{where}: calling it with seed={seed} raised "
                        f"{type(e).__name__}: {e}") from e
    return validate_task_data(data, where)
