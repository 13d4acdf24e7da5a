"""Cases shared by the parity test modules, built once per test session."""

import functools

from . import mlp


@functools.lru_cache(maxsize=None)
def grid():
    """name -> Case of the MLP grid (NumPy references are cached on the cases)."""
    return {c.name: c for c in mlp.grid_cases()}


GRID_NAMES = [s.name for s in mlp.grid_specs()]
