"""`torch.autograd.gradcheck` on the PyTorch adapter: analytic vs finite-difference gradients.

The function checked is the adapted MLP's output as a function of the input `x` and of every
trainable parameter (via `torch.func.functional_call`), in float64. Top-k selection is a discrete
step, so gradcheck is only meaningful where no finite-difference perturbation (eps = 1e-6) can
change the chosen set: the cases come from `mlp.build_case`, whose top-k margins are >= 1e-3.
"""

from __future__ import annotations

from .metrics import Row
from .mlp import torch_inputs, torch_model

EPS, ATOL, RTOL = 1e-6, 1e-5, 1e-3     # torch.autograd.gradcheck's defaults, stated


def check_gradcheck(case, fast_mode=False):
    """One row: gradcheck of y(x, theta) for the case, float64 on CPU.

    The full Jacobian, entry by entry (two forward passes per input scalar, ~1 s per case);
    `fast_mode=True` compares one random directional derivative per input tensor instead."""
    import torch
    from torch.func import functional_call

    model = torch_model(case, "float64")
    names = list(model.trainable_params())
    x, e, _ = torch_inputs(case, "float64")
    x.requires_grad_(True)
    tensors = [p.detach().clone().requires_grad_(True) for p in model.trainable_params().values()]

    def f(x, *ps):
        return functional_call(model, dict(zip(names, ps)), (x, e),
                               {"skip_prior": case.skip_prior})

    row = Row(f"gradcheck/{case.name}", "float64", "cpu")
    n_inputs = x.numel() + sum(p.numel() for p in tensors)
    row.note = (f"torch.autograd.gradcheck{' (fast mode)' if fast_mode else ''} over x and "
                f"{len(names)} parameters ({n_inputs} scalars)")
    try:
        torch.autograd.gradcheck(f, (x, *tensors), eps=EPS, atol=ATOL, rtol=RTOL,
                                 fast_mode=fast_mode)
    except Exception as err:   # GradcheckError names the input and the mismatching Jacobian
        row.fail(str(err).splitlines()[0])
    return row
