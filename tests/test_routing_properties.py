"""Property tests of routing (SPEC §9.2-9.3) over random logits, k, temperatures and priors."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qlora_np.bank import apply_routed_operator
from qlora_np.prior import log_softmax
from qlora_np.routing import route

finite = st.floats(-30, 30, allow_nan=False, allow_infinity=False)


@st.composite
def routing_case(draw):
    n = draw(st.integers(1, 6))
    N = draw(st.integers(1, 7))
    r = draw(st.integers(1, 4))
    k = draw(st.integers(1, N))
    logits = draw(arrays(np.float64, (n, N), elements=finite))
    prior = draw(st.one_of(st.none(), arrays(np.float64, (n, N), elements=finite)))
    tau = draw(st.floats(0.05, 5.0))
    lam = draw(st.floats(0.0, 3.0))
    atoms = draw(arrays(np.float64, (N, r, r), elements=st.floats(-5, 5)))
    return logits, k, tau, prior, lam, atoms


@settings(max_examples=150, deadline=None)
@given(routing_case())
def test_rows_on_simplex_at_most_k_and_operator_in_hull(case):
    logits, k, tau, prior, lam, atoms = case
    log_pi = None if prior is None else log_softmax(prior)
    out = route(logits, k, tau, log_pi, lam)
    w = out["weights"]
    assert np.all(np.isfinite(w)) and np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert np.all((w > 0).sum(axis=1) <= k)
    C = np.einsum("nj,jpq->npq", w, atoms)
    for order in ("fro", 2):
        bound = max(np.linalg.norm(m, order) for m in atoms)
        assert all(np.linalg.norm(c, order) <= bound * (1 + 1e-12) + 1e-12 for c in C)
    u = np.ones((len(w), atoms.shape[1]))
    np.testing.assert_allclose(apply_routed_operator(w, atoms, u), np.einsum("npq,nq->np", C, u),
                               rtol=1e-10, atol=1e-10)
