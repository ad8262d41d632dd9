"""ONNX export of modules and whole detrex detectors with the ``lite_detr::`` op translations.

:func:`export_module` exports any module that calls the ops (an attention, a
``LiteEncoder``); :func:`export_onnx` exports a detrex DINO / H-DETR / Deformable
DETR through :class:`~lite_detr_plugin.export.wrapper.ExportWrapper` and checks
the graph in ONNX Runtime against eager (:mod:`~lite_detr_plugin.export.check`). Both use
``torch.onnx.export(dynamo=True)`` with :func:`~.translations.translation_table`;
the graph is built at opset 18 and converted down for opsets 16 and 17
(:func:`~.opsets.convert_opset`). Failures surface as :class:`ExportError`, one
line that names the cause, never the exporter's report.
"""
import contextlib
import copy
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from .. import ops
from ..layers.placement import choosing_by
from .check import check_onnx, fresh_images
from .detrex_modules import swap_detrex_attention
from .errors import ExportError, one_line
from .fp16 import convert_float16
from .opsets import convert_opset
from .translations import check_choices, translation_table
from .trt_plugin import TRT_DOMAIN
from .wrapper import ExportWrapper

OUTPUT_NAMES = ("scores", "labels", "boxes")


@dataclass
class ExportResult:
    """What :func:`export_onnx` produced."""

    path: Optional[str]
    model: object  # onnx.ModelProto
    node_counts: Dict[str, int]
    file_bytes: int
    max_abs_diff: Dict[str, float] = field(default_factory=dict)  # "scores", "boxes" (empty without a check)
    simplified: Optional[str] = None  # with simplify: what onnxsim did ("N -> M nodes") or why it did not


def require_onnx() -> None:
    """ExportError naming the missing deploy extras."""
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(
            f"ONNX export needs {' and '.join(missing)}: pip install 'lite_detr_plugin[deploy]'"
        )


def node_counts(model) -> Dict[str, int]:
    """Node counts by (domain-qualified) op type, most frequent first."""
    counts = Counter(
        (f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type)
        for node in model.graph.node
    )
    return dict(counts.most_common())


@contextlib.contextmanager
def _small_tensors_stay_constant(limit: int = 1024):
    """Lets torch.export read back the values of small tensors built from Python numbers.

    detrex's transformers build ``spatial_shapes`` with ``torch.as_tensor`` of the
    feature sizes and read it back (``torch.linspace(..., H)``, ``.view(N, H, W, 1)``);
    ``LiteEncoder`` reads ``level_start_index``. Under torch.export's fake tensors
    those reads are data-dependent and fail, because fake tensors only keep the
    values of tensors with at most one element. A fixed-size export has constant
    level shapes, so for its duration small constant tensors keep their values
    (``CONSTANT_NUMEL_LIMIT``, a private torch setting; there is no public one)
    and the reads resolve to the sizes of this export. Needed: without it a plain
    detrex DINO fails with ``GuardOnDataDependentSymNode`` (torch 2.15). The
    previous value is restored on exit; export is not thread-safe while it is raised.
    """
    from torch._subclasses import fake_tensor

    saved = fake_tensor.CONSTANT_NUMEL_LIMIT
    fake_tensor.CONSTANT_NUMEL_LIMIT = max(saved, limit)
    try:
        yield
    finally:
        fake_tensor.CONSTANT_NUMEL_LIMIT = saved


def export_module(
    module: nn.Module,
    args: Tuple,
    *,
    opset: int = 18,
    deformable: str = "decompose",
    sampler: str = "grid_sample",
    input_names: Optional[Sequence[str]] = None,
    output_names: Optional[Sequence[str]] = None,
    dynamic_shapes=None,
):
    """``module(*args)`` as an ``onnx.ModelProto`` with the ops translated (see the module docstring)."""
    check_choices(opset, deformable, sampler)
    require_onnx()
    if not ops.is_loaded():
        raise ExportError(f"ONNX export needs the compiled op library lite_detr_plugin._C: {ops.load_error()}")
    import onnx

    try:
        # "auto" placements choose for decomposed sampling, which is dearer than the fused kernels.
        with warnings.catch_warnings(), _small_tensors_stay_constant(), choosing_by("exported"):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                tuple(args),
                dynamo=True,
                custom_translation_table=translation_table(18, deformable, sampler),
                opset_version=18,
                input_names=list(input_names) if input_names else None,
                output_names=list(output_names) if output_names else None,
                dynamic_shapes=dynamic_shapes,
                verbose=False,
                optimize=True,
            )
    except Exception as exc:  # the exporter wraps everything in its own errors
        raise ExportError(f"ONNX export of {type(module).__name__} failed: {one_line(exc)}") from exc
    model = program.model_proto
    if opset != 18:
        try:
            model = convert_opset(model, opset)
        except Exception as exc:
            raise ExportError(f"converting the ONNX graph to opset {opset} failed: {one_line(exc)}") from exc
    if any(node.domain == TRT_DOMAIN for node in model.graph.node):
        if not any(entry.domain == TRT_DOMAIN for entry in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid(TRT_DOMAIN, 1))
    onnx.checker.check_model(model)
    return model


def _check_image_size(wrapper: ExportWrapper, image_size) -> Tuple[int, int]:
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(s, int) and s > 0 for s in image_size)
    ):
        raise ValueError(f"image_size must be (H, W), two positive integers; got {image_size!r}")
    backbone = wrapper.model.backbone
    divisor = max(int(getattr(backbone, "size_divisibility", 0) or 0),
                  int((getattr(backbone, "padding_constraints", None) or {}).get("size_divisibility", 0) or 0))
    if divisor > 1 and any(s % divisor for s in image_size):
        raise ValueError(
            f"image_size {tuple(image_size)} is not divisible by {divisor}, as the backbone "
            f"{type(backbone).__name__} needs"
        )
    return tuple(image_size)


def export_onnx(
    model: nn.Module,
    path: Optional[str],
    image_size: Tuple[int, int] = (800, 1333),
    *,
    batch_size: int = 1,
    dynamic_batch: bool = False,
    opset: int = 18,
    deformable: str = "decompose",
    sampler: str = "grid_sample",
    check: bool = True,
    fp16: bool = False,
    simplify: bool = False,
    score_tolerance: Optional[float] = None,
    box_tolerance: Optional[float] = None,
) -> ExportResult:
    """Exports a detrex DINO / H-DETR / Deformable DETR (or an ExportWrapper) to ONNX at ``path``.

    The graph takes ``images`` float32 ``[B, 3, H, W]`` (B = ``batch_size``, or
    dynamic with ``dynamic_batch``) and returns ``scores [B, K]``, ``labels [B, K]``
    int64 and ``boxes [B, K, 4]`` (see :class:`ExportWrapper`). detrex's own MSDA
    modules are swapped for this package's (same weights) in a copy of the model.
    ``fp16`` converts the float32 graph to float16, softmaxes and their logits (KDA's
    included), sigmoids and logs kept float32, ``images`` and outputs float32
    (:func:`~.fp16.convert_float16`).
    ``check`` runs ONNX Runtime on a fresh input and raises :class:`ExportError`
    when scores differ from eager by more than ``score_tolerance`` (eager follows
    the graph's query selections where near-ties order them differently, see
    :func:`~.check.check_onnx`; 1e-4; 1e-2 for
    ``fp16``) or boxes by more than ``box_tolerance`` pixels (1e-4 × the image's
    longer side; 1e-2 × it for ``fp16``). Plugin graphs are not checked: ONNX
    Runtime cannot run TensorRT's plugin. ``path=None`` keeps the model in memory.
    """
    check_choices(opset, deformable, sampler)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    wrapper = model if isinstance(model, ExportWrapper) else ExportWrapper(model)
    image_size = _check_image_size(wrapper, image_size)
    require_onnx()

    exported = copy.deepcopy(wrapper).eval()
    swap_detrex_attention(exported)
    example_batch = max(batch_size, 2) if dynamic_batch else batch_size
    dynamic_shapes = None
    if dynamic_batch:
        dynamic_shapes = {"images": {0: torch.export.Dim("batch", min=1, max=1024)}}
    with torch.no_grad():
        onnx_model = export_module(
            exported, (fresh_images(example_batch, image_size, seed=0),), opset=opset, deformable=deformable,
            sampler=sampler, input_names=["images"], output_names=OUTPUT_NAMES, dynamic_shapes=dynamic_shapes,
        )
    simplified = None
    if simplify:
        onnx_model, simplified = _simplify(onnx_model)
    if fp16:
        onnx_model = convert_float16(onnx_model)

    result = ExportResult(path=path, model=onnx_model, node_counts=node_counts(onnx_model),
                          file_bytes=onnx_model.ByteSize(), simplified=simplified)
    if path is not None:
        import onnx

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        onnx.save(onnx_model, path)
        result.file_bytes = os.path.getsize(path)
    if check and deformable != "trt_plugin":
        result.max_abs_diff = check_onnx(
            wrapper, onnx_model, image_size, batch=batch_size if not dynamic_batch else example_batch + 1,
            score_tolerance=score_tolerance if score_tolerance is not None else (1e-2 if fp16 else 1e-4),
            box_tolerance=box_tolerance if box_tolerance is not None else (1e-2 if fp16 else 1e-4) * max(image_size),
        )
    return result


def _simplify(onnx_model):
    """(graph, one line on what onnxsim did); the graph is left as exported where onnxsim is missing or fails."""
    try:
        import onnxsim
    except ImportError:
        message = "onnxsim is not installed (pip install onnxsim): graph left as exported"
        warnings.warn(f"simplify: {message}")
        return onnx_model, message
    before = len(onnx_model.graph.node)
    try:
        simplified, ok = onnxsim.simplify(onnx_model)
    except Exception as exc:  # e.g. plugin nodes onnxsim cannot infer
        message = f"onnxsim could not simplify the graph ({one_line(exc)}): graph left as exported"
        warnings.warn(f"simplify: {message}")
        return onnx_model, message
    if not ok:
        return onnx_model, "onnxsim's check of the simplified graph failed: graph left as exported"
    return simplified, f"onnxsim: {before} -> {len(simplified.graph.node)} nodes"
