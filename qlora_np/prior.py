"""Instruction prior: a frozen text embedder and the trained prior over atoms (SPEC §3.6, §4).

The built-in embedder is dependency-free and deterministic, so that the same instruction gives the
same vector on every machine and in every port. Its exact definition (ports must follow it):

1. Normalise: Unicode NFKC, then `str.lower()`, then every run of whitespace becomes one space,
   leading and trailing whitespace is removed, and one space is added at each end:
   `"  Shift  LEFT "` -> `" shift left "`. A text that is empty after stripping stays `""`.
2. Character n-grams for n = 2, 3, 4, 5 (`NGRAM_SIZES`): every substring of n code points of the
   normalised text, in order; a text shorter than n gives none of that size.
3. Hash each n-gram's UTF-8 bytes with 32-bit FNV-1a: `h = 2166136261`; for each byte `c`:
   `h = ((h XOR c) * 16777619) mod 2**32`.
4. Feature `h mod d_e` gets `+1` if bit 31 of `h` is 0, else `-1` (signed feature hashing).
5. L2-normalise the vector; an all-zero vector (e.g. from an empty text) stays zero.

The result has dtype float64. The prior itself is `log pi = log_softmax(e W_pi^T + b_pi)`, added to
the routing logits as `lambda * log pi` (SPEC §3.6).
"""

from __future__ import annotations

import re
import unicodedata

import autograd.numpy as np

NGRAM_SIZES = (2, 3, 4, 5)
FNV_OFFSET = 2166136261
FNV_PRIME = 16777619


def normalize_instruction(text):
    """Step 1 of the embedder: NFKC, lower-case, collapse whitespace, pad with one space."""
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()
    return " " + text + " " if text else ""


def fnv1a_32(data: bytes) -> int:
    """32-bit FNV-1a hash of a byte string."""
    h = FNV_OFFSET
    for c in data:
        h = ((h ^ c) * FNV_PRIME) & 0xFFFFFFFF
    return h


def embed_instruction(text, dim):
    """Hashed character n-gram embedding of one instruction: a float64 vector of length `dim`."""
    if not isinstance(text, str):
        raise TypeError(f"instruction: expected a str, got {type(text).__name__}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim: expected an integer >= 1, got {dim!r}")
    norm = normalize_instruction(text)
    vec = [0.0] * dim
    for n in NGRAM_SIZES:
        for start in range(len(norm) - n + 1):
            h = fnv1a_32(norm[start:start + n].encode("utf-8"))
            vec[h % dim] += -1.0 if h >> 31 else 1.0
    out = np.array(vec, dtype=np.float64)
    length = float(np.sqrt(np.sum(out * out)))
    return out / length if length > 0 else out


def embed_instructions(texts, dim):
    """Embed a list of instructions: `(len(texts), dim)` float64, one row per text.

    Repeated texts are embedded once (a batch usually repeats a handful of instructions)."""
    if isinstance(texts, str):
        raise TypeError("instructions: expected a list of str, got a single str")
    cache = {}
    for t in texts:
        if t not in cache:
            cache[t] = embed_instruction(t, dim)
    if not cache:
        return np.zeros((0, dim))
    return np.stack([cache[t] for t in texts])


def log_softmax(a):
    """Row-wise log-softmax, stable: `a - max - log(sum(exp(a - max)))`."""
    shifted = a - np.max(a, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def log_prior(params, e):
    """SPEC §3.6: `log pi = log_softmax(e W_pi^T + b_pi)`, shape `(n, N)`."""
    return log_softmax(e @ params["prior.weight"].T + params["prior.bias"])  # (n, N)


def init_prior(config, rng):
    """SPEC §6: `W_pi ~ N(0, 0.01^2)`, `b_pi = 0`: the prior starts (almost) uniform and learns."""
    return {
        "prior.weight": 0.01 * rng.standard_normal((config.n_atoms, config.d_instruction)),
        "prior.bias": np.zeros(config.n_atoms),
    }
