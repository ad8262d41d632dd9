"""ONNX translations of the ``lite_detr::`` ops for ``torch.onnx.export(dynamo=True)``.

:func:`translation_table` returns the ``custom_translation_table`` that maps
``torch.ops.lite_detr.kda_forward`` and ``msda_forward`` to ONNX, in one of
three forms:

* ``deformable="decompose", sampler="grid_sample"``: standard ops, one
  ``GridSample`` (bilinear, zeros outside, ``align_corners=0``) per level;
* ``deformable="decompose", sampler="gather"``: standard ops, the bilinear
  sampling written as four ``GatherND`` reads per level with their weights
  (zeros outside, the ``align_corners=False`` pixel convention), for runtimes
  whose GridSample is missing or wrong (TensorRT at opset 20, NVIDIA/TensorRT#4813);
* ``deformable="trt_plugin"``: NVIDIA's ``MultiscaleDeformableAttnPlugin_TRT``
  (domain :data:`TRT_DOMAIN`, no attributes, ``spatial_shapes`` and
  ``level_start_index`` as int32), which only TensorRT runs.

KDA under ``trt_plugin``: see :mod:`lite_detr_plugin.export.trt_plugin`.

Shapes follow :func:`lite_detr_plugin.ops.kda`: ``value [B, S, Mv, D]`` with
``Mv`` = M or 1 (one value head shared by every query head),
``sampling_locations [B, Nq, M, L, P, 2]``, ``attention_weights [B, Nq, M, L, P]``;
the outputs are ``[B, Nq, M * D]``. M, L, P and D must be static; B, Nq and
the level sizes (read from ``spatial_shapes`` in the graph) may be dynamic.
Arithmetic is float32 for half-precision inputs (samples, logits, softmax and
sums), and the output is cast back.
"""
from typing import Callable, Dict, Tuple

import torch

from .trt_plugin import TRT_DOMAIN, register_plugin_schema

DEFORMABLE_MODES = ("decompose", "trt_plugin")
SAMPLERS = ("grid_sample", "gather")
SUPPORTED_OPSETS = (16, 17, 18)
def _static(value, axis: int, name: str) -> int:
    dim = value.shape[axis] if value.shape is not None else None
    if not isinstance(dim, int):
        raise ValueError(
            f"ONNX translation of lite_detr ops: {name} needs a static size at dim {axis}, got {value.shape}"
        )
    return dim


class _Builder:
    """Emits the ONNX nodes of one op call through an onnxscript opset."""

    def __init__(self, opset_version: int, sampler: str, deformable: str):
        import onnxscript
        from onnxscript import ir

        self.op = onnxscript.opset18  # the exporter builds at 18 and converts down
        self.plugin = onnxscript.values.Opset(TRT_DOMAIN, 1)
        self.ir = ir
        self.opset_version = opset_version
        self.sampler = sampler
        self.deformable = deformable

    # -- small helpers ---------------------------------------------------------

    def ints(self, *values: int):
        return self.op.Constant(value_ints=list(values))

    def scalar(self, value: float, like_dtype):
        return self.op.CastLike(self.op.Constant(value_float=float(value)), like_dtype)

    def dim(self, x, axis: int):
        """``x.shape[axis]`` as a 1-D int64 tensor (dynamic where the axis is)."""
        return self.op.Shape(x, start=axis, end=axis + 1)

    def to(self, x, dtype, current=None):
        """``x`` cast to ``dtype`` unless its dtype (``current`` for intermediates) already is."""
        current = x.dtype if current is None else current
        return x if current == dtype else self.op.Cast(x, to=dtype)

    def level_geometry(self, spatial_shapes, level_start_index, level: int):
        """(H, W, start, end) of a level as 1-D int64 tensors of one element."""
        op = self.op
        index = self.ints(level)
        hw = op.Gather(spatial_shapes, index, axis=0)  # [1, 2]
        height = op.Reshape(op.Gather(hw, self.ints(0), axis=1), self.ints(1))
        width = op.Reshape(op.Gather(hw, self.ints(1), axis=1), self.ints(1))
        start = op.Gather(level_start_index, index, axis=0)
        return height, width, start, op.Add(start, op.Mul(height, width))

    # -- sampling for the gather sampler and the plugin: [B, M, Nq, P, D] --------

    def sample_level(self, value, spatial_shapes, level_start_index, locations, level: int):
        """Bilinear samples of ``value [B, S, Mv, D]`` at level ``level`` of ``locations``: ``[B, M, Nq, P, D]``.

        Static sizes are read from the op's inputs (the tracer does not infer the
        shapes of intermediate values).
        """
        sizes = _Sizes(value, locations)
        height, width, start, end = self.level_geometry(spatial_shapes, level_start_index, level)
        value_level = self.op.Slice(value, start, end, self.ints(1))  # [B, HW, Mv, D]
        level_locations = self.op.Gather(locations, self.op.Constant(value_int=level), axis=3)  # [B, Nq, M, P, 2]
        if self.deformable == "trt_plugin":
            return self._sample_plugin(value_level, height, width, level_locations, sizes)
        return self._sample_gather(value_level, height, width, level_locations, sizes)

    def _grid_sample(self, value_level, height, width, grid, sizes):
        """GridSample of one level at ``grid [B*Mv, P', Nq, 2]`` (in [-1, 1]): ``[B*Mv, D, P', Nq]`` in the compute dtype."""
        op = self.op
        fmap = op.Reshape(
            op.Transpose(value_level, perm=[0, 2, 3, 1]), op.Concat(self.ints(-1, sizes.depth), height, width, axis=0)
        )  # [B*Mv, D, H, W]
        return self.to(
            op.GridSample(fmap, grid, align_corners=0, mode="bilinear", padding_mode="zeros"), sizes.compute, sizes.dtype
        )

    def _sample_gather(self, value_level, height, width, locations, sizes):
        op = self.op
        FLOAT = self.ir.DataType.FLOAT
        mv, depth, points, num_heads = sizes.mv, sizes.depth, sizes.points, sizes.heads
        batch, num_query = self.dim(locations, 0), self.dim(locations, 1)
        num_pixels = op.Mul(height, width)
        data = op.Reshape(
            op.Transpose(value_level, perm=[0, 2, 1, 3]), op.Concat(self.ints(-1), num_pixels, self.ints(depth), axis=0)
        )  # [B*Mv, HW, D]
        if mv == num_heads:
            grid = op.Reshape(  # [B*M, Nq*P, 2]
                op.Transpose(locations, perm=[0, 2, 1, 3, 4]),
                op.Concat(self.ints(-1), op.Mul(num_query, self.ints(points)), self.ints(2), axis=0),
            )
        else:  # [B, Nq*M*P, 2], samples ordered (Nq, M, P)
            grid = op.Reshape(locations, op.Concat(batch, self.ints(-1, 2), axis=0))
        # Pixel coordinates in float32 (exact for maps below 2^24 pixels, whatever the input dtype).
        grid = self.to(grid, FLOAT, sizes.location_dtype)
        width_f, height_f = op.Cast(width, to=FLOAT), op.Cast(height, to=FLOAT)
        half = op.Constant(value_float=0.5)
        zero, one = op.Constant(value_float=0.0), op.Constant(value_float=1.0)
        x = op.Sub(op.Mul(op.Gather(grid, op.Constant(value_int=0), axis=2), width_f), half)  # [G, K]
        y = op.Sub(op.Mul(op.Gather(grid, op.Constant(value_int=1), axis=2), height_f), half)
        x0, y0 = op.Floor(x), op.Floor(y)
        fx, fy = op.Sub(x, x0), op.Sub(y, y0)
        x_max, y_max = op.Sub(width_f, one), op.Sub(height_f, one)
        total = None
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            xi = op.Add(x0, op.Constant(value_float=float(dx)))
            yi = op.Add(y0, op.Constant(value_float=float(dy)))
            weight = op.Mul(fx if dx else op.Sub(one, fx), fy if dy else op.Sub(one, fy))
            inside = op.And(
                op.And(op.GreaterOrEqual(xi, zero), op.LessOrEqual(xi, x_max)),
                op.And(op.GreaterOrEqual(yi, zero), op.LessOrEqual(yi, y_max)),
            )
            weight = op.Where(inside, weight, zero)
            xc = op.Min(op.Max(xi, zero), x_max)
            yc = op.Min(op.Max(yi, zero), y_max)
            index = op.Cast(op.Add(op.Mul(yc, width_f), xc), to=self.ir.DataType.INT64)
            corner = op.GatherND(data, op.Unsqueeze(index, self.ints(-1)), batch_dims=1)  # [G, K, D]
            term = op.Mul(self.to(corner, FLOAT, sizes.dtype), op.Unsqueeze(weight, self.ints(-1)))
            total = term if total is None else op.Add(total, term)
        total = self.to(total, sizes.compute, FLOAT)
        if mv == num_heads:  # [B*M, Nq*P, D] -> [B, M, Nq, P, D]
            return op.Reshape(total, op.Concat(batch, self.ints(num_heads), num_query, self.ints(points, depth), axis=0))
        total = op.Reshape(total, op.Concat(batch, num_query, self.ints(num_heads, points, depth), axis=0))
        return op.Transpose(total, perm=[0, 2, 1, 3, 4])

    def _sample_plugin(self, value_level, height, width, locations, sizes):
        """The plugin as a sampler: each sample is a query row with one point of weight 1."""
        op = self.op
        INT32 = self.ir.DataType.INT32
        mv, depth, points, num_heads = sizes.mv, sizes.depth, sizes.points, sizes.heads
        batch, num_query = self.dim(locations, 0), self.dim(locations, 1)
        shapes = op.Cast(op.Unsqueeze(op.Concat(height, width, axis=0), self.ints(0)), to=INT32)  # [1, 2]
        starts = op.Cast(self.ints(0), to=INT32)
        locations = self.to(locations, sizes.dtype, sizes.location_dtype)
        if mv == num_heads:  # rows (Nq, P), heads M
            rows = op.Reshape(
                op.Transpose(locations, perm=[0, 1, 3, 2, 4]), op.Concat(batch, self.ints(-1, num_heads, 1, 1, 2), axis=0)
            )
        else:  # rows (Nq, M, P), one shared head
            rows = op.Reshape(locations, op.Concat(batch, self.ints(-1, 1, 1, 1, 2), axis=0))
        ones = op.Expand(self.scalar(1.0, value_level), op.Concat(op.Shape(rows, start=0, end=3), self.ints(1, 1), axis=0))
        sampled = self.plugin.MultiscaleDeformableAttnPlugin_TRT(value_level, shapes, starts, rows, ones)
        sampled = self.to(sampled, sizes.compute, sizes.dtype)
        if mv == num_heads:  # [B, Nq*P, M*D] -> [B, Nq, P, M, D] -> [B, M, Nq, P, D]
            sampled = op.Reshape(sampled, op.Concat(batch, num_query, self.ints(points, num_heads, depth), axis=0))
            return op.Transpose(sampled, perm=[0, 3, 1, 2, 4])
        sampled = op.Reshape(sampled, op.Concat(batch, num_query, self.ints(num_heads, points, depth), axis=0))
        return op.Transpose(sampled, perm=[0, 2, 1, 3, 4])

    # -- weighted sums ---------------------------------------------------------

    def weighted_sum_standard(self, samples, weights_per_level, compute, out_dtype):
        """Σ over levels of ``weights [B, M, Nq, P] @ samples [B, M, Nq, P, D]`` -> ``[B, Nq, M*D]``."""
        op = self.op
        total = None
        for samples_level, weights_level in zip(samples, weights_per_level):
            term = op.MatMul(op.Unsqueeze(weights_level, self.ints(3)), samples_level)  # [B, M, Nq, 1, D]
            total = term if total is None else op.Add(total, term)
        total = op.Transpose(op.Squeeze(total, self.ints(3)), perm=[0, 2, 1, 3])  # [B, Nq, M, D]
        return self.to(op.Reshape(total, self.ints(0, 0, -1)), out_dtype, compute)

    def msda_plugin(self, value, spatial_shapes, level_start_index, locations, weights, sizes, weights_dtype):
        """One plugin node; a shared value head (Mv = 1) folds the heads into the query rows."""
        op = self.op
        INT32 = self.ir.DataType.INT32
        batch, num_query = self.dim(locations, 0), self.dim(locations, 1)
        locations = self.to(locations, sizes.dtype, sizes.location_dtype)
        weights = self.to(weights, sizes.dtype, weights_dtype)
        if sizes.mv != sizes.heads:
            locations = op.Reshape(locations, op.Concat(batch, self.ints(-1, 1, sizes.levels, sizes.points, 2), axis=0))
            weights = op.Reshape(weights, op.Concat(batch, self.ints(-1, 1, sizes.levels, sizes.points), axis=0))
        output = self.plugin.MultiscaleDeformableAttnPlugin_TRT(
            value, op.Cast(spatial_shapes, to=INT32), op.Cast(level_start_index, to=INT32), locations, weights
        )
        if sizes.mv != sizes.heads:
            output = op.Reshape(output, op.Concat(batch, num_query, self.ints(sizes.heads * sizes.depth), axis=0))
        return output

    # -- sampler="grid_sample": reductions in GridSample's layout ----------------
    #
    # The grid is laid out [B*M, P, Nq, 2] (Mv = M) or [B, M*P, Nq, 2] (Mv = 1), so GridSample returns
    # [B*M, D, P, Nq] or [B, D, M*P, Nq]: the query axis innermost. Moving the samples (the largest
    # tensors of the graph) to [B, M, Nq, P, D] for a MatMul would transpose every one of them; instead
    # the logits and the weighted sums reduce over D and P where the samples are, and only the
    # [B, Nq, M, D] result moves. Everything that multiplies the samples (queries, weights) then
    # broadcasts along an outer axis over rows of Nq contiguous values, which ONNX Runtime vectorizes;
    # with Nq before P they ran over rows of P (4) values, two to four times slower per element.
    # Per-point tensors ("weights") are [B*M, P, Nq] (Mv = M) or [B, M, P, Nq] (Mv = 1).

    def grids(self, locations, sizes):
        """``sampling_locations [B, Nq, M, L, P, 2]`` in [0, 1] -> GridSample grids in [-1, 1], one per level."""
        op = self.op
        grid = op.Transpose(locations, perm=[0, 2, 3, 4, 1, 5])
        grid = op.Sub(op.Mul(grid, self.scalar(2.0, grid)), self.scalar(1.0, grid))
        grid = self.to(grid, sizes.dtype, sizes.location_dtype)  # [B, M, L, P, Nq, 2]
        rows = sizes.points if sizes.mv == sizes.heads else sizes.heads * sizes.points
        return [
            op.Reshape(op.Gather(grid, op.Constant(value_int=level), axis=2),
                       op.Concat(self.ints(-1, rows), self.dim(locations, 1), self.ints(2), axis=0))
            for level in range(sizes.levels)
        ]

    def grid_samples(self, value, spatial_shapes, level_start_index, grid, level: int, sizes):
        """One level's bilinear samples in the compute dtype: ``[B*M, D, P, Nq]`` or ``[B, D, M, P, Nq]``."""
        height, width, start, end = self.level_geometry(spatial_shapes, level_start_index, level)
        value_level = self.op.Slice(value, start, end, self.ints(1))
        samples = self._grid_sample(value_level, height, width, grid, sizes)
        if sizes.mv == sizes.heads:
            return samples
        return self.op.Reshape(samples, self.ints(0, 0, sizes.heads, sizes.points, -1))

    def weighted_sum_grid(self, samples, weights_per_level, locations, sizes):
        """Σ over levels and points of weights × samples -> ``[B, Nq, M*D]``."""
        op = self.op
        per_head = sizes.mv == sizes.heads
        total = None
        for samples_level, weights_level in zip(samples, weights_per_level):
            term = op.ReduceSum(op.Mul(samples_level, op.Unsqueeze(weights_level, self.ints(1))),
                                self.ints(2 if per_head else 3), keepdims=0)  # [B*M, D, Nq] or [B, D, M, Nq]
            total = term if total is None else op.Add(total, term)
        if per_head:
            batch, num_query = self.dim(locations, 0), self.dim(locations, 1)
            total = op.Reshape(total, op.Concat(batch, self.ints(sizes.heads, sizes.depth), num_query, axis=0))
            total = op.Transpose(total, perm=[0, 3, 1, 2])  # [B, Nq, M, D]
        else:
            total = op.Transpose(total, perm=[0, 3, 2, 1])  # [B, Nq, M, D]
        return self.to(op.Reshape(total, self.ints(0, 0, -1)), sizes.dtype, sizes.compute)

    def msda_grid(self, value, spatial_shapes, level_start_index, locations, attention_weights, sizes):
        op = self.op
        weights = op.Transpose(self.to(attention_weights, sizes.compute), perm=[0, 2, 3, 4, 1])  # [B, M, L, P, Nq]
        if sizes.mv == sizes.heads:
            weights = op.Reshape(weights, op.Concat(
                self.ints(-1, sizes.levels, sizes.points), self.dim(locations, 1), axis=0))  # [B*M, L, P, Nq]
        level_axis = 1 if sizes.mv == sizes.heads else 2
        samples, per_level = [], []
        for level, grid in enumerate(self.grids(locations, sizes)):
            samples.append(self.grid_samples(value, spatial_shapes, level_start_index, grid, level, sizes))
            per_level.append(op.Gather(weights, op.Constant(value_int=level), axis=level_axis))
        return self.weighted_sum_grid(samples, per_level, locations, sizes)

    def kda_grid(self, query, key, value, spatial_shapes, level_start_index, locations, scale, sizes):
        op = self.op
        levels, points = sizes.levels, sizes.points
        batch, num_query = self.dim(locations, 0), self.dim(locations, 1)
        per_head = sizes.mv == sizes.heads
        queries = self.to(query, sizes.compute)  # [B, Nq, M, Dk]
        if per_head:  # -> [B*M, Dk, 1, Nq]
            queries = op.Reshape(op.Transpose(queries, perm=[0, 2, 3, 1]),
                                 op.Concat(self.ints(-1), self.dim(query, 3), self.ints(1), num_query, axis=0))
        else:  # -> [B, Dk, M, 1, Nq]
            queries = op.Unsqueeze(op.Transpose(queries, perm=[0, 3, 2, 1]), self.ints(3))
        point_axis = 1 if per_head else 2
        values, logits = [], []
        for level, grid in enumerate(self.grids(locations, sizes)):
            keys = self.grid_samples(value if key is None else key, spatial_shapes, level_start_index, grid,
                                     level, sizes)
            values.append(keys if key is None else self.grid_samples(
                value, spatial_shapes, level_start_index, grid, level, sizes))
            logits.append(op.ReduceSum(op.Mul(keys, queries), self.ints(1), keepdims=0))  # [B*M, P, Nq] / [B, M, P, Nq]
        logits = op.Mul(op.Concat(*logits, axis=point_axis), self.scalar(scale, queries))  # L*P on point_axis
        attention = op.Softmax(logits, axis=point_axis)
        logsumexp = self.logsumexp(logits, point_axis)  # [B*M, Nq] or [B, M, Nq]
        if per_head:
            logsumexp = op.Reshape(logsumexp, op.Concat(batch, self.ints(sizes.heads), num_query, axis=0))
        logsumexp = op.Transpose(logsumexp, perm=[0, 2, 1])  # [B, Nq, M]
        per_level = [
            op.Slice(attention, self.ints(level * points), self.ints((level + 1) * points), self.ints(point_axis))
            for level in range(levels)
        ]
        return self.weighted_sum_grid(values, per_level, locations, sizes), logsumexp

    def logsumexp(self, logits, axis: int = -1):
        """log Σ exp over ``axis``, without keeping it."""
        if self.opset_version >= 18:
            return self.op.ReduceLogSumExp(logits, self.ints(axis), keepdims=0)
        return self.op.ReduceLogSumExp(logits, axes=[axis], keepdims=0)

    # -- the ops ---------------------------------------------------------------

    def msda(self, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        sizes = _Sizes(value, sampling_locations)
        if self.deformable == "trt_plugin":
            return self.msda_plugin(
                value, spatial_shapes, level_start_index, sampling_locations, attention_weights, sizes,
                attention_weights.dtype,
            )
        if self.deformable == "decompose" and self.sampler == "grid_sample":
            return self.msda_grid(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, sizes)
        op = self.op
        weights = self.to(attention_weights, sizes.compute)
        weights = op.Transpose(weights, perm=[0, 2, 1, 3, 4])  # [B, M, Nq, L, P]
        samples, per_level = [], []
        for level in range(sizes.levels):
            samples.append(self.sample_level(value, spatial_shapes, level_start_index, sampling_locations, level))
            per_level.append(op.Gather(weights, op.Constant(value_int=level), axis=3))
        return self.weighted_sum_standard(samples, per_level, sizes.compute, sizes.dtype)

    def kda(self, query, key, value, spatial_shapes, level_start_index, sampling_locations, scale):
        op = self.op
        sizes = _Sizes(value, sampling_locations)
        if self.deformable == "decompose" and self.sampler == "grid_sample":
            return self.kda_grid(query, key, value, spatial_shapes, level_start_index, sampling_locations, scale, sizes)
        compute, levels, points = sizes.compute, sizes.levels, sizes.points
        queries = op.Transpose(self.to(query, compute), perm=[0, 2, 1, 3])
        queries = op.Unsqueeze(queries, self.ints(-1))  # [B, M, Nq, Dk, 1]
        values, logits = [], []
        for level in range(levels):
            key_samples = self.sample_level(
                value if key is None else key, spatial_shapes, level_start_index, sampling_locations, level
            )
            if self.deformable != "trt_plugin":  # the plugin samples the values in its weighted sum
                values.append(key_samples if key is None else self.sample_level(
                    value, spatial_shapes, level_start_index, sampling_locations, level
                ))
            logits.append(op.Squeeze(op.MatMul(key_samples, queries), self.ints(-1)))  # [B, M, Nq, P]
        logits = op.Mul(op.Concat(*logits, axis=-1), self.scalar(scale, queries))  # [B, M, Nq, L*P]
        attention = op.Softmax(logits, axis=-1)
        logsumexp = op.Transpose(self.logsumexp(logits), perm=[0, 2, 1])  # [B, Nq, M], float32 (float64 for float64)
        if self.deformable == "trt_plugin":
            weights = op.Reshape(op.Transpose(attention, perm=[0, 2, 1, 3]), self.ints(0, 0, 0, levels, points))
            output = self.msda_plugin(value, spatial_shapes, level_start_index, sampling_locations, weights, sizes, compute)
            return output, logsumexp
        per_level = [
            op.Slice(attention, self.ints(level * points), self.ints((level + 1) * points), self.ints(-1))
            for level in range(levels)
        ]
        return self.weighted_sum_standard(values, per_level, compute, sizes.dtype), logsumexp


class _Sizes:
    """Static sizes and dtypes of one op call, read from its inputs."""

    def __init__(self, value, sampling_locations):
        from onnxscript import ir

        self.mv, self.depth = _static(value, 2, "value"), _static(value, 3, "value")
        self.heads = _static(sampling_locations, 2, "sampling_locations")
        self.levels = _static(sampling_locations, 3, "sampling_locations")
        self.points = _static(sampling_locations, 4, "sampling_locations")
        self.dtype = value.dtype
        self.location_dtype = sampling_locations.dtype
        double = ir.DataType.DOUBLE
        self.compute = double if self.dtype == double else ir.DataType.FLOAT


def check_choices(opset: int, deformable: str, sampler: str) -> None:
    """ValueError naming the argument when a choice is not supported."""
    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f"opset must be one of {SUPPORTED_OPSETS}, got {opset!r}")
    if deformable not in DEFORMABLE_MODES:
        raise ValueError(f"deformable must be one of {DEFORMABLE_MODES}, got {deformable!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


def translation_table(opset: int = 18, deformable: str = "decompose", sampler: str = "grid_sample") -> Dict[object, Callable]:
    """``custom_translation_table`` for ``torch.onnx.export(dynamo=True)`` (see the module docstring)."""
    check_choices(opset, deformable, sampler)
    import lite_detr_plugin.ops  # noqa: F401  (registers torch.ops.lite_detr)

    if deformable == "trt_plugin":
        register_plugin_schema()
    builder = _Builder(opset, sampler, deformable)

    def kda_forward(query, key, value, spatial_shapes, level_start_index, sampling_locations, scale: float) -> Tuple:
        return builder.kda(query, key, value, spatial_shapes, level_start_index, sampling_locations, scale)

    def msda_forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        return builder.msda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)

    return {
        torch.ops.lite_detr.kda_forward.default: kda_forward,
        torch.ops.lite_detr.msda_forward.default: msda_forward,
    }
