import os
os.environ.setdefault("MPLBACKEND", "Agg")
import pytest
import torch


def pytest_configure(config):
    for m in ("slow: minutes of compute or a GPU",
              "reliability: determinism, exact resume, NaN guards, AMP + R1",
              "browser: explorers rendered in a headless browser"):
        config.addinivalue_line("markers", m)


@pytest.fixture(autouse=True, scope='session')
def _one_torch_thread():
    "The tests use tiny networks: one thread is fastest, and on a shared 2-core CPU two OpenMP threads can be 10x slower."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
