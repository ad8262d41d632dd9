"""Helpers of the export tests: small op calls, ONNX Runtime runs, and NVIDIA's plugin written in numpy.

The plugin's semantics (TensorRT/plugin/multiscaleDeformableAttnPlugin: Deformable
DETR's MSDA, bilinear with zeros outside, ``align_corners=False``) are written
here from the op's equations with ``torch.nn.functional.grid_sample``, so that
ONNX's ReferenceEvaluator can run a plugin graph and it can be checked against
the PyTorch reference of the ops.
"""
import numpy as np
import torch

from lite_detr_plugin.ops import msda_reference


def level_layout(shapes):
    spatial_shapes = torch.tensor(shapes, dtype=torch.int64)
    level_start_index = torch.cat([spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]])
    return spatial_shapes, level_start_index


def run_onnxruntime(model, inputs):
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {arg.name: tensor.numpy() for arg, tensor in zip(session.get_inputs(), inputs)}
    return [torch.from_numpy(out) for out in session.run(None, feeds)]


def plugin_op_class():
    """An ``onnx.reference`` op for ``trt.plugins::MultiscaleDeformableAttnPlugin_TRT``."""
    from onnx.reference.op_run import OpRun

    from lite_detr_plugin.export import TRT_DOMAIN

    class MultiscaleDeformableAttnPlugin_TRT(OpRun):
        op_domain = TRT_DOMAIN

        def _run(self, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
            assert spatial_shapes.dtype == np.int32 and level_start_index.dtype == np.int32
            out = msda_reference(
                torch.from_numpy(np.array(value)),
                torch.from_numpy(spatial_shapes.astype(np.int64)),
                torch.from_numpy(level_start_index.astype(np.int64)),
                torch.from_numpy(np.array(sampling_locations)),
                torch.from_numpy(np.array(attention_weights)),
            )
            return (out.numpy(),)

    return MultiscaleDeformableAttnPlugin_TRT


def run_reference_evaluator(model, inputs):
    """Runs a graph (plugin nodes included) with ONNX's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(model, new_ops=[plugin_op_class()])
    feeds = {name: tensor.numpy() for name, tensor in zip(evaluator.input_names, inputs)}
    return [torch.from_numpy(np.asarray(out)) for out in evaluator.run(None, feeds)]
