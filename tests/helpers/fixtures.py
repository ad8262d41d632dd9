"""Fixtures shared by several test folders; a folder's conftest.py imports the ones it uses."""
import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """The inputs are tiny: intra-op threads only add contention on a shared CPU
    (10 ms vs 100-1000 ms per encoder forward on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
