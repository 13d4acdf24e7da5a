"""The adapter injected into tiny transformers models vs NumPy, layer by layer; checkpoints."""

import pytest

pytest.importorskip("transformers")

from parity import transformer  # noqa: E402


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(transformer.HF_CASES))
def test_injected_model_matches_numpy(name, dtype):
    row = transformer.check_hf(name, dtype)
    assert row.passed, f"{row.note}; {sorted(row.details.items(), key=lambda kv: -kv[1].used)[:3]}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(transformer.HF_CASES))
def test_injected_checkpoints_interchange(name, dtype):
    rows = transformer.check_hf_checkpoints(name, dtype)
    assert len(rows) == 2
    assert all(r.passed for r in rows), [r.note for r in rows]


@pytest.mark.parametrize("name", sorted(transformer.HF_CASES))
def test_static_merge_matches_numpy(name):
    row = transformer.check_hf_merge(name)
    assert row.passed, row.note
