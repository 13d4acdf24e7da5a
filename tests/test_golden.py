"""The committed golden vectors (SPEC §10) are reproduced by the implementation."""

import glob
import os

import numpy as np
import pytest
from autograd import grad

from qlora_np import adapted_forward, embed_instructions
from qlora_np.golden import CASES, DEFAULT_DIR, load_golden, write_all

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(glob.glob(os.path.join(ROOT, DEFAULT_DIR, "*.safetensors")))


def test_there_are_at_least_ten_golden_files_one_per_case():
    assert len(FILES) >= 10
    assert [os.path.basename(f)[:-12] for f in FILES] == sorted(CASES)


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_reproduces_golden(path):
    config, layer_sizes, t, texts = load_golden(path)
    base = {k[7:]: v for k, v in t.items() if k.startswith("params.base.")}
    params = {k[7:]: v for k, v in t.items() if k.startswith("params.") and k[7:] not in base}
    x, cot = t["inputs.x"], t["inputs.cotangent"]
    e = t.get("inputs.instruction")
    if texts is not None:   # the built-in embedder reproduces the stored embeddings exactly
        assert np.array_equal(embed_instructions(texts, config.d_instruction), e)
    y, adapter = adapted_forward(config, base, params, x, e)
    # Same machine: bit for bit. Another CPU or BLAS may reassociate sums: 1e-12 relative.
    np.testing.assert_allclose(y, t["outputs.y"], rtol=1e-12, atol=1e-14)
    assert len(adapter.routing) == len(config.blocks)
    for b, r in enumerate(adapter.routing):
        np.testing.assert_allclose(r["weights"], t[f"outputs.routing.{b}"], rtol=1e-12, atol=1e-14)
    grads = grad(lambda p: np.sum(adapted_forward(config, base, p, x, e)[0] * cot))(params)
    assert sorted(grads) == sorted(k[6:] for k in t if k.startswith("grads."))
    for k, g in grads.items():
        np.testing.assert_allclose(g, t[f"grads.{k}"], rtol=1e-10, atol=1e-13, err_msg=k)


def test_regeneration_is_deterministic_and_matches_committed(tmp_path):
    paths = write_all(tmp_path)
    for path in paths:
        committed = os.path.join(ROOT, DEFAULT_DIR, os.path.basename(path))
        a, b = load_golden(path), load_golden(committed)
        assert a[0] == b[0] and a[1] == b[1] and a[3] == b[3]
        for k in b[2]:
            np.testing.assert_allclose(a[2][k], b[2][k], rtol=1e-12, atol=1e-14, err_msg=k)
    again = write_all(tmp_path / "again")
    for p, q in zip(paths, again):
        assert open(p, "rb").read() == open(q, "rb").read()
