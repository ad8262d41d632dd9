"""What detrex's DINO / H-DETR / Deformable DETR transformers pass to their encoder.

Everything here is written out from detrex's code (v0.3.0), not imported from it:

* ``DINO.forward`` pads the images of a batch to a common canvas and builds
  ``img_masks`` (1 = padding) of the canvas size; each level's mask is
  ``F.interpolate(img_masks[None], size=(h, w)).bool()[0]`` (nearest).
* ``PositionEmbeddingSine(num_pos_feats=C/2, temperature=10000, normalize=True,
  offset=-0.5)`` of each level's mask, plus the transformer's ``level_embeds[l]``.
* ``get_valid_ratio``: the unpadded fraction of each level, ordered **(w, h)**.
* ``get_reference_points``: per level the pixel centres ``(x + 0.5, y + 0.5)``
  divided by the valid size, then multiplied by every level's valid ratio:
  ``[bs, N, L, 2]`` in (x, y).
* ``spatial_shapes [L, 2]`` int64 (H, W), ``level_start_index [L]`` int64.

Level shapes follow ResNet's arithmetic: every stride-2 stage maps a side ``s``
to ``ceil(s / 2)``. With 4 levels the strides are 8, 16, 32, 64 (res3, res4,
res5, an extra stride-2 conv); with 5 levels res2 (stride 4) comes first. At
800×1333 that gives 100×167, 50×84, 25×42, 13×21 (22,223 tokens).

The call is ``encoder(**detrex_encoder_kwargs(...))``, keyword for keyword what
``DINOTransformer.forward`` passes (``key=None, value=None``).
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = [
    "COCO_800x1333_SHAPES",
    "feature_shapes",
    "level_layout",
    "image_masks",
    "level_masks",
    "valid_ratios",
    "sine_position_embedding",
    "encoder_reference_points",
    "detrex_encoder_kwargs",
    "num_tokens",
]

Shape = Tuple[int, int]

COCO_800x1333_SHAPES: Tuple[Shape, ...] = ((100, 167), (50, 84), (25, 42), (13, 21))


def _ceil_halve(size: int, times: int) -> int:
    for _ in range(times):
        size = (size + 1) // 2
    return size


def feature_shapes(height: int, width: int, num_levels: int = 4) -> List[Shape]:
    """(h, w) of each level for an image canvas of ``height × width``.

    The last level has stride 64 and each earlier one half of the next: strides
    8, 16, 32, 64 for 4 levels (DINO 4scale), 4, 8, ..., 64 for 5 (5scale).
    """
    if not isinstance(num_levels, int) or not 1 <= num_levels <= 6:
        raise ValueError(f"num_levels must be an integer in [1, 6], got {num_levels!r}")
    first = 7 - num_levels  # log2 of the first stride
    return [(_ceil_halve(height, first + i), _ceil_halve(width, first + i)) for i in range(num_levels)]


def num_tokens(shapes: Sequence[Shape]) -> int:
    return sum(h * w for h, w in shapes)


def level_layout(shapes: Sequence[Shape],
                 device: Union[str, torch.device] = "cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """``spatial_shapes [L, 2]`` int64 (H, W) and ``level_start_index [L]`` int64, as detrex builds them."""
    spatial_shapes = torch.as_tensor([list(s) for s in shapes], dtype=torch.long, device=device)
    level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
    return spatial_shapes, level_start_index


def image_masks(image_sizes: Sequence[Shape], canvas: Optional[Shape] = None,
                device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """``[bs, H, W]`` bool, True on padding: each image sits top-left in the canvas (DINO.forward).

    ``canvas`` defaults to the largest height and width in the batch, as ImageList pads.
    """
    if canvas is None:
        canvas = (max(h for h, _ in image_sizes), max(w for _, w in image_sizes))
    H, W = canvas
    masks = torch.ones(len(image_sizes), H, W, dtype=torch.bool, device=device)
    for index, (h, w) in enumerate(image_sizes):
        if not (1 <= h <= H and 1 <= w <= W):
            raise ValueError(f"image {index} of size {(h, w)} does not fit the canvas {(H, W)}")
        masks[index, :h, :w] = False
    return masks


def level_masks(img_masks: torch.Tensor, shapes: Sequence[Shape]) -> List[torch.Tensor]:
    """Each level's ``[bs, h, w]`` bool padding mask: nearest interpolation of the image mask."""
    as_float = img_masks.to(torch.float32)
    return [F.interpolate(as_float[None], size=tuple(shape)).to(torch.bool)[0] for shape in shapes]


def valid_ratios(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[bs, L, 2]`` float32, (w, h): detrex's ``get_valid_ratio`` of each level, stacked on dim 1."""
    ratios = []
    for mask in masks:
        _, H, W = mask.shape
        valid_h = (~mask[:, :, 0]).sum(1).float() / H
        valid_w = (~mask[:, 0, :]).sum(1).float() / W
        ratios.append(torch.stack([valid_w, valid_h], -1))
    return torch.stack(ratios, 1)


def sine_position_embedding(mask: torch.Tensor, num_pos_feats: int = 128, temperature: float = 10000.0,
                            normalize: bool = True, scale: float = 2 * math.pi, offset: float = -0.5,
                            eps: float = 1e-6) -> torch.Tensor:
    """detrex's ``PositionEmbeddingSine`` of a ``[bs, h, w]`` padding mask: ``[bs, 2·num_pos_feats, h, w]``."""
    not_mask = ~mask
    y_embed = not_mask.cumsum(1, dtype=torch.float32)
    x_embed = not_mask.cumsum(2, dtype=torch.float32)
    if normalize:
        y_embed = (y_embed + offset) / (y_embed[:, -1:, :] + eps) * scale
        x_embed = (x_embed + offset) / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=mask.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_x = x_embed[..., None] / dim_t
    pos_y = y_embed[..., None] / dim_t
    bs, h, w = mask.shape
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).view(bs, h, w, -1)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).view(bs, h, w, -1)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def encoder_reference_points(spatial_shapes: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    """detrex's ``get_reference_points`` (DINO / H-DETR / Deformable DETR): ``[bs, N, L, 2]`` (x, y)."""
    per_level = []
    for level, (H, W) in enumerate(spatial_shapes.tolist()):
        ref_y, ref_x = torch.meshgrid(
            torch.linspace(0.5, H - 0.5, H, dtype=torch.float32, device=ratios.device),
            torch.linspace(0.5, W - 0.5, W, dtype=torch.float32, device=ratios.device),
            indexing="ij",
        )
        ref_y = ref_y.reshape(-1)[None] / (ratios[:, None, level, 1] * H)
        ref_x = ref_x.reshape(-1)[None] / (ratios[:, None, level, 0] * W)
        per_level.append(torch.stack((ref_x, ref_y), -1))
    reference_points = torch.cat(per_level, 1)
    return reference_points[:, :, None] * ratios[:, None]


def detrex_encoder_kwargs(
    image_sizes: Optional[Sequence[Shape]] = None,
    *,
    canvas: Optional[Shape] = None,
    batch_size: int = 1,
    num_levels: int = 4,
    embed_dim: int = 256,
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device] = "cpu",
    seed: int = 0,
    requires_grad: bool = False,
) -> Dict[str, Optional[torch.Tensor]]:
    """The keyword arguments ``DINOTransformer.forward`` passes to its encoder, for a padded batch.

    Args:
        image_sizes: (h, w) of each image before padding; default ``batch_size``
            copies of ``canvas`` (no padding, as at evaluation with one image).
        canvas: the padded batch size (H, W); default the largest image sides.
        num_levels: 4 (strides 8..64) or 5 (strides 4..64), see :func:`feature_shapes`.
        embed_dim: C; the sine embedding uses C/2 features per axis.
        dtype: of ``query`` and ``query_pos`` (as under AMP, where the features may be
            half precision); ``reference_points`` and ``valid_ratios`` stay float32 as in detrex.
        seed: the features and level embeddings are N(0, 1) draws from this seed.
        requires_grad: make ``query`` and ``query_pos`` leaves that require grad.

    Returns:
        ``dict(query, key=None, value=None, query_pos, query_key_padding_mask,
        spatial_shapes, reference_points, level_start_index, valid_ratios)``:
        ``query``/``query_pos`` ``[bs, N, C]``, mask ``[bs, N]`` bool (True = pad),
        ``spatial_shapes [L, 2]`` int64, ``reference_points [bs, N, L, 2]`` float32,
        ``level_start_index [L]`` int64, ``valid_ratios [bs, L, 2]`` float32 (w, h).
    """
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even (sine embedding of C/2 per axis), got {embed_dim}")
    if image_sizes is None:
        if canvas is None:
            raise ValueError("give image_sizes or canvas")
        image_sizes = [tuple(canvas)] * batch_size
    img_masks = image_masks(image_sizes, canvas)
    shapes = feature_shapes(img_masks.shape[1], img_masks.shape[2], num_levels)
    masks = level_masks(img_masks, shapes)  # nearest sampling keeps pixel (0, 0): every level has a valid pixel
    ratios = valid_ratios(masks)
    spatial_shapes, level_start_index = level_layout(shapes)
    generator = torch.Generator().manual_seed(seed)
    bs = len(image_sizes)
    features = torch.randn(bs, num_tokens(shapes), embed_dim, generator=generator)
    level_embeds = torch.randn(num_levels, embed_dim, generator=generator)
    pos = []
    for level, mask in enumerate(masks):
        embedding = sine_position_embedding(mask, num_pos_feats=embed_dim // 2)
        pos.append(embedding.flatten(2).transpose(1, 2) + level_embeds[level].view(1, 1, -1))
    query_pos = torch.cat(pos, 1)
    mask_flatten = torch.cat([mask.flatten(1) for mask in masks], 1)
    reference_points = encoder_reference_points(spatial_shapes, ratios)
    query = features.to(device=device, dtype=dtype)
    query_pos = query_pos.to(device=device, dtype=dtype)
    if requires_grad:
        query.requires_grad_(True)
        query_pos.requires_grad_(True)
    return dict(
        query=query,
        key=None,
        value=None,
        query_pos=query_pos,
        query_key_padding_mask=mask_flatten.to(device),
        spatial_shapes=spatial_shapes.to(device),
        reference_points=reference_points.to(device),
        level_start_index=level_start_index.to(device),
        valid_ratios=ratios.to(device),
    )
