"""``torch.compile(LiteEncoder, fullgraph=True)`` and ``torch.export.export`` see through the whole
encoder: no graph break (fullgraph raises on one), no data-dependent guard on the
low/high split (``LiteEncoder._num_low_tokens``), and the same result as eager, forward
and (compile) backward. No dynamo config flag is set here: a user must not need one.

A handful of cases on small shapes (compiling is slow on 2 cores); backend "aot_eager"
traces through dynamo and AOTAutograd (fake kernels, autograd formulas) without
inductor's C++ build.
"""
import pytest
import torch

from lite_detr_plugin import ops

from .helpers import make_encoder, make_inputs

CASES = [
    # (variant, attention, low_query_mode, value_placement)
    ("H3L1-(2+1)x1", "kda", "released", "tokens"),
    ("H3L1-(2+1)x1", "kda", "paper", "samples"),
    ("H2L2-(1+1)x1", "msda", "released", "auto"),
    ("H2L2-(1+1)x1", "msda", "paper", "output"),
    ("standard", "msda", "released", "tokens"),
]
IDS = ["-".join(c) for c in CASES]
ARG_NAMES = ("query", "query_pos", "query_key_padding_mask", "spatial_shapes", "reference_points",
             "level_start_index")


@pytest.fixture(autouse=True)
def _compiled_kernel():
    assert ops.has_kernel("cpu"), ops.build_info()


def _encoder_and_inputs(variant, attention, mode, placement):
    kwargs = dict(attention=attention, low_query_mode=mode, value_placement=placement)
    if variant == "standard":
        kwargs["num_layers"] = 2
    encoder = make_encoder(variant, dtype=torch.float32, **kwargs)
    inputs = make_inputs(encoder.num_feature_levels, dtype=torch.float32)
    return encoder, {k: inputs[k] for k in ARG_NAMES}


@pytest.mark.parametrize("variant, attention, mode, placement", CASES, ids=IDS)
def test_compile_fullgraph_matches_eager(variant, attention, mode, placement):
    torch._dynamo.reset()
    encoder, inputs = _encoder_and_inputs(variant, attention, mode, placement)
    query = inputs["query"].detach().requires_grad_()
    expected = encoder(**{**inputs, "query": query})
    expected.square().sum().backward()
    expected_grad = query.grad.clone()

    compiled = torch.compile(encoder, fullgraph=True, backend="aot_eager")
    query2 = inputs["query"].detach().requires_grad_()
    out = compiled(**{**inputs, "query": query2})
    out.square().sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(query2.grad, expected_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant, attention, mode, placement", CASES[:4], ids=IDS[:4])
def test_export_matches_eager(variant, attention, mode, placement):
    encoder, inputs = _encoder_and_inputs(variant, attention, mode, placement)
    with torch.no_grad():
        expected = encoder(**inputs)
        program = torch.export.export(encoder, (), kwargs=inputs)
        out = program.module()(**inputs)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert any(t.startswith(f"lite_detr.{attention}_forward") for t in targets), targets
