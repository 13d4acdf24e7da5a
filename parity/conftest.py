"""pytest setup for the parity suite: needs torch; runs torch on one thread (see report.py)."""

import pytest

pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch():
    from parity.report import single_thread
    with single_thread():
        yield
