"""Every parameter gets a gradient in every variant (DDP's find_unused_parameters=False).

The encoders are built with their own initialisation (not perturbed), as at the
first training step, and in training mode with detrex's dropouts. The loss is a
random projection of the output: a plain ``out.sum()`` would give the final
LayerNorm's inputs a zero gradient.
"""
import os
import tempfile

import pytest
import torch
import torch.distributed as dist

from ..helpers.modules import missing_gradients
from .helpers import PAPER_VARIANTS_4, VARIANTS_5, make_encoder, make_inputs, num_levels_of

CASES = [(v, a, m) for v in PAPER_VARIANTS_4 + VARIANTS_5 for a in ("kda", "msda") for m in ("released", "paper")]
CASES += [("standard", a, "released") for a in ("kda", "msda")]


def backward(encoder, inputs, seed=0):
    out = encoder(**inputs)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (out * weights.to(out.dtype)).sum().backward()
    return out


@pytest.mark.parametrize("variant,attention,mode", CASES)
def test_every_parameter_gets_a_gradient(variant, attention, mode):
    encoder = make_encoder(variant, attention=attention, low_query_mode=mode, perturb=False, train=True,
                           dtype=torch.float32, attn_dropout=0.1, ffn_dropout=0.1)
    inputs = make_inputs(num_levels_of(variant), dtype=torch.float32, requires_grad=True)
    backward(encoder, inputs)
    assert missing_gradients(encoder) == []
    assert inputs["query"].grad.abs().sum() > 0
    assert inputs["query_pos"].grad is not None
    if attention == "kda":
        # With MSDA at its initialisation query_pos reaches only sampling_offsets and
        # attention_weights, whose weights start at zero: its gradient is exactly zero there.
        assert inputs["query_pos"].grad.abs().sum() > 0


@pytest.mark.parametrize("placement", ["tokens", "samples"])
@pytest.mark.parametrize("attention,extra", [("kda", {}), ("kda", {"use_key_proj": True}), ("msda", {})])
@pytest.mark.parametrize("mode", ["released", "paper"])
def test_every_parameter_gets_a_gradient_every_placement(mode, attention, extra, placement):
    encoder = make_encoder("H3L1-(2+1)x3", attention=attention, low_query_mode=mode, value_placement=placement,
                           perturb=False, train=True, dtype=torch.float32, post_norm=True, **extra)
    if extra:
        assert encoder.layers[0].self_attn.key_proj is not None
    backward(encoder, make_inputs(4, dtype=torch.float32))
    assert missing_gradients(encoder) == []


def test_missing_gradients_detects_an_unused_parameter():
    encoder = make_encoder("H3L1-(2+1)x3", perturb=False, train=True, dtype=torch.float32)
    encoder.unused = torch.nn.Parameter(torch.zeros(3))
    backward(encoder, make_inputs(4, dtype=torch.float32))
    assert missing_gradients(encoder) == ["unused"]


@pytest.fixture
def gloo_group():
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", init_method="file://" + os.path.join(tmp, "store"), rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()


@pytest.mark.parametrize("variant,mode", [("H3L1-(2+1)x3", "paper"), ("H2L2-(2+1)x3", "released")])
def test_ddp_without_find_unused_parameters(gloo_group, variant, mode):
    """Three DDP steps with find_unused_parameters=False (DDP raises at the next
    step if a parameter went without a gradient)."""
    encoder = make_encoder(variant, low_query_mode=mode, perturb=False, train=True, dtype=torch.float32)
    model = torch.nn.parallel.DistributedDataParallel(encoder, find_unused_parameters=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    inputs = make_inputs(4, dtype=torch.float32)
    for step in range(3):
        optimizer.zero_grad()
        backward(model, inputs, seed=step)
        optimizer.step()
