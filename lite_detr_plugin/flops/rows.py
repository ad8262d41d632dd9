"""The encoder GFLOPs report as data: one row per paper row and report mode, the per-layer breakdown,
the summary.

:func:`build_report` counts every encoder of the paper's Tables 4-6 (see
:mod:`~lite_detr_plugin.flops.specs`) and compares it with the paper. The paper's
GFLOPs come from its own scripts, at its own input and counting, so each Lite
variant is compared as the ratio Lite/standard at the same input against the
paper's ratio. :mod:`~lite_detr_plugin.flops.rendering` writes it out.
"""
import time
from dataclasses import replace
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .traces import Counted, EncoderCounter
from .paper import PAPER_BY_KEY, PAPER_ENCODER_GFLOPS, paper_ratio_range, ratio_deviation, within_tolerance
from .specs import (
    BREAKDOWN_KEY,
    CHECKED_MODE,
    DEFAULT_SIZE,
    NUM_LEVELS,
    REPORT_MODES,
    EncoderSpec,
    check_modes,
    row_specs,
    standard_spec,
)


def _query_tokens(row: Dict, shapes) -> int:
    if row["variant"] == "standard":
        return sum(h * w for h, w in shapes[NUM_LEVELS - row["num_levels"]:])
    from ..encoders import parse_variant

    high = parse_variant(row["variant"]).num_high_levels
    return sum(h * w for h, w in shapes[NUM_LEVELS - high:])


def build_report(
    size: Tuple[int, int] = DEFAULT_SIZE,
    counting: str = "paper",
    keys: Optional[Iterable[str]] = None,
    breakdown: bool = True,
    progress: Optional[Callable[[str], None]] = None,
    exact: bool = False,
    modes: Sequence[str] = tuple(REPORT_MODES),
) -> Dict:
    """Count every encoder of the paper's tables at ``size`` and compare with the paper.

    Args:
        size: (height, width) of the input image.
        counting: the FLOP counting conventions, "paper" (fvcore's) or "full" (see
            :mod:`~lite_detr_plugin.flops.handles`).
        keys: only these paper rows (see ``PAPER_ENCODER_GFLOPS``); their standard encoders are
            counted as the ratios' denominators.
        breakdown: also count the per-layer breakdown of :data:`BREAKDOWN_KEY` (when it is
            selected, all three modes are counted and ``counting="paper"``).
        progress: called with a label before each encoder is traced.
        exact: trace every layer of every encoder instead of one unit per kind of layer
            (same counts, several times slower; see ``EncoderSpec.unit``).
        modes: the report's encoder modes to count (:data:`~lite_detr_plugin.flops.specs.REPORT_MODES`:
            "paper", "paper_exact", "released"; default all three).

    Returns:
        ``dict(size, counting, modes, shapes, num_tokens, rows, breakdown, seconds, encoders_traced, exact)``;
        ``rows`` as written by ``--json``: one per paper row and report mode.
    """
    start = time.perf_counter()
    modes = check_modes(modes)
    if keys is not None:
        keys = list(keys)
        unknown = set(keys) - set(PAPER_BY_KEY)
        if unknown:
            raise KeyError(f"unknown paper rows {sorted(unknown)}; known: {', '.join(PAPER_BY_KEY)}")
    counter = EncoderCounter(tuple(size), counting, progress, exact=exact)
    selected = [row for row in PAPER_ENCODER_GFLOPS if keys is None or row["key"] in set(keys)]
    num_tokens = sum(h * w for h, w in counter.shapes)
    rows = []
    for paper in selected:
        standard = counter(standard_spec(paper))
        for row_mode, spec in row_specs(paper, modes).items():
            rows.append(_row(paper, row_mode, spec, counter(spec), standard, counter, num_tokens))
    report = dict(
        size=list(size),
        counting=counting,
        modes=list(modes),
        shapes=[list(s) for s in counter.shapes],
        num_tokens=num_tokens,
        rows=rows,
        breakdown=None,
    )
    if (breakdown and counting == "paper" and set(modes) == set(REPORT_MODES)
            and BREAKDOWN_KEY in [r["key"] for r in selected]):
        report["breakdown"] = build_breakdown(counter, PAPER_BY_KEY[BREAKDOWN_KEY])
    report["seconds"] = round(time.perf_counter() - start, 2)
    report["encoders_traced"] = len(counter.traces)
    report["exact"] = exact
    return report


def _paper_fields(paper: Dict, names: Sequence[str]) -> Dict:
    """The paper row's fields ``names``, in that order (the JSON keeps it)."""
    return {name: paper[name] for name in names}


def _row(paper: Dict, row_mode: str, spec: EncoderSpec, flops: Counted, standard: Counted, counter,
         num_tokens: int) -> Dict:
    paper_standard = PAPER_BY_KEY[paper["standard"]]["gflops"]
    ratio = flops.total / standard.total
    low, high = paper_ratio_range(paper)
    paper_ratio = paper["gflops"] / paper_standard
    query_tokens = _query_tokens(paper, counter.shapes)
    lite = paper["variant"] != "standard"
    row = dict(
        **_paper_fields(paper, ("key", "table", "model", "variant", "attention", "feedforward_dim", "num_levels")),
        mode=row_mode,
        low_query_mode=spec.low_query_mode if lite else None,
        value_placement=spec.value_placement,
        counting=counter.counting,
        size=list(counter.size),
        encoder_gflops=round(flops.total / 1e9, 3),
        standard_encoder_gflops=round(standard.total / 1e9, 3),
        paper_encoder_gflops=paper["gflops"],
        paper_encoder_gflops_range=list(paper["gflops_range"]) if paper["gflops_range"] else None,
        paper_sources=paper["sources"],
        paper_standard_encoder_gflops=paper_standard,
        ratio=round(ratio, 4),
        reduction=round(1.0 - ratio, 4),
        paper_ratio=round(paper_ratio, 4),
        paper_ratio_range=[round(low, 4), round(high, 4)],
        ratio_vs_paper=round(ratio_deviation(ratio, paper), 4),
        over_paper_ratio=round(ratio / paper_ratio, 3),
        # within ±5% of the paper's ratio; the criterion (``checked``) applies to the "paper" mode only
        within_5pct=within_tolerance(ratio, paper) if paper["checked"] else None,
        checked=bool(paper["checked"]) and row_mode == CHECKED_MODE,
        query_tokens=query_tokens,
        query_share=round(query_tokens / num_tokens, 4),
        note=paper["note"],
    )
    if lite:
        row.update(
            placements=flops.placements,
            value_side_gflops=round(flops.value_side / 1e9, 3),
            sampling_gflops=round(flops.sampling / 1e9, 3),
        )
    return row


def build_breakdown(counter: EncoderCounter, paper: Dict) -> Dict:
    """Per-layer terms (FLOPs) of the standard layer and of the Lite layers of ``paper`` in each mode."""
    from ..encoders import parse_variant

    std = counter(standard_spec(paper))
    specs = row_specs(paper)
    counted = {mode: counter(spec) for mode, spec in specs.items()}
    variant = parse_variant(paper["variant"])
    high_index, low_index = 0, variant.num_high_updates  # the first high layer, the first low layer

    # The exact-samples high-level layer: "paper_exact"'s own when auto chose it, else forced.
    exact_high = counted["paper_exact"]
    if exact_high.layer(high_index)[1].placement != "samples":
        exact_high = counter(replace(specs["paper_exact"], value_placement="samples"))

    columns = []

    def add(column_id, title, flops, index):
        terms, call = flops.layer(index)
        columns.append(dict(id=column_id, title=title, num_query=call.num_query, num_value=call.num_value,
                            placement=call.placement, value_side=call.value_side, sampling=call.sampling,
                            terms=terms, total=sum(terms.values())))

    add("standard", "standard layer", std, 0)
    add("high_released", "high-level, released (tokens)", counted["released"], high_index)
    add("high_output", 'high-level, "output"', counted["paper"], high_index)
    add("high_samples", "high-level, exact samples", exact_high, high_index)
    add("low_output", 'low-level eq. (2), "output"', counted["paper"], low_index)
    low_exact = counted["paper_exact"].layer(low_index)[1].placement
    add("low_exact", f"low-level eq. (2), exact (auto: {low_exact})", counted["paper_exact"], low_index)
    add("released_last", "released last layer (all tokens)", counted["released"], low_index)
    high_exact = counted["paper_exact"].layer(high_index)[1]
    return dict(
        **_paper_fields(paper, ("key", "model", "variant", "attention", "feedforward_dim")),
        columns=columns,
        num_high_updates=variant.num_high_updates,
        num_blocks=variant.num_blocks,
        layers_per_block=variant.num_high_updates + 1,
        auto_placements=counted["paper_exact"].placements,
        exact_high_value_side=high_exact.value_side,  # auto's choice in the high-level layers
        totals={mode: c.total for mode, c in counted.items()},
        standard_total=std.total,
    )


def by_key(rows: List[Dict]) -> Dict[str, Dict[str, Dict]]:
    """``{paper key: {report mode: row}}``, in the rows' order."""
    grouped: Dict[str, Dict[str, Dict]] = {}
    for row in rows:
        grouped.setdefault(row["key"], {})[row["mode"]] = row
    return grouped


def format_pct(value: float) -> str:
    """A deviation as a signed percentage: ``+1.2%``."""
    return f"{value * 100:+.1f}%"


def summary(report: Dict) -> Dict:
    """Per mode: how many checked rows land within ±5% of the paper's ratio, and the ratio over the paper's."""
    out = {}
    for mode in report.get("modes", REPORT_MODES):
        rows = [r for r in report["rows"] if r["mode"] == mode and r["within_5pct"] is not None]
        lite = [r for r in report["rows"] if r["mode"] == mode and r["variant"] != "standard"]
        out[mode] = dict(
            checked=len(rows),
            within=sum(bool(r["within_5pct"]) for r in rows),
            over_paper=[r["over_paper_ratio"] for r in lite],
            misses=[f"{r['model']} {r['variant']} {r['attention'].upper()} ({format_pct(r['ratio_vs_paper'])})"
                    for r in rows if not r["within_5pct"]],
        )
    return out
