"""A TensorRT engine from an exported ONNX graph, with the ``tensorrt`` Python package.

NVIDIA's plugins (``MultiscaleDeformableAttnPlugin_TRT`` among them) are
registered with ``init_libnvinfer_plugins`` before parsing, so plugin graphs
(``deformable="trt_plugin"``) build as well as decomposed ones. Without the
package or without a CUDA GPU it stops with one line
(:class:`~lite_detr_plugin.export.onnx_export.ExportError`) before doing anything.
"""
import os
from typing import Optional, Tuple

from .onnx_export import ExportError


def tensorrt_unavailable_reason() -> Optional[str]:
    """Why no engine can be built here, or None when TensorRT and a CUDA GPU are present."""
    import torch

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt Python package is not installed (pip install tensorrt, on a machine with an NVIDIA GPU)"
    if not torch.cuda.is_available():
        return "no CUDA GPU is available on this machine"
    return None


def build_trt_engine(
    onnx_path: str,
    engine_path: str,
    *,
    fp16: bool = False,
    batch_range: Optional[Tuple[int, int, int]] = None,
    workspace_gib: float = 4.0,
) -> str:
    """Builds and writes a serialized engine; returns ``engine_path``.

    ``batch_range`` = (min, opt, max) for a graph exported with a dynamic batch.
    """
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise ExportError(f"cannot build a TensorRT engine: {reason}")
    if not os.path.isfile(onnx_path):
        raise ExportError(f"cannot build a TensorRT engine: {onnx_path} does not exist")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None:  # required before TensorRT 10, deprecated (implicit) after
        flags |= 1 << int(explicit)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    dynamic = [network.get_input(i) for i in range(network.num_inputs) if -1 in tuple(network.get_input(i).shape)]
    if dynamic:
        low, opt, high = batch_range or (1, 1, 8)
        profile = builder.create_optimization_profile()
        for tensor in dynamic:
            shape = tuple(tensor.shape)
            profile.set_shape(tensor.name, (low,) + shape[1:], (opt,) + shape[1:], (high,) + shape[1:])
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    os.makedirs(os.path.dirname(os.path.abspath(engine_path)), exist_ok=True)
    with open(engine_path, "wb") as handle:
        handle.write(serialized)
    return engine_path
