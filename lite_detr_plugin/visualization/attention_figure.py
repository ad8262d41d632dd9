"""Lite DETR's Fig. 5 from recorded attention: where one query and all queries look, per scale.

Scales are named as in the paper: S1 is the lowest resolution (detrex's last
level), S4 the highest of a 4-level model (level 0). Panels, for one recorded
encoder layer:

* (a) the query token of S1 under a point ("+"), and the top-100 of its M·L·P
  sampling locations by attention weight, on all scales (S4 as triangles);
* (b), (c) the top-200 sampling locations on S3 and on S4 over all query tokens.

Points are coloured by weight; the marker says the scale.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .recorder import AttentionRecord

__all__ = ["ImageGeometry", "FigureRow", "query_for_point", "select_record", "panel_points", "draw_figure"]

MARKERS = ("o", "s", "D", "^", "v", "p")  # S1, S2, S3, S4, ... (S4: triangles, as in the paper)
KIND_NAMES = {"msda": "deformable attention (MSDA)", "kda": "KDA"}


@dataclass(frozen=True)
class ImageGeometry:
    """Sizes ``(H, W)`` of the image file, the model input after the test resize, and the
    padded tensor the backbone saw (the feature maps cover the padded tensor)."""

    original_size: Tuple[int, int]
    input_size: Tuple[int, int]
    padded_size: Tuple[int, int]

    def strides(self, spatial_shapes: torch.Tensor) -> List[float]:
        """Each level's stride in input pixels (a power of two: maps are ceil(padded / stride))."""
        return [2.0 ** round(math.log2(self.padded_size[1] / int(w))) for _, w in spatial_shapes.tolist()]

    def scale(self) -> Tuple[float, float]:
        """(sx, sy): input pixels -> original pixels."""
        return self.original_size[1] / self.input_size[1], self.original_size[0] / self.input_size[0]

    def to_pixels(self, locations: torch.Tensor, levels: torch.Tensor, spatial_shapes: torch.Tensor) -> np.ndarray:
        """``[N, 2]`` normalised (x, y) on the given levels ``[N]`` -> ``[N, 2]`` pixels of the original image."""
        strides = torch.tensor(self.strides(spatial_shapes), dtype=torch.float64)
        sizes = spatial_shapes.flip(-1).double()  # (W, H)
        pixels = locations.double() * sizes[levels] * strides[levels, None]
        sx, sy = self.scale()
        return (pixels * torch.tensor([sx, sy], dtype=torch.float64)).numpy()


def scale_name(level: int, num_levels: int) -> str:
    return f"S{num_levels - level}"


def query_for_point(record: AttentionRecord, geometry: ImageGeometry, point_xy: Sequence[float]) -> Tuple[int, np.ndarray]:
    """The S1 token under ``point_xy`` (original pixels): ``(token index, its centre in original pixels)``."""
    level = record.spatial_shapes.shape[0] - 1
    height, width = record.spatial_shapes[level].tolist()
    stride = geometry.strides(record.spatial_shapes)[level]
    sx, sy = geometry.scale()
    column = min(max(int(point_xy[0] / sx // stride), 0), width - 1)
    row = min(max(int(point_xy[1] / sy // stride), 0), height - 1)
    token = int(record.level_start_index[level]) + row * width + column
    return token, np.array([(column + 0.5) * stride * sx, (row + 0.5) * stride * sy])


def select_record(records: Sequence[AttentionRecord], token: int, layer: Optional[int] = None) -> AttentionRecord:
    """``records[layer]``, or by default the last encoder call in which ``token`` is a query."""
    if layer is not None:
        record = records[layer]
        if record.query_tokens() is None or token not in record.query_tokens():
            raise ValueError(f"--layer {layer} ({record.name}) has no query at token {token}: it queries "
                             f"{record.query_tokens()}")
        return record
    for record in reversed(records):
        tokens = record.query_tokens()
        if tokens is not None and token in tokens:
            return record
    raise ValueError("no recorded encoder layer has the lowest-resolution (S1) tokens as queries")


def panel_points(record: AttentionRecord, geometry: ImageGeometry, token: int, top_query: int = 100,
                 top_scale: int = 200, batch: int = 0) -> Dict[str, Dict[str, np.ndarray]]:
    """The three panels' points: ``{"a"|"b"|"c": {"xy" [N, 2] pixels, "weight" [N], "level" [N]}}``."""
    num_levels = record.spatial_shapes.shape[0]
    M, L, P = record.weights.shape[2:]
    levels_grid = torch.arange(L).view(1, L, 1).expand(M, L, P)

    def top(weights, locations, levels, k):
        k = min(k, weights.numel())
        order = weights.flatten().topk(k).indices
        locations, levels = locations.reshape(-1, 2)[order], levels.flatten()[order]
        return {"xy": geometry.to_pixels(locations, levels, record.spatial_shapes),
                "weight": weights.flatten()[order].numpy(), "level": levels.numpy()}

    query = token - record.query_start
    panels = {"a": top(record.weights[batch, query], record.locations[batch, query], levels_grid, top_query)}
    for panel, scale in (("b", 3), ("c", 4)):
        level = num_levels - scale
        if level < 0:
            continue
        weights = record.weights[batch, :, :, level]  # [Nq, M, P]
        locations = record.locations[batch, :, :, level]
        panels[panel] = top(weights, locations, torch.full_like(weights, level, dtype=torch.long), top_scale)
    return panels


@dataclass
class FigureRow:
    """One row of the figure: a label, the record it draws, and the query token of panel (a)."""

    label: str
    record: AttentionRecord
    token: int
    query_xy: np.ndarray


def draw_figure(image_rgb: np.ndarray, rows: List[FigureRow], geometry: ImageGeometry, path: str,
                top_query: int = 100, top_scale: int = 200, dpi: int = 80) -> str:
    """Writes the Fig. 5-style PNG: one row per entry of ``rows``, panels (a), (b), (c). Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not rows:
        raise ValueError("draw_figure: no rows to draw")
    height, width = image_rgb.shape[:2]
    panel_width = 3.6
    fig, axes = plt.subplots(len(rows), 3, figsize=(3 * panel_width, len(rows) * panel_width * height / width + 0.6),
                             dpi=dpi, squeeze=False)
    titles = {"a": f"(a) top-{top_query} locations of one S1 query", "b": f"(b) top-{top_scale} on S3, all queries",
              "c": f"(c) top-{top_scale} on S4, all queries"}
    for r, row in enumerate(rows):
        num_levels = row.record.spatial_shapes.shape[0]
        panels = panel_points(row.record, geometry, row.token, top_query, top_scale)
        for c, key in enumerate("abc"):
            ax = axes[r][c]
            ax.imshow(image_rgb)
            ax.set_xticks([])
            ax.set_yticks([])
            if key not in panels:
                ax.set_title(f"({key}) needs 4 scales", fontsize=8)
                continue
            points = panels[key]
            vmax = float(points["weight"].max()) if len(points["weight"]) else 1.0
            for level in np.unique(points["level"]):
                chosen = points["level"] == level
                scatter = ax.scatter(points["xy"][chosen, 0], points["xy"][chosen, 1], c=points["weight"][chosen],
                                     cmap="jet", vmin=0.0, vmax=vmax, s=16, marker=MARKERS[(num_levels - 1 - level) % 6],
                                     edgecolors="white", linewidths=0.3)
            if key == "a":
                ax.plot(*row.query_xy, "+", color="lime", ms=14, mew=2.5)
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
            ax.set_title(titles[key] if r == 0 else "", fontsize=8)
            fig.colorbar(scatter, ax=ax, fraction=0.035, pad=0.01).ax.tick_params(labelsize=6)
        axes[r][0].set_ylabel(f"{row.label}\n{row.record.name.split('transformer.')[-1]}", fontsize=8)
    handles = [Line2D([], [], marker=MARKERS[k % 6], linestyle="", color="gray", label=scale_name(num_levels - 1 - k, num_levels))
               for k in range(num_levels)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               title="scale (S1: lowest resolution); colour: attention weight", title_fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path
