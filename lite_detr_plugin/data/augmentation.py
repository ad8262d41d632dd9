"""``RandomZoomOut``: a detectron2 ``Augmentation`` (imports detectron2; not imported by the package).

Use it from any LazyConfig, before the resize, so that the zoomed-out objects
come out smaller::

    from lite_detr_plugin.data.augmentation import RandomZoomOut
    dataloader.train.mapper.augmentation.insert(0, L(RandomZoomOut)(p=0.5, max_ratio=2.0, fill=0))
"""
from typing import Sequence, Union

import numpy as np
from detectron2.data.transforms import Augmentation, NoOpTransform

from .zoom_out import ZoomOutTransform

__all__ = ["RandomZoomOut"]


class RandomZoomOut(Augmentation):
    """With probability ``p``, places the image on a canvas ``r`` times its size.

    ``r`` is uniform in ``[1, max_ratio]`` (the same for both sides, so the aspect
    ratio is kept), the image's position uniform over the canvas; the canvas is
    ``fill`` (a scalar or one value per channel, in the image's pixel values).
    Boxes, polygons, keypoints and masks move exactly (:class:`ZoomOutTransform`).

    Args:
        p: probability of zooming out, in [0, 1].
        max_ratio: largest canvas side / image side, >= 1.
        fill: canvas value.
    """

    def __init__(self, p: float = 0.5, max_ratio: float = 2.0, fill: Union[float, Sequence[float]] = 0):
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"RandomZoomOut: p must be in [0, 1], got {p!r}")
        if not float(max_ratio) >= 1.0:
            raise ValueError(f"RandomZoomOut: max_ratio must be >= 1, got {max_ratio!r}")
        fill = tuple(fill) if isinstance(fill, (list, tuple)) else fill
        self._init(dict(p=float(p), max_ratio=float(max_ratio), fill=fill))

    def get_transform(self, image: np.ndarray):
        h, w = image.shape[:2]
        if self._rand_range() >= self.p:
            return NoOpTransform()
        ratio = self._rand_range(1.0, self.max_ratio)
        canvas_h, canvas_w = int(round(h * ratio)), int(round(w * ratio))
        # Integer offsets, so that pixels are copied, not resampled: boxes move exactly.
        y0 = int(np.random.randint(0, canvas_h - h + 1))
        x0 = int(np.random.randint(0, canvas_w - w + 1))
        return ZoomOutTransform(h, w, canvas_h, canvas_w, x0, y0, fill=self.fill)
