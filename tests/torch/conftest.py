import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
