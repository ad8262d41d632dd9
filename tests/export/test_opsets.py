"""Opsets 16 and 17: the nodes ONNX's converter cannot take down (Split, Pad, LayerNormalization).

Oracle: the eager module, run on the same input as the converted graph in ONNX
Runtime. The module has what a whole detector has and the op sweep does not:
``torch.chunk`` with an uneven last chunk and ``torch.split`` (Split), ``F.pad``
(Pad) and LayerNorms over one and two axes, in float32 and float16.
"""
import pytest
import torch
from torch.nn import functional as F

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from lite_detr_plugin import ops  # noqa: E402
from lite_detr_plugin.export import export_module  # noqa: E402
from lite_detr_plugin.export.opsets import convert_opset  # noqa: E402

from .helpers import run_onnxruntime  # noqa: E402

pytestmark = pytest.mark.skipif(not ops.is_loaded(), reason="needs the compiled op library")


class DetectorBits(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(7)
        self.norm2d = torch.nn.LayerNorm([5, 7], eps=1e-3)
        with torch.no_grad():
            for norm in (self.norm, self.norm2d):
                norm.weight.normal_()
                norm.bias.normal_()

    def forward(self, x):  # x [B, 5, 7]
        a, b, c = x.chunk(3, dim=-1)  # sizes 3, 3, 1
        first, rest = torch.split(x, [2, 3], dim=1)
        padded = F.pad(x, (1, 2))
        return self.norm(x) + a.sum() * c, self.norm2d(x), first.mean() + rest, padded, b


@pytest.mark.parametrize("opset", [16, 17])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_converted_graph_matches_eager(opset, dtype):
    module = DetectorBits().eval().to(dtype)
    x = torch.randn(2, 5, 7).to(dtype)
    model = export_module(module, (x,), opset=opset)
    assert model.opset_import[0].version == opset and len(model.opset_import) == 1
    node_types = {node.op_type for node in model.graph.node}
    assert "Split" in node_types and "Pad" in node_types
    assert ("LayerNormalization" in node_types) == (opset == 17)
    fresh = torch.randn(2, 5, 7).to(dtype)
    with torch.no_grad():
        expected = module.float()(fresh.float())
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2
    for out, ref in zip(run_onnxruntime(model, (fresh,)), expected):
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), ref, atol=tolerance, rtol=tolerance)


def test_pad_of_selected_axes_is_refused_by_name():
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], name="pad_axes")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.array([1, 1], np.int64), "pads"),
                     numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(ValueError, match="pad_axes"):
        convert_opset(model, 17)
