"""The Lite DETR paper's encoder GFLOPs (CVPR 2023), as data.

One dict per published figure. Keys:

* ``key``: a unique id; ``standard`` names the row this one is compared with
  (the 4-scale standard encoder of the same detector).
* ``table``: where the figure is printed ("3", "4", "5", "6"; "3/6" when both
  of the paper's Deformable DETR tables print it).
* ``model``, ``variant`` (``"standard"`` or ``HxLy-(A+1)xB``), ``attention``
  (``"msda"``: deformable attention with predicted weights; ``"kda"``:
  key-aware), ``feedforward_dim``, ``num_levels`` (the standard 3/2-scale
  baselines keep only the lowest-resolution levels).
* ``gflops``: the published encoder GFLOPs; ``gflops_range`` the (low, high)
  pair where the paper's Tables 3 and 6 disagree, with ``sources`` giving
  which table prints which.
* ``checked``: whether the reproduction must land within ±5% of this row's
  ratio to its standard encoder (Tables 4 and 6, the Table 5 HL+LL rows);
  baselines and ablations without a Lite layout are informational.

Paper numbering: Table 3 holds Deformable DETR and its Lite variants, Table 4
DINO and H-DETR, Table 5 the DINO component ablation, Table 6 the Deformable
DETR layout ablation. Tables 4 and 5 print the same figure for the same
Lite-DINO layouts (53 and 30).
"""
from typing import Dict, List, Optional, Tuple

_DINO = dict(attention="kda", feedforward_dim=2048, num_levels=4)
_DEFORMABLE = dict(model="Deformable DETR", attention="msda", feedforward_dim=1024, num_levels=4)


def _row(key, table, model, variant, gflops, standard, checked, *, gflops_range=None, sources=None, note="", **spec):
    row = dict(
        key=key,
        table=table,
        model=model,
        variant=variant,
        gflops=float(gflops),
        gflops_range=gflops_range,
        sources=sources or {f"Table {table}": gflops},
        standard=standard,
        checked=checked,
        note=note,
    )
    row.update(spec)
    return row


PAPER_ENCODER_GFLOPS: List[Dict] = [
    # Table 4: DINO and H-DETR (R50 and Swin-T print the same encoder cost).
    _row("dino", "4", "DINO", "standard", 137, "dino", False, attention="msda", feedforward_dim=2048, num_levels=4),
    _row("dino-h2l2-2x3", "4", "Lite-DINO", "H2L2-(2+1)x3", 30, "dino", True, **_DINO),
    _row("dino-h3l1-6x1", "4", "Lite-DINO", "H3L1-(6+1)x1", 41, "dino", True, **_DINO),
    _row("dino-h3l1-2x3", "4", "Lite-DINO", "H3L1-(2+1)x3", 53, "dino", True, **_DINO),
    _row("hdetr", "4", "H-DETR", "standard", 137, "hdetr", False, attention="msda", feedforward_dim=2048, num_levels=4),
    _row("hdetr-h2l2-2x3", "4", "Lite-H-DETR", "H2L2-(2+1)x3", 30, "hdetr", True, **_DINO),
    _row("hdetr-h3l1-6x1", "4", "Lite-H-DETR", "H3L1-(6+1)x1", 41, "hdetr", True, **_DINO),
    _row("hdetr-h3l1-2x3", "4", "Lite-H-DETR", "H3L1-(2+1)x3", 53, "hdetr", True, **_DINO),
    # Table 5: DINO-R50 component ablation (HL: high-level fusion, LL: low-level fusion).
    _row("dino-3scale", "5", "DINO-3scale", "standard", 31, "dino", False, attention="msda", feedforward_dim=2048,
         num_levels=3, note="baseline: the 3 lowest-resolution levels only"),
    _row("dino-3scale-kda", "5", "DINO-3scale + KDA", "standard", 34, "dino", False, attention="kda",
         feedforward_dim=2048, num_levels=3, note="ablation: 3 levels with KDA"),
    _row("dino-h3-hl-ll", "5", "DINO H3 HL+LL", "H3L1-(2+1)x3", 49, "dino", True, attention="msda",
         feedforward_dim=2048, num_levels=4),
    _row("dino-h3-hl-ll-kda", "5", "DINO H3 HL+LL+KDA", "H3L1-(2+1)x3", 53, "dino", True, **_DINO),
    _row("dino-2scale", "5", "DINO-2scale", "standard", 14, "dino", False, attention="msda", feedforward_dim=2048,
         num_levels=2, note="baseline: the 2 lowest-resolution levels only"),
    _row("dino-h2-hl-ll", "5", "DINO H2 HL+LL", "H2L2-(2+1)x3", 26, "dino", True, attention="msda",
         feedforward_dim=2048, num_levels=4),
    _row("dino-h2-hl-ll-kda", "5", "DINO H2 HL+LL+KDA", "H2L2-(2+1)x3", 30, "dino", True, **_DINO),
    # Tables 3 and 6: Deformable DETR (R50, 50 epochs).
    _row("deformable", "3/6", "Deformable DETR", "standard", 90, "deformable", False, attention="msda",
         feedforward_dim=1024, num_levels=4, sources={"Table 3": 90, "Table 6": 90}),
    _row("deformable-3scale", "6", "Deformable DETR-3scale", "standard", 16, "deformable", False, attention="msda",
         feedforward_dim=1024, num_levels=3, note="baseline: the 3 lowest-resolution levels only"),
    _row("deformable-2scale", "6", "Deformable DETR-2scale", "standard", 9, "deformable", False, attention="msda",
         feedforward_dim=1024, num_levels=2, note="baseline: the 2 lowest-resolution levels only"),
    _row("deformable-h2l2-2x3", "3/6", "Lite-Deformable DETR", "H2L2-(2+1)x3", 23, "deformable", True,
         sources={"Table 3": 23, "Table 6": 23}, **{k: v for k, v in _DEFORMABLE.items() if k != "model"}),
    _row("deformable-h3l1-6x1", "3/6", "Lite-Deformable DETR", "H3L1-(6+1)x1", 29, "deformable", True,
         gflops_range=(28, 30), sources={"Table 3": 30, "Table 6": 28},
         note="Table 6 prints this row as 'H2L2-(6+1)x1', a typo for H3L1-(6+1)x1 (Table 3)",
         **{k: v for k, v in _DEFORMABLE.items() if k != "model"}),
    _row("deformable-h3l1-3x2", "3/6", "Lite-Deformable DETR", "H3L1-(3+1)x2", 33.5, "deformable", True,
         gflops_range=(32, 35), sources={"Table 3": 35, "Table 6": 32},
         **{k: v for k, v in _DEFORMABLE.items() if k != "model"}),
    _row("deformable-h3l1-2x3", "3/6", "Lite-Deformable DETR", "H3L1-(2+1)x3", 37.5, "deformable", True,
         gflops_range=(36, 39), sources={"Table 3": 39, "Table 6": 36},
         **{k: v for k, v in _DEFORMABLE.items() if k != "model"}),
    _row("deformable-h3l1-2x4", "6", "Lite-Deformable DETR", "H3L1-(2+1)x4", 50, "deformable", True,
         **{k: v for k, v in _DEFORMABLE.items() if k != "model"}),
]

PAPER_BY_KEY: Dict[str, Dict] = {row["key"]: row for row in PAPER_ENCODER_GFLOPS}

# The relative tolerance on the Lite/standard ratio that the reproduction must meet.
RATIO_TOLERANCE = 0.05


def paper_row(key: str) -> Dict:
    """The published row ``key`` (see ``PAPER_ENCODER_GFLOPS``)."""
    try:
        return PAPER_BY_KEY[key]
    except KeyError:
        raise KeyError(f"no paper row {key!r}; known: {', '.join(PAPER_BY_KEY)}") from None


def paper_ratio_range(row: Dict) -> Tuple[float, float]:
    """(low, high) of the row's published GFLOPs over its standard encoder's (equal ends without a range)."""
    standard = PAPER_BY_KEY[row["standard"]]["gflops"]
    low, high = row["gflops_range"] or (row["gflops"], row["gflops"])
    return low / standard, high / standard


def ratio_deviation(ratio: float, row: Dict) -> float:
    """Relative deviation of ``ratio`` from the paper's: 0 inside a published range, else from the nearer end."""
    low, high = paper_ratio_range(row)
    if ratio < low:
        return ratio / low - 1.0
    if ratio > high:
        return ratio / high - 1.0
    return 0.0


def within_tolerance(ratio: float, row: Dict, tolerance: Optional[float] = None) -> bool:
    """Whether ``ratio`` is within ±tolerance (default 5%) of the paper's ratio (or its range)."""
    tolerance = RATIO_TOLERANCE if tolerance is None else tolerance
    return abs(ratio_deviation(ratio, row)) <= tolerance + 1e-12
