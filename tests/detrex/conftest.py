"""detrex-marked tests: detrex's root on sys.path, and detrex's MSDA usable (else skip with the reason).

detrex's ``projects`` (DINO, H-DETR, Deformable DETR) is a namespace package that is
importable only with the detrex root on ``sys.path`` (contract §4): taken from the
environment variable DETREX_ROOT, else from ``detrex.__file__`` (editable installs).
"""
import importlib.util
import os
import sys

import pytest
import torch


@pytest.fixture(scope="session")
def detrex_root():
    if importlib.util.find_spec("detrex") is None or importlib.util.find_spec("detectron2") is None:
        pytest.skip("needs detectron2 and detrex")
    import detrex

    root = os.environ.get("DETREX_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(detrex.__file__)))
    if not os.path.isdir(os.path.join(root, "projects", "dino")):
        pytest.skip(f"detrex's projects/ not found under {root!r}; set DETREX_ROOT to the detrex checkout")
    if root not in sys.path:
        sys.path.insert(0, root)
    return root


@pytest.fixture(scope="session")
def detrex_msda(detrex_root):
    """detrex's MultiScaleDeformableAttention; skips when it is the ImportError dummy
    that detrex installs if its ``_C`` extension failed to build."""
    from detrex.layers import MultiScaleDeformableAttention

    try:
        MultiScaleDeformableAttention(embed_dim=32, num_heads=4, num_levels=4, num_points=2, batch_first=True)
    except ImportError as exc:
        pytest.skip(f"detrex's MultiScaleDeformableAttention is unavailable (detrex._C did not build): {exc}")
    return MultiScaleDeformableAttention


@pytest.fixture(autouse=True)
def _two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)
