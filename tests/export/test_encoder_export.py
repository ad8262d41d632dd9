"""Every LiteEncoder mode exports and matches eager in ONNX Runtime.

The encoder is called as detrex's transformers call it: ``spatial_shapes`` built
inside the forward from the feature sizes (so it is a constant of the graph),
``level_start_index`` from it, detrex's reference points, position embeddings
and padding mask (``lite_detr_plugin.encoders.inputs``). Oracle: the eager
encoder on the same inputs. Small sizes: C = 32, 4 heads, a 64×96 canvas; the
modes cycle through opsets 18, 17 and 16.
"""
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from lite_detr_plugin import LiteEncoder, ops  # noqa: E402
from lite_detr_plugin.encoders.inputs import detrex_encoder_kwargs  # noqa: E402
from lite_detr_plugin.export import TRT_PLUGIN, export_module  # noqa: E402

from .helpers import run_onnxruntime  # noqa: E402

pytestmark = pytest.mark.skipif(not ops.is_loaded(), reason="needs the compiled op library")


class EncoderCall(torch.nn.Module):
    """``encoder(...)`` with the level layout built in the forward, as detrex's transformers do."""

    def __init__(self, encoder, shapes):
        super().__init__()
        self.encoder = encoder
        self.shapes = shapes

    def forward(self, query, query_pos, reference_points, padding_mask):
        spatial_shapes = torch.as_tensor(self.shapes, dtype=torch.long, device=query.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        return self.encoder(
            query, query_pos=query_pos, spatial_shapes=spatial_shapes, reference_points=reference_points,
            level_start_index=level_start_index, query_key_padding_mask=padding_mask,
        )


def encoder_inputs(batch=1):
    kwargs = detrex_encoder_kwargs(canvas=(64, 96), batch_size=batch, embed_dim=32)
    inputs = (kwargs["query"], kwargs["query_pos"], kwargs["reference_points"], kwargs["query_key_padding_mask"])
    return inputs, kwargs["spatial_shapes"].tolist()


# (variant, attention, low_query_mode, value_placement, use_key_proj, sampler)
MODES = {
    "standard-msda": ("standard", "msda", "released", "tokens", False, "grid_sample"),
    "kda-released-tokens": ("H3L1-(1+1)x1", "kda", "released", "tokens", False, "grid_sample"),
    "kda-paper-samples": ("H3L1-(1+1)x1", "kda", "paper", "samples", False, "gather"),
    "kda-released-output-key_proj": ("H2L2-(1+1)x1", "kda", "released", "output", True, "grid_sample"),
    "msda-paper-auto": ("H3L1-(1+1)x1", "msda", "paper", "auto", False, "gather"),
    "msda-released-samples": ("H2L2-(1+1)x1", "msda", "released", "samples", False, "grid_sample"),
}


def build_encoder(variant, attention, low_query_mode, value_placement, use_key_proj):
    torch.manual_seed(0)
    kwargs = dict(num_layers=2) if variant == "standard" else {}
    if attention == "kda":
        kwargs["use_key_proj"] = use_key_proj
    encoder = LiteEncoder(embed_dim=32, num_heads=4, feedforward_dim=64, variant=variant, attention=attention,
                          low_query_mode=low_query_mode, value_placement=value_placement, num_points=2, **kwargs)
    with torch.no_grad():  # offsets large enough that samples leave the maps
        for layer in encoder.layers:
            layer.self_attn.sampling_offsets.weight.normal_(0, 0.5)
    return encoder.eval()


@pytest.mark.parametrize("mode", list(MODES), ids=list(MODES))
def test_encoder_mode_exports_and_matches_eager(mode):
    variant, attention, low_query_mode, value_placement, use_key_proj, sampler = MODES[mode]
    inputs, shapes = encoder_inputs()
    module = EncoderCall(build_encoder(variant, attention, low_query_mode, value_placement, use_key_proj), shapes)
    opset = (18, 17, 16)[list(MODES).index(mode) % 3]  # opset 16 decomposes the LayerNorms
    model = export_module(module.eval(), inputs, sampler=sampler, opset=opset)
    assert model.opset_import[0].version == opset
    fresh, _ = encoder_inputs()
    fresh = (fresh[0] + 0.5 * torch.randn_like(fresh[0]),) + fresh[1:]  # not the tracing input
    (out,) = run_onnxruntime(model, fresh)
    with torch.no_grad():
        expected = module(*fresh)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_lite_encoder_plugin_graph_has_no_grid_sample():
    import onnx

    inputs, shapes = encoder_inputs()
    module = EncoderCall(build_encoder("H3L1-(1+1)x1", "kda", "released", "tokens", False), shapes)
    model = export_module(module.eval(), inputs, deformable="trt_plugin")
    onnx.checker.check_model(model)
    types = [node.op_type for node in model.graph.node]
    assert "GridSample" not in types and TRT_PLUGIN in types


def test_export_traces_with_the_exported_placement_cost():
    """"auto" placements are chosen for decomposed sampling while tracing, and only then."""
    from lite_detr_plugin.layers.placement import active_cost

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(active_cost())
            return x * 2

    export_module(Probe().eval(), (torch.ones(2, 3),))
    assert seen and set(seen) == {"exported"}
    assert active_cost() == "measured"
