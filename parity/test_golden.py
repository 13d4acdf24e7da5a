"""PyTorch reproduces every golden file (SPEC §10), in float64 and float32."""

import os

import pytest

from parity.golden_files import check_golden, golden_case, golden_paths
from qlora_np.golden import CASES

PATHS = golden_paths()


def test_every_golden_case_has_a_file():
    assert [os.path.basename(p)[:-len(".safetensors")] for p in PATHS] == sorted(CASES)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("path", PATHS, ids=os.path.basename)
def test_torch_reproduces_golden(path, dtype):
    row = check_golden(path, dtype)
    assert row.passed, f"{row.note}; {sorted(row.details.items(), key=lambda kv: -kv[1].used)[:3]}"


def test_golden_reference_is_the_file_not_a_fresh_numpy_run():
    case = golden_case(PATHS[0])
    assert case.ref["y"] is not None and set(case.ref["grads"]) == set(case.params)
