"""The ONNX translations of ``lite_detr::kda_forward`` / ``msda_forward`` against the PyTorch reference.

Oracle: ``kda_reference`` / ``msda_reference`` (the paper's equations with
``grid_sample``), run on the same inputs as the exported graph in ONNX Runtime.
Each case exports one module that calls KDA with a shared key, KDA with a
separate key and MSDA, so one export covers all three. The sweep covers levels
1–5, points 1–8, heads 1–8, head dims 1–32, one value head shared by all heads
(Mv = 1), locations outside the map, both samplers and opsets 16/17/18.
Plugin graphs are run by ONNX's reference evaluator with NVIDIA's plugin written
from its equations (tests/export/helpers.py).
"""
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from onnx import TensorProto  # noqa: E402
pytest.importorskip("onnxscript")

from lite_detr_plugin import ops  # noqa: E402
from lite_detr_plugin.export import TRT_DOMAIN, TRT_PLUGIN, export_module  # noqa: E402

from .helpers import level_layout, run_onnxruntime, run_reference_evaluator  # noqa: E402

pytestmark = pytest.mark.skipif(not ops.is_loaded(), reason="needs the compiled op library")


class ThreeOps(torch.nn.Module):
    """KDA (key ≡ value), KDA (separate key) and MSDA on fixed level shapes."""

    def __init__(self, shapes):
        super().__init__()
        self.shapes = shapes

    def layout(self):
        spatial_shapes = torch.as_tensor(self.shapes, dtype=torch.long)
        return spatial_shapes, torch.cat([spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]])

    def forward(self, query, key, value, locations, weights):
        spatial_shapes, starts = self.layout()
        return (
            ops.kda(query, None, value, spatial_shapes, starts, locations),
            ops.kda(query, key, value, spatial_shapes, starts, locations),
            ops.msda(value, spatial_shapes, starts, locations, weights),
        )


def make_inputs(shapes, batch, num_query, heads, value_heads, points, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    num_tokens = sum(h * w for h, w in shapes)
    levels = len(shapes)
    # About 30% of the locations fall outside [0, 1] (zeros there), some far outside.
    locations = torch.rand(batch, num_query, heads, levels, points, 2, generator=g) * 1.6 - 0.3
    locations[:, :1, :, :, :1] = torch.tensor([-4.0, 7.0])
    return (
        torch.randn(batch, num_query, heads, dim, generator=g),
        torch.randn(batch, num_tokens, value_heads, dim, generator=g),
        torch.randn(batch, num_tokens, value_heads, dim, generator=g),
        locations,
        torch.rand(batch, num_query, heads, levels, points, generator=g).softmax(-1),
    )


def references(shapes, query, key, value, locations, weights):
    spatial_shapes, starts = level_layout(shapes)
    return (
        ops.kda_reference(query, None, value, spatial_shapes, starts, locations),
        ops.kda_reference(query, key, value, spatial_shapes, starts, locations),
        ops.msda_reference(value, spatial_shapes, starts, locations, weights),
    )


# (level shapes, batch, Nq, M, Mv, P, D)
CASES = {
    "L1-P1-M1-D1": ([[5, 7]], 1, 3, 1, 1, 1, 1),
    "L2-P8-M8-D4": ([[6, 5], [3, 3]], 2, 5, 8, 8, 8, 4),
    "L3-P3-M3-D8-shared": ([[5, 6], [3, 3], [2, 1]], 2, 7, 3, 1, 3, 8),
    "L4-P4-M8-D32": ([[8, 10], [4, 5], [2, 3], [1, 2]], 1, 6, 8, 8, 4, 32),
    "L5-P2-M2-D16-shared": ([[9, 9], [5, 5], [3, 3], [2, 2], [1, 1]], 1, 4, 2, 1, 2, 16),
    "L4-P5-M4-D3": ([[1, 9], [7, 1], [2, 2], [1, 1]], 3, 2, 4, 4, 5, 3),
}
OPSETS = (16, 17, 18)


@pytest.mark.parametrize("sampler", ["grid_sample", "gather"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_decomposed_ops_match_reference_in_onnxruntime(case, sampler):
    shapes, batch, num_query, heads, value_heads, points, dim = CASES[case]
    opset = OPSETS[(list(CASES).index(case) + (sampler == "gather")) % 3]  # every opset, both samplers
    inputs = make_inputs(shapes, batch, num_query, heads, value_heads, points, dim)
    model = export_module(ThreeOps(shapes).eval(), inputs, opset=opset, sampler=sampler)
    assert model.opset_import[0].version == opset
    node_types = {node.op_type for node in model.graph.node}
    assert ("GridSample" in node_types) == (sampler == "grid_sample")
    assert ("GatherND" in node_types) == (sampler == "gather")
    expected = references(shapes, *inputs)
    outputs = run_onnxruntime(model, inputs)
    names = ("kda (key = value)", "kda (separate key)", "msda")
    for name, out, ref in zip(names, outputs, expected):
        assert out.shape == ref.shape, name
        torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


def test_plugin_graph_matches_reference_and_is_well_formed():
    """KDA and MSDA through TensorRT's plugin, shared and per-head values, levels outside the map."""
    import onnx

    for case in ("L3-P3-M3-D8-shared", "L2-P8-M8-D4"):
        shapes, batch, num_query, heads, value_heads, points, dim = CASES[case]
        inputs = make_inputs(shapes, batch, num_query, heads, value_heads, points, dim, seed=3)
        model = export_module(ThreeOps(shapes).eval(), inputs, deformable="trt_plugin")
        onnx.checker.check_model(model, full_check=True)
        node_types = {node.op_type for node in model.graph.node}
        assert not node_types & {"GridSample", "GatherND", "GatherElements"}, node_types
        plugins = [node for node in model.graph.node if node.op_type == TRT_PLUGIN]
        levels = len(shapes)
        # KDA: one call per level sampling the keys and one weighted sum of the values; MSDA: one.
        assert len(plugins) == 2 * (levels + 1) + 1
        assert all(node.domain == TRT_DOMAIN and not node.attribute for node in plugins)
        outputs = run_reference_evaluator(model, inputs)
        for out, ref in zip(outputs, references(shapes, *inputs)):
            torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)


def test_plugin_node_inputs_are_int32_with_plugin_shapes():
    import onnx
    from onnx import TensorProto

    shapes, batch, num_query, heads, value_heads, points, dim = CASES["L4-P4-M8-D32"]
    inputs = make_inputs(shapes, batch, num_query, heads, value_heads, points, dim)

    class MSDAOnly(ThreeOps):
        def forward(self, query, key, value, locations, weights):
            spatial_shapes, starts = self.layout()
            return ops.msda(value, spatial_shapes, starts, locations, weights)

    for opset in (17, 18):
        model = export_module(MSDAOnly(shapes).eval(), inputs, deformable="trt_plugin", opset=opset)
        inferred = onnx.shape_inference.infer_shapes(model)
        infos = {v.name: v.type.tensor_type for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
        initializers = {init.name: init for init in inferred.graph.initializer}
        (plugin,) = [node for node in model.graph.node if node.op_type == TRT_PLUGIN]
        assert plugin.domain == TRT_DOMAIN and len(plugin.input) == 5 and len(plugin.output) == 1
        assert any(entry.domain == TRT_DOMAIN for entry in model.opset_import)

        def dtype_and_shape(name):
            if name in initializers:
                return initializers[name].data_type, list(initializers[name].dims)
            info = infos[name]
            return info.elem_type, [d.dim_value for d in info.shape.dim]

        value, spatial_shapes, starts, locations, weights = (dtype_and_shape(name) for name in plugin.input)
        levels = len(shapes)
        assert value == (TensorProto.FLOAT, [batch, sum(h * w for h, w in shapes), heads, dim])
        assert spatial_shapes == (TensorProto.INT32, [levels, 2])
        assert starts == (TensorProto.INT32, [levels])
        assert locations == (TensorProto.FLOAT, [batch, num_query, heads, levels, points, 2])
        assert weights == (TensorProto.FLOAT, [batch, num_query, heads, levels, points])


def test_bad_choices_raise_value_errors_naming_the_argument():
    inputs = make_inputs([[3, 3]], 1, 2, 1, 1, 1, 2)
    for kwargs, word in (({"opset": 20}, "opset"), ({"sampler": "nearest"}, "sampler"),
                         ({"deformable": "plugin"}, "deformable")):
        with pytest.raises(ValueError, match=word):
            export_module(ThreeOps([[3, 3]]), inputs, **kwargs)


def test_float16_inputs_accumulate_in_float32():
    """fp16 inputs: samples, logits, softmax and sums in float32 inside the graph, output back in fp16."""
    shapes, batch, num_query, heads, value_heads, points, dim = CASES["L2-P8-M8-D4"]
    inputs = make_inputs(shapes, batch, num_query, heads, value_heads, points, dim)
    half = tuple(t.half() for t in inputs)
    model = export_module(ThreeOps(shapes).eval(), half, sampler="gather")
    types = float_types(model)
    softmaxes = [node for node in model.graph.node if node.op_type == "Softmax"]
    assert len(softmaxes) == 2 and all(types[node.input[0]] == TensorProto.FLOAT for node in softmaxes)
    outputs = run_onnxruntime(model, half)
    for out, ref in zip(outputs, references(shapes, *inputs)):
        assert out.dtype == torch.float16
        torch.testing.assert_close(out.float(), ref, atol=5e-3, rtol=5e-3)


@pytest.mark.parametrize("case", ["L3-P3-M3-D8-shared", "L2-P8-M8-D4"])
def test_float16_conversion_keeps_softmax_and_kda_logits_float32(case):
    """``convert_float16`` of a float32 graph (what ``--fp16`` does): fp16 sampling, fp32 logits and softmax.
    Per-head values (Mv = M) make KDA's logits as ReduceSum(Mul(keys, queries)) in GridSample's layout."""
    from lite_detr_plugin.export import convert_float16

    shapes, batch, num_query, heads, value_heads, points, dim = CASES[case]
    inputs = make_inputs(shapes, batch, num_query, heads, value_heads, points, dim)
    model = convert_float16(export_module(ThreeOps(shapes).eval(), inputs))
    types = float_types(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    softmaxes = [node for node in model.graph.node if node.op_type == "Softmax"]
    assert len(softmaxes) == 2
    for softmax in softmaxes:  # back from the softmax to the q·k MatMul: all float32
        assert types[softmax.input[0]] == TensorProto.FLOAT
        node, seen = producers[softmax.input[0]], 0
        while node.op_type not in ("MatMul", "ReduceSum") and seen < 6:
            node, seen = producers[node.input[0]], seen + 1
        assert node.op_type in ("MatMul", "ReduceSum") and types[node.output[0]] == TensorProto.FLOAT
        if node.op_type == "ReduceSum":  # the products it sums are float32 too
            assert types[node.input[0]] == TensorProto.FLOAT
    grids = [node for node in model.graph.node if node.op_type == "GridSample"]
    assert grids and all(types[node.output[0]] == TensorProto.FLOAT16 for node in grids)
    outputs = run_onnxruntime(model, inputs)  # float32 in and out (keep_io_types)
    for out, ref in zip(outputs, references(shapes, *inputs)):
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("case", ["L3-P3-M3-D8-shared", "L2-P8-M8-D4"])
def test_grid_sample_graph_keeps_queries_innermost(case):
    """GridSample's samples are [B*Mv, P', Nq, ...] with the queries innermost, and whatever multiplies them
    (queries, weights) spans that whole axis: ONNX Runtime then broadcasts over rows of Nq values instead
    of rows of P (the layout that made the decomposed attention slower than eager)."""
    shapes, batch, num_query, heads, value_heads, points, dim = CASES[case]
    num_query = 11  # a size no other axis has
    inputs = make_inputs(shapes, batch, num_query, heads, value_heads, points, dim)
    model = export_module(ThreeOps(shapes).eval(), inputs)
    dims = value_shapes(model)
    grids = [node for node in model.graph.node if node.op_type == "GridSample"]
    assert len(grids) >= 2 * len(shapes)  # values and the separate key (the exporter merges repeats)
    rows = points if value_heads == heads else heads * points
    for node in grids:
        assert dims[node.input[1]] == [batch * value_heads, rows, num_query, 2], node.name
    sample_names = {node.output[0] for node in grids}
    for node in model.graph.node:  # in graph order: follow the samples through reshapes
        if node.op_type == "Reshape" and node.input[0] in sample_names:
            sample_names.add(node.output[0])
    consumers = [node for node in model.graph.node if set(node.input) & sample_names]
    multiplies = [node for node in consumers if node.op_type == "Mul"]
    assert multiplies
    for node in multiplies:
        assert all(dims[name][-1] == num_query for name in node.input), (node.name, [dims[n] for n in node.input])


def value_shapes(model):
    """{value name: static dims} after shape inference."""
    return {info.name: [d.dim_value for d in info.type.tensor_type.shape.dim] for info in inferred_infos(model)}

def float_types(model):
    """{value name: ONNX elem type} after shape inference."""
    return {info.name: info.type.tensor_type.elem_type for info in inferred_infos(model)}


def inferred_infos(model):
    """The ValueInfos of every value, input and output of ``model`` after ONNX shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    return list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
