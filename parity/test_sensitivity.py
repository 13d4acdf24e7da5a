"""The parity checks can fail: each plants a small, realistic bug and expects a FAIL row.

A suite that passes everything proves nothing; these tests show that every kind of check in
`python -m parity` notices the mistakes a port makes (a slightly wrong weight, a flipped route,
a wrong reference, the eps of Adam in the wrong place, the prior broadcast the wrong way).
"""

import dataclasses

import numpy as np
import pytest
import torch

from parity import mlp, report, training
from parity.fixtures import grid
from parity.metrics import Row


def test_a_tiny_parameter_error_fails_float64():
    case = grid()["attn_prior_top2_g2"]
    params = dict(case.params)
    params["layers.1.lora_A"] = params["layers.1.lora_A"] * (1 + 1e-7)
    row = mlp.check_mlp(case, "float64", params=params)
    assert row.status == "FAIL"
    assert mlp.check_mlp(case, "float64").passed


def test_a_flipped_route_fails_on_routing():
    case = grid()["none_noprior_top2_g1"]
    params = dict(case.params)
    keys = params["bank.keys"].copy()
    params["bank.keys"] = keys[[1, 0, 2, 3, 4]]     # atoms 0 and 1 trade keys: routes move
    row = mlp.check_mlp(case, "float64", params=params)
    same, total = map(int, row.routing.split("/"))
    assert row.status == "FAIL" and same < total


def test_a_wrong_reference_fails():
    case = dataclasses.replace(grid()["n1_attn_g2"], ref={})
    ref = mlp.numpy_reference(case)
    ref["y"] = ref["y"] + 1e-9
    assert mlp.check_mlp(case, "float64").status == "FAIL"
    assert mlp.check_mlp(case, "float32").passed     # 1e-9 is within float32's tolerance


class _EpsInsideSqrt(torch.optim.Optimizer):
    """Adam with eps inside the square root: a common porting slip."""

    def __init__(self, params, lr, betas, eps, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                s = self.state[p]
                s["t"] = s.get("t", 0) + 1
                s["m"] = b1 * s.get("m", torch.zeros_like(p)) + (1 - b1) * p.grad
                s["v"] = b2 * s.get("v", torch.zeros_like(p)) + (1 - b2) * p.grad ** 2
                m_hat = s["m"] / (1 - b1 ** s["t"])
                v_hat = s["v"] / (1 - b2 ** s["t"])
                p -= group["lr"] * m_hat / torch.sqrt(v_hat + group["eps"])


def test_adam_rule_notices_eps_placement(monkeypatch):
    monkeypatch.setattr(torch.optim, "Adam", _EpsInsideSqrt)
    row = training.check_adam_rule()
    assert row.status == "FAIL" and row.grad_name.startswith("adam:")


def test_transformer_check_notices_a_wrong_prior_broadcast():
    pytest.importorskip("transformers")
    from parity import transformer

    name = "llama_q_v_down_g2_prior_top2"
    qmodel, ids, instruction, e_rows = transformer.build_hf(name)
    records, grads, log = transformer.capture(qmodel, ids, instruction)
    params = {k: v.astype(np.float64) for k, v in qmodel.adapter_params().items()}
    good = transformer.compare_hf(Row("ok"), qmodel, params, records, grads, log, e_rows)
    assert good.passed, good.note
    # np.tile gives row b*seq + t the instruction of sequence (b*seq + t) % batch: wrong.
    e = instruction.double().numpy()
    tiled = np.tile(e, (transformer.SEQ, 1))
    bad = transformer.compare_hf(Row("bad"), qmodel, params, records, grads, log, tiled)
    assert bad.status == "FAIL"


def test_exit_code_and_table(monkeypatch, capsys):
    from parity.__main__ import main

    def fake_sections(**kwargs):
        return [("ok", lambda: [Row("fine")]),
                ("bad", lambda: [Row("broken").fail("planted")]),
                ("crash", lambda: 1 / 0)]
    monkeypatch.setattr(report, "sections", fake_sections)
    assert main([]) == 1
    text = capsys.readouterr().out
    assert "| broken" in text and "FAIL" in text and "crash (crashed)" in text
    assert "wall time" in text
    monkeypatch.setattr(report, "sections", lambda **kw: [("ok", lambda: [Row("fine")])])
    assert main([]) == 0
