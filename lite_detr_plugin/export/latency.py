"""Latency per module of a detrex detector (seed 003's Fig. 2): eager parts, ONNX Runtime / TensorRT totals.

Eager runs :class:`~lite_detr_plugin.export.wrapper.ExportWrapper`'s stages one
after the other and times each at its boundary (CUDA: events, synchronised at
every boundary; CPU: ``perf_counter``):

* ``backbone``: normalisation and the backbone;
* ``neck``: the input projections (detrex's ChannelMapper), masks and position embeddings;
* ``encoder``: ``transformer.encoder`` (timed by hooks inside the transformer call);
* ``decoder``: the rest of the transformer call (two-stage proposals, query selection, decoder);
* ``heads``: the last layer's class / box heads and the top-K post-processing.

``total`` is the wall time of the whole sequence, so the parts sum to it up to
the cost of the hooks. ONNX Runtime and TensorRT run the exported graph as one
call: only their total is measured. Medians over ``repeats`` after one warm-up.
"""
import statistics
import time
from typing import Callable, Dict, List

import torch

PARTS = ("backbone", "neck", "encoder", "decoder", "heads")


class _Clock:
    """Marks time points on a device: CUDA events, or perf_counter on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            torch.cuda.synchronize()
            return event
        return time.perf_counter()

    def ms(self, start, end) -> float:
        return start.elapsed_time(end) if self.cuda else (end - start) * 1e3


def eager_parts_once(wrapper, images: torch.Tensor) -> Dict[str, float]:
    """One timed forward of ``wrapper``: milliseconds per part and ``total``."""
    model = wrapper.model
    clock = _Clock(images.device)
    marks: Dict[str, object] = {}

    def encoder_pre(_module, _args, _kwargs=None):
        marks["encoder_start"] = clock.mark()

    def encoder_post(_module, _args, _output):
        marks["encoder_end"] = clock.mark()

    encoder = model.transformer.encoder
    handles = [encoder.register_forward_pre_hook(encoder_pre), encoder.register_forward_hook(encoder_post)]
    try:
        with torch.no_grad():
            start = clock.mark()
            x = model.normalizer(images.float()).to(wrapper.dtype)
            features = model.backbone(x)
            after_backbone = clock.mark()
            feats = model.neck(features)
            masks = [x.new_zeros((x.shape[0],) + tuple(f.shape[-2:]), dtype=torch.bool) for f in feats]
            positions = [model.position_embedding(m).to(wrapper.dtype) for m in masks]
            after_neck = clock.mark()
            state, layer, reference = wrapper.transformer(feats, masks, positions)
            after_transformer = clock.mark()
            logits, boxes = wrapper.heads(state, layer, reference)
            if wrapper.family == "h_deformable_detr":
                logits = logits[:, : model.num_queries_one2one]
                boxes = boxes[:, : model.num_queries_one2one]
            wrapper.select(logits, boxes, images.shape[-2], images.shape[-1])
            end = clock.mark()
    finally:
        for handle in handles:
            handle.remove()
    encoder_ms = clock.ms(marks["encoder_start"], marks["encoder_end"])
    return {
        "backbone": clock.ms(start, after_backbone),
        "neck": clock.ms(after_backbone, after_neck),
        "encoder": encoder_ms,
        "decoder": clock.ms(after_neck, after_transformer) - encoder_ms,
        "heads": clock.ms(after_transformer, end),
        "total": clock.ms(start, end),
    }


def eager_parts(wrapper, images: torch.Tensor, repeats: int = 3, progress: Callable[[], None] = None):
    """Median milliseconds per part (and of the total) over ``repeats`` after one warm-up."""
    eager_parts_once(wrapper, images)
    runs: List[Dict[str, float]] = []
    for _ in range(repeats):
        runs.append(eager_parts_once(wrapper, images))
        if progress is not None:
            progress()
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def onnxruntime_total(onnx_model, images: torch.Tensor, threads: int, repeats: int = 3,
                      progress: Callable[[], None] = None) -> float:
    """Median milliseconds of one ONNX Runtime (CPU provider) call."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: images.cpu().numpy()}
    session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
        if progress is not None:
            progress()
    return statistics.median(times)


def tensorrt_total(engine_path: str, images: torch.Tensor, repeats: int = 3, progress=None) -> float:
    """Median milliseconds of one TensorRT execution (CUDA events), outputs in torch CUDA tensors."""
    from .onnx_export import ExportError
    from .tensorrt import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise ExportError(f"cannot time TensorRT: {reason}")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    with open(engine_path, "rb") as handle:
        engine = trt.Runtime(logger).deserialize_cuda_engine(handle.read())
    context = engine.create_execution_context()
    images = images.cuda()
    buffers = {}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            context.set_input_shape(name, tuple(images.shape))
            buffers[name] = images
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        if name not in buffers:
            dtype = {trt.DataType.INT64: torch.int64, trt.DataType.INT32: torch.int32,
                     trt.DataType.HALF: torch.float16}.get(engine.get_tensor_dtype(name), torch.float32)
            buffers[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        context.set_tensor_address(name, buffers[name].data_ptr())
    stream = torch.cuda.current_stream()
    clock = _Clock(torch.device("cuda"))
    context.execute_async_v3(stream.cuda_stream)
    times = []
    for _ in range(repeats):
        start = clock.mark()
        context.execute_async_v3(stream.cuda_stream)
        times.append(clock.ms(start, clock.mark()))
        if progress is not None:
            progress()
    return statistics.median(times)
