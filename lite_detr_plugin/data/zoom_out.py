"""Zoom-out: an image placed on a larger canvas, with its boxes, polygons and masks moved exactly.

Seed 003 (*Improving the Efficiency-Accuracy Trade-off of DETR-Style Models in
Practice*, Table 2) trains with random zoom-out so that the model sees more small
objects. :class:`ZoomOutTransform` is the deterministic step, an fvcore
``Transform`` (numpy only); :class:`lite_detr_plugin.data.augmentation.RandomZoomOut`
is the detectron2 ``Augmentation`` that draws it.
"""
from typing import Sequence, Union

import numpy as np
from fvcore.transforms.transform import CropTransform, Transform

__all__ = ["ZoomOutTransform"]

Fill = Union[float, Sequence[float]]


class ZoomOutTransform(Transform):
    """Pastes an ``h × w`` image at ``(x0, y0)`` of a ``canvas_h × canvas_w`` canvas of ``fill``.

    Coordinates move by ``(x0, y0)`` (pixel ``i`` covers ``[i, i + 1)``, so a box
    ``[x1, y1, x2, y2]`` becomes ``[x1 + x0, y1 + y0, x2 + x0, y2 + y0]`` and stays
    inside the canvas); segmentation masks are padded with ``seg_fill``.

    Args:
        h, w: the input image size.
        canvas_h, canvas_w: the output size, ``>= h + y0`` and ``>= w + x0``.
        x0, y0: where the image's top-left pixel lands.
        fill: canvas value, a scalar or one value per channel.
        seg_fill: value of the added area in segmentation masks.
    """

    def __init__(self, h: int, w: int, canvas_h: int, canvas_w: int, x0: int, y0: int, fill: Fill = 0, seg_fill: int = 0):
        super().__init__()
        for name, value in (("h", h), ("w", w), ("canvas_h", canvas_h), ("canvas_w", canvas_w)):
            if int(value) != value or value < 1:
                raise ValueError(f"ZoomOutTransform: {name} must be a positive integer, got {value!r}")
        if int(x0) != x0 or int(y0) != y0 or x0 < 0 or y0 < 0:
            raise ValueError(f"ZoomOutTransform: x0 and y0 must be non-negative integers, got {x0!r}, {y0!r}")
        if x0 + w > canvas_w or y0 + h > canvas_h:
            raise ValueError(
                f"ZoomOutTransform: a {h}x{w} image at (x0={x0}, y0={y0}) does not fit a "
                f"{canvas_h}x{canvas_w} canvas"
            )
        self._set_attributes(
            dict(h=int(h), w=int(w), canvas_h=int(canvas_h), canvas_w=int(canvas_w), x0=int(x0), y0=int(y0),
                 fill=fill, seg_fill=seg_fill)
        )

    def _check_size(self, array: np.ndarray, what: str) -> None:
        if array.shape[:2] != (self.h, self.w):
            raise ValueError(
                f"ZoomOutTransform: {what} must be {self.h}x{self.w} (H x W), got shape {list(array.shape)}"
            )

    def _paste(self, array: np.ndarray, fill) -> np.ndarray:
        canvas = np.empty((self.canvas_h, self.canvas_w) + array.shape[2:], dtype=array.dtype)
        canvas[...] = np.asarray(fill, dtype=np.float64).astype(array.dtype)  # broadcasts per channel
        canvas[self.y0 : self.y0 + self.h, self.x0 : self.x0 + self.w] = array
        return canvas

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """``[h, w]`` or ``[h, w, C]`` -> ``[canvas_h, canvas_w(, C)]``, same dtype."""
        self._check_size(img, "the image")
        fill = np.asarray(self.fill, dtype=np.float64)
        if fill.ndim and img.ndim == 3 and fill.shape[0] not in (1, img.shape[2]):
            raise ValueError(
                f"ZoomOutTransform: fill has {fill.shape[0]} values but the image has {img.shape[2]} channels"
            )
        return self._paste(img, fill)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        self._check_size(segmentation, "the segmentation")
        return self._paste(segmentation, self.seg_fill)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """``[N, 2]`` (x, y) in pixels -> moved by ``(x0, y0)``."""
        coords = np.asarray(coords)
        out = coords.astype(coords.dtype if np.issubdtype(coords.dtype, np.floating) else np.float64, copy=True)
        out[:, 0] += self.x0
        out[:, 1] += self.y0
        return out

    def inverse(self) -> Transform:
        return CropTransform(self.x0, self.y0, self.w, self.h, orig_w=self.canvas_w, orig_h=self.canvas_h)
