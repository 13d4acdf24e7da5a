import json

import pytest

from qlora_np import ConfigError, LoraConfig, QLoRAConfig, config_from_dict


@pytest.mark.parametrize("kwargs, key", [
    (dict(rank=0), "rank"), (dict(rank=-1), "rank"), (dict(rank=2.5), "rank"),
    (dict(n_atoms=0), "n_atoms"), (dict(top_k=0), "top_k"), (dict(n_atoms=4, top_k=5), "top_k"),
    (dict(d_key=0), "d_key"), (dict(summary="mean"), "summary"),
    (dict(summary="none", d_summary=4), "d_summary"), (dict(d_summary=0), "d_summary"),
    (dict(block_size=0), "block_size"), (dict(temperature=0.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"), (dict(d_instruction=-1), "d_instruction"),
    (dict(kl_weight=-0.1), "kl_weight"), (dict(kl_weight=0.5), "kl_weight"),
    (dict(norm_eps=0), "norm_eps"), (dict(alpha=float("inf")), "alpha"),
    (dict(dtype="float16"), "dtype"),
])
def test_bad_config_values_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        QLoRAConfig(**kwargs)
    message = str(err.value)
    assert f"'{key}'" in message and "expected" in message and "got" in message


def test_defaults_resolve():
    c = QLoRAConfig(rank=3, n_atoms=6)
    assert c.top_k == 6 and c.alpha == 3.0 and c.scale == 1.0 and c.d_summary == 8
    assert QLoRAConfig(summary="none").d_summary == 0


@pytest.mark.parametrize("blocks, word", [([[0], [2]], "missing [1]"),
                                          ([[0, 1], [1, 2]], "repeated [1]"),
                                          ([[1], [0], [2]], "in order"),
                                          ([[0, 1, 2], []], "non-empty")])
def test_block_list_must_cover_each_layer_once(blocks, word):
    with pytest.raises(ConfigError, match="'blocks'") as err:
        QLoRAConfig().bind(["0", "1", "2"], [(4, 2), (4, 4), (1, 4)], blocks)
    assert word in str(err.value)


def test_bind_resolves_consecutive_blocks_with_short_last():
    c = QLoRAConfig(block_size=2).bind(["a", "b", "c"], [(4, 2), (4, 4), (1, 4)])
    assert c.blocks == ((0, 1), (2,)) and c.block_of_layer == {0: 0, 1: 0, 2: 1}


def test_layer_shapes_must_match_names():
    with pytest.raises(ConfigError, match="layer_shapes"):
        QLoRAConfig().bind(["0", "1"], [(4, 2)])
    with pytest.raises(ConfigError, match=r"layer_shapes\[0\]"):
        QLoRAConfig().bind(["0"], [(4, 0)])


@pytest.mark.parametrize("config", [
    QLoRAConfig(rank=2, d_instruction=5, kl_weight=0.1, extra={"base_model": "m"}).bind(
        ["0", "1"], [(3, 2), (1, 3)]),
    LoraConfig(rank=3).bind(["x.q"], [(4, 4)]),
])
def test_json_round_trip(config):
    assert config_from_dict(json.loads(config.to_json())) == config


def test_from_dict_rejects_unknown_and_wrong_version():
    d = QLoRAConfig().to_dict()
    with pytest.raises(ConfigError, match="unknown keys \\['banana'\\]"):
        config_from_dict(dict(d, banana=1))
    with pytest.raises(ConfigError, match="format_version"):
        config_from_dict(dict(d, format_version=99))
    with pytest.raises(ConfigError, match="adapter_type"):
        config_from_dict(dict(d, adapter_type="dora"))
