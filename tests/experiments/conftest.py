"""Shared helpers of the experiment-suite tests: tiny tasks that run in well under a second."""

import numpy as np
import pytest

from qlora_np.experiments._blas import limit_blas_threads

limit_blas_threads(1)


def tiny_task(seed, n=40):
    """A 1-D task small enough for a few training steps: sin source, shifted target."""
    rng = np.random.default_rng(seed)
    xp = rng.uniform(-1, 1, (60, 1))
    xt = rng.uniform(-1, 1, (n, 1))
    xe = np.linspace(-1, 1, 30)[:, None]
    f = lambda x: np.sin(3 * x) + 0.3 * (x > 0)
    return {"x_pretrain": xp, "y_pretrain": np.sin(3 * xp), "x_train": xt,
            "y_train": f(xt) + 0.1 * rng.standard_normal((n, 1)), "x_test": xe, "y_test": f(xe)}


@pytest.fixture
def tiny_suite():
    from qlora_np.experiments.presets import QLORA
    from qlora_np.experiments.runner import Suite, TaskSpec
    task = TaskSpec(label="tiny", fn=tiny_task, describe={"name": "tiny"},
                    methods=("lora", "lora_matched", "qlora"))
    return Suite(tasks=(task,), seeds=(0, 1), steps=6, lr=1e-2, hidden=(6, 6),
                 qlora=dict(QLORA, n_atoms=3, d_key=4), pretrain_steps=20, eval_points=3)
