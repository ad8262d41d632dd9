"""NVIDIA TensorRT's ``MultiscaleDeformableAttnPlugin_TRT`` as an ONNX node: its domain, name and schema.

KDA under ``trt_plugin``. The plugin only computes a weighted sum of bilinear
samples with *given* weights, and KDA's weights ``softmax(q·k/√d)`` need the
sampled keys first. Every sample therefore goes through the plugin and nothing
through GridSample (which is what the plugin is there to avoid): the keys are
read with one plugin call per level in which every sample is its own query row
with a single point of weight 1 (so the plugin returns the bilinear sample
itself); the logits ``q·k·scale`` and the softmax are standard ops in float32;
the weighted sum of the values is one more plugin call with those weights.
The whole-layer decomposition was the alternative; it reintroduces GridSample
(or a gather TensorRT runs slower than its plugin).
"""

#: The custom domain of the plugin node. TensorRT's ONNX parser looks plugins up
#: by op type (its fallback plugin importer) and ignores the domain; a non-default
#: domain keeps ``onnx.checker`` from looking for a standard schema.
TRT_DOMAIN = "trt.plugins"
TRT_PLUGIN = "MultiscaleDeformableAttnPlugin_TRT"


def register_plugin_schema() -> None:
    """Declares the plugin node to ONNX (once per process): its inputs, output and types.

    Lets onnxscript emit it and ``onnx.checker`` check its arity and input types
    (int32 ``spatial_shapes`` / ``level_start_index``; float32 or float16 tensors).
    """
    import onnx
    from onnx.defs import OpSchema

    if onnx.defs.has(TRT_PLUGIN, TRT_DOMAIN):
        return
    param = OpSchema.FormalParameter
    schema = OpSchema(
        TRT_PLUGIN,
        TRT_DOMAIN,
        1,
        doc="NVIDIA TensorRT's multi-scale deformable attention plugin (TensorRT/plugin/multiscaleDeformableAttnPlugin)",
        inputs=[
            param("value", "T", "[N, S, M, D]"),
            param("spatial_shapes", "I", "[L, 2] (H, W)"),
            param("level_start_index", "I", "[L]"),
            param("sampling_locations", "T", "[N, Lq, M, L, P, 2]"),
            param("attention_weights", "T", "[N, Lq, M, L, P]"),
        ],
        outputs=[param("output", "T", "[N, Lq, M*D]")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], ""), ("I", ["tensor(int32)"], "")],
    )
    onnx.defs.register_schema(schema)
