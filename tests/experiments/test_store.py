"""The results store: atomic appends, reload, duplicate and corrupt files."""

import json
import os

import pytest

from qlora_np.experiments import store as S


def rec(seed, method="lora"):
    return {"task": "t", "method": method, "seed": seed, "config_hash": "abc",
            "final_test_mse": 0.1 * (seed + 1)}


def test_append_reload_and_skip(tmp_path):
    st = S.ResultStore(str(tmp_path))
    st.append(rec(0))
    st.append(rec(1))
    again = S.ResultStore(str(tmp_path))
    assert len(again) == 2 and again.has(("t", "lora", 1, "abc"))
    assert not again.has(("t", "lora", 2, "abc"))
    assert again.get(("t", "lora", 1, "abc"))["final_test_mse"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="already stored"):
        again.append(rec(1))
    assert json.load(open(st.path))["runs"][0]["seed"] == 0


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    st = S.ResultStore(str(tmp_path))
    st.append(rec(0))
    before = open(st.path).read()

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(S.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        st.append(rec(1))
    assert open(st.path).read() == before
    assert os.listdir(tmp_path) == ["results.json"]
    assert len(st) == 1       # the failed record is not counted as stored


def test_corrupt_file_is_reported(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        S.ResultStore(str(tmp_path))


def test_config_hash_is_order_independent_and_sensitive():
    assert S.config_hash({"a": 1, "b": [1, 2]}) == S.config_hash({"b": [1, 2], "a": 1})
    assert S.config_hash({"a": 1}) != S.config_hash({"a": 2})
