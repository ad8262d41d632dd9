"""``torch.compile(fullgraph=True)`` and ``torch.export.export`` of the attention modules: no graph
break, the compiled op in the graph, same result as eager (and the same gradients)."""
import pytest
import torch

from lite_detr_plugin import KeyAwareDeformableAttention, MultiScaleDeformableAttention, ops

SHAPES = ((4, 3), (2, 2))


def _module_and_inputs(cls, placement):
    torch.manual_seed(0)
    module = cls(embed_dim=16, num_heads=2, num_levels=2, num_points=2, batch_first=True, dropout=0.0,
                 value_placement=placement)
    spatial_shapes = torch.tensor(SHAPES)
    areas = spatial_shapes.prod(1)
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    S = int(areas.sum())
    g = torch.Generator().manual_seed(1)
    inputs = dict(
        query=torch.randn(2, 5, 16, generator=g),
        value=torch.randn(2, S, 16, generator=g),
        reference_points=torch.rand(2, 5, 2, 2, generator=g),
        spatial_shapes=spatial_shapes,
        level_start_index=level_start_index,
        key_padding_mask=torch.zeros(2, S, dtype=torch.bool),
    )
    return module, inputs


CASES = [(KeyAwareDeformableAttention, "tokens"), (KeyAwareDeformableAttention, "samples"),
         (MultiScaleDeformableAttention, "auto")]
IDS = ["kda-tokens", "kda-samples", "msda-auto"]


@pytest.mark.parametrize("cls, placement", CASES, ids=IDS)
def test_compile_fullgraph_matches_eager(cls, placement):
    assert ops.has_kernel("cpu"), ops.build_info()
    torch._dynamo.reset()
    module, inputs = _module_and_inputs(cls, placement)
    expected = module(**inputs)
    expected.sum().backward()
    expected_grads = {n: p.grad.clone() for n, p in module.named_parameters()}
    module.zero_grad()
    out = torch.compile(module, fullgraph=True, backend="aot_eager")(**inputs)
    out.sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for name, p in module.named_parameters():
        torch.testing.assert_close(p.grad, expected_grads[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("cls, placement", CASES, ids=IDS)
def test_export_matches_eager(cls, placement):
    module, inputs = _module_and_inputs(cls, placement)
    with torch.no_grad():
        expected = module(**inputs)
        program = torch.export.export(module, (), kwargs=inputs)
        out = program.module()(**inputs)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any(t.startswith("lite_detr.") for t in targets), targets
