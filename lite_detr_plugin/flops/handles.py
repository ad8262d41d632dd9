"""fvcore op handles for deformable attention, and the counting conventions.

fvcore counts one fused multiply-add as one FLOP, counts ``aten::grid_sampler``
at 4 FLOPs per output element (bilinear) and makes element-wise ops free. The
published Sparse/Lite DETR GFLOPs were counted that way. Compiled deformable
attention ops, however, trace as opaque nodes that fvcore skips (counting 0):
detrex's CUDA ``MultiScaleDeformableAttnFunction``, Deformable DETR's and the
released Lite-DETR's ``MSDeformAttnFunction``, and this plugin's
``lite_detr::kda_forward`` / ``lite_detr::msda_forward``.
:func:`register_handles` gives each of them a count.

Counting conventions (the ``counting`` argument, :data:`COUNTINGS`):

* ``"paper"``: fvcore's conventions. A deformable op costs what its sampling
  would cost as ``grid_sample``: ``4 · B · Nq · M · L · P · D`` for every sampled
  tensor of D channels per head (KDA with a separate key samples ``Dk + Dv``;
  with ``key=None`` the key is the value, sampled once). The attention weights,
  softmax and weighted sum are element-wise work, free as in fvcore.
* ``"full"``: also counts, per query head and sample, the ``q·k`` dot product
  (Dk multiply-adds, KDA), the softmax (:data:`SOFTMAX_FLOPS` per logit, also for
  ``aten::softmax``) and the weighted sum (Dv multiply-adds). The extra terms are
  reported under their own names, e.g. ``kda_forward:qk``. It also counts
  ``aten::baddbmm`` (the masked q·kᵀ of ``nn.MultiheadAttention``), which fvcore
  has no handle for.

Both conventions also replace fvcore's ``aten::einsum`` handle, which rounds to 4
significant digits, by an exact count of the same quantity (see
:func:`einsum_handle`); the "samples" value placement computes with einsums.

Both conventions count ``aten::grid_sampler`` as fvcore does (4 per output element),
so detrex's PyTorch MSDA path (grid_sample) and its CUDA Function agree in the
"paper" counting. In the "full" counting the PyTorch path's weighted sum is an
element-wise ``mul`` + ``sum`` that stays uncounted.
"""
from collections import Counter
from typing import Any, Iterable, List, Optional

#: The counting conventions: "paper" (fvcore's) and "full" (also q·k, softmax, weighted sum).
COUNTINGS = ("paper", "full")

#: FLOPs of the bilinear sampling of one output element (fvcore's grid_sampler convention).
SAMPLING_FLOPS = 4
#: FLOPs per logit of a softmax in the "full" counting (exp, sum, divide).
SOFTMAX_FLOPS = 3

#: Names under which this plugin's compiled ops trace (TorchScript / fvcore).
KDA_OP_NAMES = ("lite_detr::kda_forward",)
MSDA_OP_NAMES = ("lite_detr::msda_forward",)
#: Deformable-attention autograd Functions of detrex / mmcv (``MultiScaleDeformableAttnFunction``) and of
#: Deformable DETR, DINO and the released Lite-DETR (``MSDeformAttnFunction``). Signature:
#: (value [B, S, M, D], spatial_shapes, level_start_index, sampling_locations [B, Nq, M, L, P, 2],
#: attention_weights [B, Nq, M, L, P], im2col_step).
FUNCTION_OP_NAMES = (
    "prim::PythonOp.MultiScaleDeformableAttnFunction",
    "prim::PythonOp.MSDeformAttnFunction",
)
GRID_SAMPLE_OP_NAMES = ("aten::grid_sampler",)
DEFORMABLE_OP_NAMES = KDA_OP_NAMES + MSDA_OP_NAMES + FUNCTION_OP_NAMES + GRID_SAMPLE_OP_NAMES

#: Element-wise, reduction and bookkeeping ops that fvcore's conventions make free
#: and that plain ``fvcore.nn.FlopCountAnalysis`` would otherwise warn about (it
#: already ignores reshapes, ``cat``, ``relu``, ``masked_fill``, ``to`` and the
#: like). detectron2's FlopCountAnalysis ignores the arithmetic ones too; the
#: rest (sin/cos of position embeddings, sums, comparisons) it leaves uncounted.
ELEMENTWISE_OPS = (
    "aten::add",
    "aten::add_",
    "aten::sub",
    "aten::sub_",
    "aten::rsub",
    "aten::mul",
    "aten::mul_",
    "aten::div",
    "aten::div_",
    "aten::addcmul",
    "aten::neg",
    "aten::exp",
    "aten::sqrt",
    "aten::reciprocal",
    "aten::sigmoid",
    "aten::sigmoid_",
    "aten::softmax",
    "aten::new_ones",
    "aten::ones_like",
    "aten::resolve_conj",
    "aten::resolve_neg",
    "aten::meshgrid",
    "aten::linspace",
    "aten::repeat_interleave",
    "aten::sort",
    "aten::argsort",
    "aten::argmax",
    "aten::topk",
    # position embeddings, masks and box post-processing
    "aten::sin",
    "aten::cos",
    "aten::log",
    "aten::pow",
    "aten::abs",
    "aten::cumsum",
    "aten::sum",
    "aten::mean",
    "aten::prod",
    "aten::repeat",
    "aten::pad",
    "aten::all",
    "aten::any",
    "aten::lt",
    "aten::le",
    "aten::ne",
    "aten::where",
    "aten::clamp_min",
    "aten::clamp_max",
    "aten::masked_fill_",
    "aten::fill_",
    "aten::zero_",
)


def _check_counting(counting: str) -> None:
    if counting not in COUNTINGS:
        raise ValueError(f"counting must be one of {', '.join(map(repr, COUNTINGS))}; got {counting!r}")


def _shape(value) -> Optional[List[int]]:
    from fvcore.nn.jit_handles import get_shape

    return get_shape(value)


def _prod(values: Iterable[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def _sample_sizes(locations_shape: List[int]):
    """(B, Nq, M, L, P) of ``sampling_locations [B, Nq, M, L, P, 2]``."""
    if locations_shape is None or len(locations_shape) != 6:
        raise ValueError(f"sampling_locations must be [B, Nq, M, L, P, 2], got shape {locations_shape}")
    return tuple(int(s) for s in locations_shape[:5])


def deformable_counts(
    name: str,
    counting: str,
    samples: int,
    sampled_channels: int,
    key_channels: int = 0,
    value_channels: int = 0,
    softmax: bool = False,
) -> Counter:
    """The counts of one deformable op.

    Args:
        name: the counter key of the sampling term (e.g. ``"kda_forward"``).
        counting: "paper" or "full".
        samples: ``B · Nq · M · L · P``, the sampled points over all query heads.
        sampled_channels: channels sampled per point (Dv, or Dk + Dv for a separate key).
        key_channels: Dk, for the ``q·k`` term (0 when the op takes given weights).
        value_channels: Dv, for the weighted sum.
        softmax: whether the op computes the softmax itself (KDA).
    """
    counts = Counter({name: SAMPLING_FLOPS * samples * sampled_channels})
    if counting == "full":
        if key_channels:
            counts[f"{name}:qk"] = samples * key_channels
        if softmax:
            counts[f"{name}:softmax"] = SOFTMAX_FLOPS * samples
        counts[f"{name}:weighted_sum"] = samples * value_channels
    return counts


def kda_handle(counting: str = "paper"):
    """Handle of ``lite_detr::kda_forward(query, key, value, spatial_shapes, level_start_index, locations, scale)``."""
    _check_counting(counting)

    def handle(inputs: List[Any], outputs: List[Any]) -> Counter:
        query, key, value = (_shape(v) for v in inputs[:3])
        B, Nq, M, L, P = _sample_sizes(_shape(inputs[5]))
        Dk, Dv = int(query[-1]), int(value[-1])
        sampled = Dv + (int(key[-1]) if key is not None else 0)
        return deformable_counts("kda_forward", counting, B * Nq * M * L * P, sampled, Dk, Dv, softmax=True)

    return handle


def msda_handle(counting: str = "paper", name: str = "msda_forward"):
    """Handle of ``lite_detr::msda_forward(value, spatial_shapes, level_start_index, locations, weights)``.

    Also serves the ``*DeformAttnFunction`` autograd Functions (same inputs, then ``im2col_step``).
    """
    _check_counting(counting)

    def handle(inputs: List[Any], outputs: List[Any]) -> Counter:
        shapes = [_shape(v) for v in inputs]
        value = next((s for s in shapes if s is not None and len(s) == 4), None)
        locations = next((s for s in shapes if s is not None and len(s) == 6), None)
        if value is None:
            raise ValueError(f"{name}: no 4-D value [B, S, M, D] among the inputs (shapes {shapes})")
        B, Nq, M, L, P = _sample_sizes(locations)
        Dv = int(value[-1])
        return deformable_counts(name, counting, B * Nq * M * L * P, Dv, 0, Dv, softmax=False)

    return handle


def grid_sample_handle(counting: str = "paper"):
    """Handle of ``aten::grid_sampler``: 4 FLOPs per output element, as fvcore (bilinear)."""
    _check_counting(counting)

    def handle(inputs: List[Any], outputs: List[Any]) -> int:
        return SAMPLING_FLOPS * _prod(_shape(outputs[0]))

    return handle


def einsum_handle(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::einsum`` counted exactly: for two operands with a summed index, one multiply-add per
    combination of all indices (what fvcore computes, without its rounding).

    fvcore's own handle reads the FLOPs from numpy's printed ``einsum_path``
    report, rounded to 4 significant digits, so counts that should be equal can
    differ by a few FLOPs. Other einsums go to fvcore's handle.
    """
    from fvcore.nn.jit_handles import einsum_flop_jit

    equation = inputs[0].toIValue().replace(" ", "")
    shapes = [_shape(v) for v in inputs[1].node().inputs()]
    if "->" in equation and "." not in equation and len(shapes) == 2 and all(s is not None for s in shapes):
        operands, output = equation.split("->")
        terms = operands.split(",")
        sizes = {}
        for term, shape in zip(terms, shapes):
            if len(term) != len(shape):
                return einsum_flop_jit(inputs, outputs)
            for letter, size in zip(term, shape):
                sizes[letter] = int(size)
        if set(sizes) - set(output):  # a contraction: a multiply-add per index combination
            return _prod(sizes.values())
    return einsum_flop_jit(inputs, outputs)


def baddbmm_handle(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::baddbmm(input, batch1 [b, n, m], batch2 [b, m, p])`` in the "full" counting: b·n·m·p.

    ``nn.MultiheadAttention`` computes q·kᵀ with it when given a mask (e.g. H-DETR's
    decoder self-attention); fvcore has no handle, so the "paper" counting leaves it
    uncounted (and listed), as the published counts did.
    """
    b, n, m = _shape(inputs[1])
    p = _shape(inputs[2])[-1]
    return int(b) * int(n) * int(m) * int(p)


def softmax_handle(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::softmax`` in the "full" counting: :data:`SOFTMAX_FLOPS` per element."""
    return SOFTMAX_FLOPS * _prod(_shape(inputs[0]))


def handles(counting: str = "paper") -> dict:
    """The op handles :func:`register_handles` installs, by traced op name."""
    _check_counting(counting)
    out = {}
    for name in KDA_OP_NAMES:
        out[name] = kda_handle(counting)
    for name in MSDA_OP_NAMES:
        out[name] = msda_handle(counting)
    for name in FUNCTION_OP_NAMES:
        out[name] = msda_handle(counting, name=name.split(".", 1)[1])
    for name in GRID_SAMPLE_OP_NAMES:
        out[name] = grid_sample_handle(counting)
    out["aten::einsum"] = einsum_handle
    if counting == "full":
        out["aten::softmax"] = softmax_handle
        out["aten::baddbmm"] = baddbmm_handle
    return out


def register_handles(flop_count_analysis, counting: str = "paper", ignore_elementwise: bool = False):
    """Install the deformable-attention handles on an fvcore (or detectron2) ``FlopCountAnalysis``.

    Args:
        flop_count_analysis: a ``fvcore.nn.FlopCountAnalysis`` (detectron2's subclass too).
        counting: "paper" (fvcore's conventions) or "full" (also q·k, softmax, weighted sum).
        ignore_elementwise: also mark :data:`ELEMENTWISE_OPS` as free (handle None), so that
            plain fvcore neither counts nor warns about them. In the "full" counting
            ``aten::softmax`` stays counted.

    Returns:
        the same analysis, for chaining.
    """
    ops = handles(counting)
    if ignore_elementwise:
        free = {name: None for name in ELEMENTWISE_OPS if name not in ops}
        flop_count_analysis.set_op_handle(**free)
    flop_count_analysis.set_op_handle(**ops)
    return flop_count_analysis


def is_deformable_op(name: str) -> bool:
    """Whether a traced op name is deformable attention (any of ours, detrex's, a grid_sample, ...)."""
    lowered = name.lower()
    return (
        name in DEFORMABLE_OP_NAMES
        or name.startswith("lite_detr::")
        or "deform" in lowered
        or "grid_sampler" in lowered
        or "kda" in lowered
        or "msda" in lowered
    )


class UncountedDeformableOpError(RuntimeError):
    """A deformable-attention op was traced but has no FLOP handle (it would count 0)."""


def check_deformable_ops_counted(flop_count_analysis) -> Counter:
    """Raise if a deformable-attention op is left in ``unsupported_ops()``.

    Runs the analysis if it has not run yet. Returns the unsupported ops that
    remain (none of them deformable), so callers may report them.
    """
    flop_count_analysis.total()  # runs the trace once; results are cached
    unsupported = flop_count_analysis.unsupported_ops()
    missing = {name: n for name, n in unsupported.items() if is_deformable_op(name)}
    if missing:
        listed = ", ".join(f"{name} ({n}x)" for name, n in sorted(missing.items()))
        raise UncountedDeformableOpError(
            f"deformable-attention ops traced without a FLOP handle, counted as 0: {listed}. "
            "Call lite_detr_plugin.flops.register_handles(analysis) before counting."
        )
    return Counter(unsupported)
