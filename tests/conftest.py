"""Shared pytest configuration: the `cuda` and `detrex` markers skip cleanly where unavailable."""
import importlib.util

import pytest
import torch


def _has_detrex() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("detectron2", "detrex"))


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    has_detrex = _has_detrex()
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_detrex = pytest.mark.skip(reason="needs detectron2 and detrex")
    for item in items:
        # get_closest_marker, not item.keywords: a parameter id such as "cuda" is a keyword too.
        if item.get_closest_marker("cuda") is not None and not has_cuda:
            item.add_marker(skip_cuda)
        if item.get_closest_marker("detrex") is not None and not has_detrex:
            item.add_marker(skip_detrex)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state (the input helpers use their own generators)."""
    torch.manual_seed(0)
    yield
