"""Bad inputs get a clear error naming the argument, the expected and the actual value."""

import numpy as np
import pytest

from builders import build
from qlora_np import InputError, fit, forward, init_adapter, init_mlp, QLoRAConfig


def test_wrong_input_width():
    config, base, params, x, e = build()
    with pytest.raises(InputError, match=r"x: expected shape \(n, 3\), got \(7, 4\)"):
        forward(config, base, params, np.ones((7, 4)))
    with pytest.raises(InputError, match=r"x: expected a 2-D array, got shape \(3,\)"):
        forward(config, base, params, np.ones(3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs(bad):
    config, base, params, x, _ = build(d_instruction=3)
    x = x.copy()
    x[2, 1] = bad
    with pytest.raises(InputError, match="x: expected finite values, got 1 NaN/inf"):
        forward(config, base, params, x, skip_prior=True)
    config, base, params, x, e = build(d_instruction=3)
    e = e.copy()
    e[0, 0] = bad
    with pytest.raises(InputError, match="instruction: expected finite values"):
        forward(config, base, params, x, e)


def test_instruction_without_prior_and_prior_without_instruction():
    config, base, params, x, _ = build()
    with pytest.raises(InputError, match="no instruction prior"):
        forward(config, base, params, x, ["go"] * len(x))
    config, base, params, x, e = build(d_instruction=3)
    with pytest.raises(InputError, match=r"instruction: expected 7 instructions .* got None"):
        forward(config, base, params, x)
    with pytest.raises(InputError, match="expected 7 rows of width 3"):
        forward(config, base, params, x, e[:5])
    with pytest.raises(InputError, match="expected 7 rows of width 3"):
        forward(config, base, params, x, ["only one"])
    y = forward(config, base, params, x, ["a", "b", "c", "d", "e", "f", "g"])
    assert y.shape == (7, 2)


def test_unbound_config_and_bad_layer_sizes():
    with pytest.raises(InputError, match="bound config"):
        init_adapter(QLoRAConfig(), 0)
    with pytest.raises(ValueError, match="layer_sizes"):
        init_mlp([3], np.random.default_rng(0))


def test_fit_checks_targets_and_steps():
    config, base, params, x, _ = build()
    with pytest.raises(ValueError, match=r"y: expected shape \(7, d_out\)"):
        fit(config, base, params, x, np.ones((6, 2)), steps=1)
    with pytest.raises(ValueError, match="steps"):
        fit(config, base, params, x, np.ones((7, 2)), steps=-1)
