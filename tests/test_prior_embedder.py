"""The built-in hashed character n-gram embedder (SPEC §4), as documented in qlora_np/prior.py."""

import numpy as np
import pytest

from qlora_np.prior import embed_instruction, embed_instructions, fnv1a_32, normalize_instruction


def test_fnv1a_reference_values():
    # Published FNV-1a 32-bit test vectors.
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_normalisation():
    assert normalize_instruction("  Shift\tLEFT  by\n0.3 ") == " shift left by 0.3 "
    assert normalize_instruction("ＡＢ") == " ab "     # NFKC folds full-width letters


def test_embedding_by_hand():
    # " a " has 2-grams " a", "a " and the 3-gram " a "; nothing longer.
    dim = 16
    expected = np.zeros(dim)
    for gram in (" a", "a ", " a "):
        h = fnv1a_32(gram.encode())
        expected[h % dim] += -1.0 if h >> 31 else 1.0
    expected /= np.linalg.norm(expected)
    assert np.array_equal(embed_instruction("A", dim), expected)


def test_properties():
    e = embed_instructions(["double the frequency", "Double  the FREQUENCY", "halve it"], 32)
    assert e.shape == (3, 32) and e.dtype == np.float64
    assert np.array_equal(e[0], e[1])
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0)
    assert not np.allclose(e[0], e[2])
    assert np.array_equal(embed_instruction("", 8), np.zeros(8))
    with pytest.raises(TypeError, match="instructions"):
        embed_instructions("one string", 8)
    with pytest.raises(ValueError, match="dim"):
        embed_instruction("x", 0)
