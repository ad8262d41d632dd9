"""Input builders and comparison helpers shared by the op tests.

Everything random is drawn in float64 on the CPU from a seeded generator and
cast at the end, so the same seed gives the same numbers in every dtype and on
every device.
"""
import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import pytest
import torch

from lite_detr_plugin import ops

HALF_DTYPES = (torch.float16, torch.bfloat16)


def cpu_and_cuda():
    """Devices to parametrise over, torchvision-style: CUDA is always listed and skips without a GPU."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def require_kernel(device: str) -> None:
    """Fails unless the compiled op serves ``device``.

    Otherwise ops.kda / ops.msda fall back to the reference and every
    comparison would test the reference against itself.
    """
    if not ops.has_kernel(device):
        pytest.fail(
            f"the compiled lite_detr op has no {device} kernel ({ops.build_info()}); "
            "build it with `pip install --no-build-isolation -e .`"
        )


def level_layout(shapes: Sequence[Tuple[int, int]], device="cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """spatial_shapes [L, 2] and level_start_index [L] (exclusive cumsum of H*W), both int64."""
    spatial_shapes = torch.tensor(shapes, dtype=torch.int64, device=device).reshape(-1, 2)
    areas = spatial_shapes.prod(1)
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    return spatial_shapes, level_start_index


def padding_mask(shapes, batch: int) -> torch.Tensor:
    """[B, S] True on padded tokens, as for images padded bottom/right; image 0 is never padded."""
    ratios = [(1.0, 1.0), (0.6, 0.75), (1.0, 0.5), (0.5, 1.0)]
    masks = []
    for b in range(batch):
        rh, rw = ratios[b % len(ratios)]
        per_level = []
        for h, w in shapes:
            vh, vw = max(1, math.ceil(h * rh)), max(1, math.ceil(w * rw))
            m = torch.ones(h, w, dtype=torch.bool)
            m[:vh, :vw] = False
            per_level.append(m.flatten())
        masks.append(torch.cat(per_level))
    return torch.stack(masks)


def _special_coordinates(size: int) -> torch.Tensor:
    """Exactly representable normalised coordinates on the borders of a map of ``size`` pixels.

    0 and 1 (the image borders), pixel centres 0 and size-1 (an integer pixel
    coordinate: a bilinear kink), a random integer pixel, and the first location
    past the far side of the support (pixel ``size``: zero in both conventions).
    Pixel -1 (the near side of the support) is left out: its gradient is a
    convention, see test_kda_op.test_gradient_at_lower_support_border.
    """
    return torch.tensor(
        [0.0, 1.0, 0.5 / size, 1.0 - 0.5 / size, (size // 2 + 0.5) / size, 1.0 + 0.5 / size],
        dtype=torch.float64,
    )


def make_locations(batch, num_query, heads, shapes, points, mode, generator) -> torch.Tensor:
    """sampling_locations [B, Nq, M, L, P, 2] (x, y) in float64.

    mode: "inside" uniform in [0, 1]; "wide" uniform in [-0.25, 1.25] (corners
    and whole samples outside); "far": "wide" with a third of the coordinates
    replaced by far-outside values; "borders": exact border values (use
    power-of-two H and W so that x * W - 0.5 is exact in every formula).
    """
    L = len(shapes)
    size = (batch, num_query, heads, L, points, 2)
    if mode == "inside":
        return torch.rand(size, dtype=torch.float64, generator=generator)
    loc = torch.rand(size, dtype=torch.float64, generator=generator) * 1.5 - 0.25
    if mode == "wide":
        return loc
    if mode == "far":
        far = torch.tensor([-1e6, -5.0, -1.0, 2.0, 7.5, 1e6], dtype=torch.float64)
        pick = torch.randint(len(far), size, generator=generator)
        replace = torch.rand(size, generator=generator) < 1 / 3
        return torch.where(replace, far[pick], loc)
    if mode == "borders":
        for level, (h, w) in enumerate(shapes):
            for axis, extent in ((0, w), (1, h)):
                special = _special_coordinates(extent)
                sub = loc[:, :, :, level, :, axis]
                pick = torch.randint(len(special), sub.shape, generator=generator)
                replace = torch.rand(sub.shape, generator=generator) < 0.7
                loc[:, :, :, level, :, axis] = torch.where(replace, special[pick], sub)
        return loc
    raise ValueError(f"unknown location mode {mode!r}")


def nudge_off_kinks(loc: torch.Tensor, shapes, margin: float = 0.1) -> torch.Tensor:
    """Moves every coordinate at least ``margin`` pixels away from an integer pixel coordinate.

    Bilinear sampling is not differentiable where x * W - 0.5 is an integer;
    finite differences across such a kink disagree with either one-sided derivative.
    """
    loc = loc.clone()
    for level, (h, w) in enumerate(shapes):
        for axis, extent in ((0, w), (1, h)):
            c = loc[:, :, :, level, :, axis]
            pixel = c * extent - 0.5
            frac = pixel - pixel.floor()
            close = (frac < margin) | (frac > 1 - margin)
            loc[:, :, :, level, :, axis] = torch.where(close, c + 0.5 / extent, c)
    return loc


class Inputs:
    """One set of op inputs; ``tensors`` maps argument names to tensors (key may be None)."""

    def __init__(self, tensors: Dict[str, Optional[torch.Tensor]], shapes):
        self.tensors = tensors
        self.shapes = [tuple(s) for s in shapes]

    def __getattr__(self, name):
        try:
            return self.__dict__["tensors"][name]
        except KeyError:
            raise AttributeError(name) from None

    def kda_args(self):
        t = self.tensors
        return (t["query"], t["key"], t["value"], t["spatial_shapes"], t["level_start_index"], t["sampling_locations"])

    def msda_args(self):
        t = self.tensors
        return (
            t["value"], t["spatial_shapes"], t["level_start_index"], t["sampling_locations"], t["attention_weights"]
        )


def make_inputs(
    *,
    batch: int = 1,
    num_query: int = 4,
    heads: int = 2,
    value_heads: Optional[int] = None,
    key_dim: int = 8,
    value_dim: Optional[int] = None,
    shapes=((4, 4),),
    points: int = 2,
    key: bool = False,
    pad: bool = False,
    locations: str = "wide",
    dtype: torch.dtype = torch.float64,
    loc_dtype: Optional[torch.dtype] = None,
    device="cpu",
    seed: int = 0,
    query_scale: float = 1.0,
) -> Inputs:
    """Random inputs for kda / msda. ``value_heads`` defaults to ``heads``, ``value_dim`` to ``key_dim``.

    pad=True zeroes the value (and key) rows of padded tokens, as
    ``value.masked_fill(padding_mask[..., None, None], 0)`` does in the encoder.
    ``loc_dtype`` is the dtype of sampling_locations and attention_weights
    (default: ``dtype``).
    """
    g = torch.Generator().manual_seed(seed)
    value_heads = heads if value_heads is None else value_heads
    value_dim = key_dim if value_dim is None else value_dim
    spatial_shapes, level_start_index = level_layout(shapes)
    S = int(spatial_shapes.prod(1).sum())
    L = len(shapes)

    def randn(*size):
        return torch.randn(size, dtype=torch.float64, generator=g)

    query = randn(batch, num_query, heads, key_dim) * query_scale
    value = randn(batch, S, value_heads, value_dim)
    key_t = randn(batch, S, value_heads, key_dim) if key else None
    if pad:
        mask = padding_mask(shapes, batch)[:, :, None, None]
        value = value.masked_fill(mask, 0.0)
        key_t = key_t.masked_fill(mask, 0.0) if key_t is not None else None
    loc = make_locations(batch, num_query, heads, shapes, points, locations, g)
    weights = randn(batch, num_query, heads, L * points).softmax(-1).view(batch, num_query, heads, L, points)

    loc_dtype = dtype if loc_dtype is None else loc_dtype
    cast = lambda t, dt: None if t is None else t.to(device=device, dtype=dt)  # noqa: E731
    return Inputs(
        dict(
            query=cast(query, dtype),
            key=cast(key_t, dtype),
            value=cast(value, dtype),
            spatial_shapes=spatial_shapes.to(device),
            level_start_index=level_start_index.to(device),
            sampling_locations=cast(loc, loc_dtype),
            attention_weights=cast(weights, loc_dtype),
        ),
        shapes,
    )


def forward_backward(
    fn: Callable[[Dict[str, torch.Tensor]], torch.Tensor],
    tensors: Dict[str, Optional[torch.Tensor]],
    grad_names: Sequence[str],
    grad_seed: int = 1,
    leaf_dtype: Optional[torch.dtype] = None,
):
    """Runs ``fn(tensors)`` with fresh leaves for ``grad_names`` and back-propagates a seeded random gradient.

    ``leaf_dtype`` converts the differentiated (floating) inputs first, e.g. to
    float64 to build a reference from the same rounded values. Returns the
    output and a dict of gradients.
    """
    args = dict(tensors)
    leaves = []
    for name in grad_names:
        t = args[name].detach()
        if leaf_dtype is not None:
            t = t.to(leaf_dtype)
        leaf = t.clone().requires_grad_()
        args[name] = leaf
        leaves.append(leaf)
    if leaf_dtype is not None:  # the other floating inputs follow, so dtypes stay consistent
        for name in ("query", "key", "value"):
            if name not in grad_names and args.get(name) is not None:
                args[name] = args[name].to(leaf_dtype)
    out = fn(args)
    g = torch.Generator().manual_seed(grad_seed)
    grad_out = torch.randn(out.shape, dtype=torch.float64, generator=g).to(device=out.device, dtype=out.dtype)
    grads = torch.autograd.grad(out, leaves, grad_out)
    return out.detach(), dict(zip(grad_names, grads))


def call_kda(scale=None):
    return lambda a: ops.kda(
        a["query"], a["key"], a["value"], a["spatial_shapes"], a["level_start_index"], a["sampling_locations"],
        scale=scale,
    )


def call_kda_reference(scale=None):
    return lambda a: ops.kda_reference(
        a["query"], a["key"], a["value"], a["spatial_shapes"], a["level_start_index"], a["sampling_locations"],
        scale=scale,
    )


def call_msda(a):
    return ops.msda(
        a["value"], a["spatial_shapes"], a["level_start_index"], a["sampling_locations"], a["attention_weights"]
    )


def call_msda_reference(a):
    return ops.msda_reference(
        a["value"], a["spatial_shapes"], a["level_start_index"], a["sampling_locations"], a["attention_weights"]
    )


def kda_grad_names(inputs: Inputs):
    names = ["query", "value", "sampling_locations"]
    return names[:1] + (["key"] if inputs.key is not None else []) + names[1:]


MSDA_GRAD_NAMES = ["value", "sampling_locations", "attention_weights"]


def assert_scaled_close(actual: torch.Tensor, expected: torch.Tensor, rel: float, what: str = "") -> None:
    """max |actual - expected| <= rel * max(1, max |expected|), computed in float64.

    Used for low precision, where an element-wise rtol is meaningless for
    entries near zero of a tensor with large entries.
    """
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a = actual.detach().double().cpu()
    e = expected.detach().double().cpu()
    assert torch.isfinite(a).all(), f"{what}: non-finite values"
    bound = rel * max(1.0, e.abs().max().item() if e.numel() else 0.0)
    err = (a - e).abs().max().item() if e.numel() else 0.0
    assert err <= bound, f"{what}: max abs error {err:.3g} > {bound:.3g}"
