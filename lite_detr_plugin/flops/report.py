"""The encoder GFLOPs report: the paper's Tables 4-6 against fvcore counts of our encoders.

Every row of :data:`~lite_detr_plugin.flops.paper.PAPER_ENCODER_GFLOPS` is
built as a :class:`~lite_detr_plugin.encoders.LiteEncoder` (DINO size: C=256,
M=8 heads, L=4 levels, P=4 points) and counted on one image of the given size.
Three modes, each a real encoder that is traced (no arithmetic on the counts):

* ``paper``: Lite DETR's eq. (2) (only the low-level tokens query in the
  low-level layer, which has only the light FFN) with
  ``value_placement="output"``, the released code's ``value_proj_after``: each
  head aggregates its own D channels of the raw input and ``value_proj`` is
  applied to the aggregated output. The paper's accounting; a different
  (trainable) function from "tokens". The ±5% criterion applies to this mode.
* ``paper_exact``: eq. (2) with ``value_placement="auto"``: each layer projects
  its values over the tokens or exactly after sampling (every head samples all
  C + 1 raw channels; KDA folds its query), whichever costs fewer FLOPs. The
  same function as the released attention.
* ``released``: the public Lite-DETR code (every token queries in the
  low-level layer, the high-level rows through the full FFN) with the value
  projection over all tokens (``low_query_mode="released"``,
  ``value_placement="tokens"``).

Standard rows (``variant="standard"``: detrex's deformable encoder, values
projected over the tokens; the 3/2-scale baselines keep only the 3/2
lowest-resolution levels) are the same encoder in every mode and appear once
per mode. The paper's GFLOPs come from its own scripts, at its own input and
counting, so each Lite variant is compared as the ratio Lite/standard at the
same input against the paper's ratio.
"""
import json
import time
from dataclasses import dataclass, replace
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .encoder import EncoderFlops, count_encoder, layer_terms, level_shapes
from .paper import (
    PAPER_BY_KEY,
    PAPER_ENCODER_GFLOPS,
    RATIO_TOLERANCE,
    paper_ratio_range,
    ratio_deviation,
    within_tolerance,
)

DEFAULT_SIZE = (850, 1040)
EMBED_DIM = 256
NUM_HEADS = 8
NUM_POINTS = 4
NUM_LEVELS = 4
LOW_FFN_RATIO = 8
#: The variant whose layers the per-layer breakdown shows.
BREAKDOWN_KEY = "dino-h3l1-2x3"

#: The report's modes: (low_query_mode, value_placement) of the Lite encoders counted.
REPORT_MODES: Dict[str, Tuple[str, str]] = {
    "paper": ("paper", "output"),
    "paper_exact": ("paper", "auto"),
    "released": ("released", "tokens"),
}
#: The mode the ±5% criterion applies to.
CHECKED_MODE = "paper"
MODE_DESCRIPTIONS = {
    "paper": 'eq. (2) low-level queries, value_placement="output" (value_proj after aggregation, '
             "the released code's value_proj_after): the paper's accounting",
    "paper_exact": 'eq. (2), value_placement="auto" (values projected over the tokens or exactly after '
                   "sampling, whichever costs fewer FLOPs per layer): the released attention's function",
    "released": 'the released code: every token queries in the last layer of each block, values projected '
                'over all tokens (low_query_mode="released", value_placement="tokens")',
}


def _check_modes(modes: Sequence[str]) -> Tuple[str, ...]:
    modes = tuple(modes)
    unknown = [m for m in modes if m not in REPORT_MODES]
    if unknown or not modes:
        raise ValueError(f"report modes must be among {', '.join(REPORT_MODES)}; got {list(modes)}")
    return tuple(m for m in REPORT_MODES if m in modes)  # canonical order, no repeats


@dataclass(frozen=True)
class EncoderSpec:
    """What to build: a standard or Lite encoder of DINO size."""

    attention: str
    feedforward_dim: int
    num_levels: int
    variant: str
    low_query_mode: str = "paper"
    value_placement: str = "auto"
    num_layers: int = 6  # standard encoders only

    def build(self):
        from ..encoders import LiteEncoder

        encoder = LiteEncoder(
            embed_dim=EMBED_DIM,
            num_heads=NUM_HEADS,
            feedforward_dim=self.feedforward_dim,
            attn_dropout=0.0,
            ffn_dropout=0.0,
            num_layers=self.num_layers if self.variant == "standard" else None,
            num_feature_levels=self.num_levels,
            variant=self.variant,
            attention=self.attention,
            low_query_mode=self.low_query_mode,
            value_placement=self.value_placement,
            num_points=NUM_POINTS,
            low_ffn_ratio=LOW_FFN_RATIO,
        ).eval()
        return encoder

    def unit(self) -> Tuple["EncoderSpec", List[int]]:
        """The smallest encoder with one layer of each kind, and the encoder's layers as indices into it.

        A layer's cost depends only on the shapes it gets (queries, values,
        levels) and its widths, so layers of the same kind cost the same:

        * a standard encoder is one layer, ``num_layers`` times: ``(standard, 1 layer), [0] * n``;
        * a Lite ``HxLy-(A+1)xB`` is a high-level layer A times then a low-level
          layer, B times: ``(HxLy-(1+1)x1), ([0] * A + [1]) * B``.

        Tracing the unit and summing its layers' counts in this order gives the
        encoder's count; ``--exact`` (and the tests) trace whole encoders to check it.
        """
        if self.variant == "standard":
            return replace(self, num_layers=1), [0] * self.num_layers
        from ..encoders import parse_variant

        variant = parse_variant(self.variant)
        unit = f"H{variant.num_high_levels}L{variant.num_low_levels}-(1+1)x1"
        return replace(self, variant=unit), ([0] * variant.num_high_updates + [1]) * variant.num_blocks

    @property
    def label(self) -> str:
        if self.variant == "standard":
            return f"standard {self.attention} ffn={self.feedforward_dim} L={self.num_levels} layers={self.num_layers}"
        return (
            f"{self.variant} {self.attention} ffn={self.feedforward_dim} {self.low_query_mode} "
            f"value_placement={self.value_placement}"
        )


def standard_spec(row: Dict) -> EncoderSpec:
    """The 4-scale standard encoder a paper row is compared with."""
    ref = PAPER_BY_KEY[row["standard"]]
    return EncoderSpec(ref["attention"], ref["feedforward_dim"], ref["num_levels"], "standard", "paper", "tokens")


def row_specs(row: Dict, modes: Sequence[str] = tuple(REPORT_MODES)) -> Dict[str, EncoderSpec]:
    """The encoder a paper row counts in each report mode (the same standard encoder in every mode)."""
    modes = _check_modes(modes)
    if row["variant"] == "standard":
        spec = EncoderSpec(row["attention"], row["feedforward_dim"], row["num_levels"], "standard", "paper", "tokens")
        return {mode: spec for mode in modes}
    common = (row["attention"], row["feedforward_dim"], row["num_levels"], row["variant"])
    return {
        mode: EncoderSpec(*common, low_query_mode=REPORT_MODES[mode][0], value_placement=REPORT_MODES[mode][1])
        for mode in modes
    }


@dataclass
class Counted:
    """The count of one encoder (FLOPs) from the trace of a unit encoder and the encoder's layer order.

    ``layout[i]`` is the unit layer whose count the encoder's layer i has (see
    ``EncoderSpec.unit``); with ``exact`` the unit is the encoder itself.
    """

    spec: EncoderSpec
    unit: EncoderFlops
    layout: List[int]

    def _layer(self, index: int) -> str:
        return self.unit.layers[index]

    def _call(self, index: int):
        name = self._layer(index) + "."
        return next(c for c in self.unit.attention_calls if c.module.startswith(name))

    def layer(self, index: int):
        """``(terms, attention call)`` of the encoder's layer ``index`` (see :func:`layer_terms`)."""
        unit_index = self.layout[index]
        return layer_terms(self.unit, self._layer(unit_index)), self._call(unit_index)

    @property
    def total(self) -> int:
        layer_totals = [self.unit.module_total(name) for name in self.unit.layers]
        outside = self.unit.total - sum(layer_totals)
        if outside and len(self.layout) != len(self.unit.layers):
            raise RuntimeError(
                f"{self.spec.label}: {outside} FLOPs outside the layers; count it with exact=True"
            )
        return sum(layer_totals[i] for i in self.layout) + outside

    @property
    def value_side(self) -> int:
        return sum(self._call(i).value_side for i in self.layout)

    @property
    def sampling(self) -> int:
        return sum(self._call(i).sampling for i in self.layout)

    @property
    def placements(self) -> List[str]:
        return [self._call(i).placement for i in self.layout]


class EncoderCounter:
    """Counts each distinct encoder once, by default from one trace per kind of layer (``EncoderSpec.unit``)."""

    def __init__(self, size: Tuple[int, int], mode: str, progress: Optional[Callable[[str], None]] = None,
                 exact: bool = False):
        self.size = tuple(size)
        self.mode = mode
        self.exact = exact
        self.shapes = level_shapes(*size, NUM_LEVELS)
        self.traces: Dict[EncoderSpec, EncoderFlops] = {}
        self.progress = progress

    def shapes_for(self, num_levels: int):
        # The 3/2-scale baselines keep the lowest-resolution levels of the 4-scale pyramid.
        return self.shapes[NUM_LEVELS - num_levels:]

    def trace(self, spec: EncoderSpec) -> EncoderFlops:
        if spec not in self.traces:
            if self.progress is not None:
                self.progress(spec.label)
            self.traces[spec] = count_encoder(spec.build(), self.shapes_for(spec.num_levels), mode=self.mode)
        return self.traces[spec]

    def __call__(self, spec: EncoderSpec) -> Counted:
        if self.exact:
            flops = self.trace(spec)
            return Counted(spec, flops, list(range(len(flops.layers))))
        unit, layout = spec.unit()
        return Counted(spec, self.trace(unit), layout)


def _query_tokens(row: Dict, shapes) -> int:
    if row["variant"] == "standard":
        return sum(h * w for h, w in shapes[NUM_LEVELS - row["num_levels"]:])
    from ..encoders import parse_variant

    high = parse_variant(row["variant"]).num_high_levels
    return sum(h * w for h, w in shapes[NUM_LEVELS - high:])


def build_report(
    size: Tuple[int, int] = DEFAULT_SIZE,
    mode: str = "paper",
    keys: Optional[Iterable[str]] = None,
    breakdown: bool = True,
    progress: Optional[Callable[[str], None]] = None,
    exact: bool = False,
    modes: Sequence[str] = tuple(REPORT_MODES),
) -> Dict:
    """Count every encoder of the paper's tables at ``size`` and compare with the paper.

    Args:
        size: (height, width) of the input image.
        mode: FLOP counting conventions, "paper" (fvcore's) or "full" (see
            :mod:`~lite_detr_plugin.flops.handles`); not to be confused with ``modes``.
        keys: only these paper rows (see ``PAPER_ENCODER_GFLOPS``); their standard encoders are
            counted as the ratios' denominators.
        breakdown: also count the per-layer breakdown of :data:`BREAKDOWN_KEY` (when it is
            selected, all three modes are counted and ``mode="paper"``).
        progress: called with a label before each encoder is traced.
        exact: trace every layer of every encoder instead of one unit per kind of layer
            (same counts, several times slower; see ``EncoderSpec.unit``).
        modes: the report modes to count (:data:`REPORT_MODES`; default all three).

    Returns:
        ``dict(size, mode, modes, shapes, num_tokens, rows, breakdown, seconds, encoders_traced, exact)``;
        ``rows`` as written by ``--json``: one per paper row and report mode.
    """
    start = time.perf_counter()
    modes = _check_modes(modes)
    if keys is not None:
        keys = list(keys)
        unknown = set(keys) - set(PAPER_BY_KEY)
        if unknown:
            raise KeyError(f"unknown paper rows {sorted(unknown)}; known: {', '.join(PAPER_BY_KEY)}")
    counter = EncoderCounter(tuple(size), mode, progress, exact=exact)
    selected = [row for row in PAPER_ENCODER_GFLOPS if keys is None or row["key"] in set(keys)]
    num_tokens = sum(h * w for h, w in counter.shapes)
    rows = []
    for paper in selected:
        standard = counter(standard_spec(paper))
        for row_mode, spec in row_specs(paper, modes).items():
            rows.append(_row(paper, row_mode, spec, counter(spec), standard, counter, num_tokens))
    report = dict(
        size=list(size),
        mode=mode,
        modes=list(modes),
        shapes=[list(s) for s in counter.shapes],
        num_tokens=num_tokens,
        rows=rows,
        breakdown=None,
    )
    if (breakdown and mode == "paper" and set(modes) == set(REPORT_MODES)
            and BREAKDOWN_KEY in [r["key"] for r in selected]):
        report["breakdown"] = build_breakdown(counter, PAPER_BY_KEY[BREAKDOWN_KEY])
    report["seconds"] = round(time.perf_counter() - start, 2)
    report["encoders_traced"] = len(counter.traces)
    report["exact"] = exact
    return report


def _row(paper: Dict, row_mode: str, spec: EncoderSpec, flops: Counted, standard: Counted, counter,
         num_tokens: int) -> Dict:
    paper_standard = PAPER_BY_KEY[paper["standard"]]["gflops"]
    ratio = flops.total / standard.total
    low, high = paper_ratio_range(paper)
    paper_ratio = paper["gflops"] / paper_standard
    query_tokens = _query_tokens(paper, counter.shapes)
    lite = paper["variant"] != "standard"
    row = dict(
        key=paper["key"],
        table=paper["table"],
        model=paper["model"],
        variant=paper["variant"],
        attention=paper["attention"],
        feedforward_dim=paper["feedforward_dim"],
        num_levels=paper["num_levels"],
        mode=row_mode,
        low_query_mode=spec.low_query_mode if lite else None,
        value_placement=spec.value_placement,
        flop_mode=counter.mode,
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


# ------------------------------------------------------------------ per-layer breakdown


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
        key=paper["key"],
        model=paper["model"],
        variant=paper["variant"],
        attention=paper["attention"],
        feedforward_dim=paper["feedforward_dim"],
        columns=columns,
        num_high_updates=variant.num_high_updates,
        num_blocks=variant.num_blocks,
        layers_per_block=variant.num_high_updates + 1,
        auto_placements=counted["paper_exact"].placements,
        exact_high_value_side=high_exact.value_side,  # auto's choice in the high-level layers
        totals={mode: c.total for mode, c in counted.items()},
        standard_total=std.total,
    )


# ------------------------------------------------------------------ output


def _fmt_g(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _fmt_pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


def _g(flops: float, digits: int = 3) -> str:
    return f"{flops / 1e9:.{digits}f}"


def _paper_cell(row: Dict) -> str:
    if row["paper_encoder_gflops_range"]:
        low, high = row["paper_encoder_gflops_range"]
        rlow, rhigh = row["paper_ratio_range"]
        return f"{low:g}–{high:g} ({rlow:.3f}–{rhigh:.3f})"
    return f"{row['paper_encoder_gflops']:g} ({row['paper_ratio']:.3f})"


def _ours_cell(row: Dict) -> str:
    if row["variant"] == "standard" and row["num_levels"] == NUM_LEVELS:
        return f"{_fmt_g(row['encoder_gflops'])} (1)"
    return f"{_fmt_g(row['encoder_gflops'])} ({row['ratio']:.3f})"


def _queries_cell(row: Dict) -> str:
    return f"{row['query_tokens']:,} ({row['query_share'] * 100:.1f}%)"


def _by_key(rows: List[Dict]) -> Dict[str, Dict[str, Dict]]:
    by_key: Dict[str, Dict[str, Dict]] = {}
    for row in rows:
        by_key.setdefault(row["key"], {})[row["mode"]] = row
    return by_key


def report_table(report: Dict) -> List[List[str]]:
    """The main table's rows (header first), one line per paper row, a group of columns per mode."""
    modes = [m for m in REPORT_MODES if m in report.get("modes", REPORT_MODES)]
    header = ["Table", "Model", "Variant", "Attn", "Query tokens (share)", "Paper GFLOPs (ratio)"]
    for mode in modes:
        header.append(f'"{mode}" GFLOPs (ratio)')
        if mode == CHECKED_MODE:
            header += ["Δ", "±5%"]
        elif mode == "released":
            header.append("× paper ratio")
        else:
            header.append("Δ")
    lines = [header]
    for key, by_mode in _by_key(report["rows"]).items():
        first = by_mode[modes[0]]
        line = [first["table"], first["model"], first["variant"], first["attention"].upper(), _queries_cell(first),
                _paper_cell(first)]
        standard = first["variant"] == "standard"
        baseline = standard and first["num_levels"] == NUM_LEVELS
        for mode in modes:
            row = by_mode[mode]
            line.append(_ours_cell(row))
            delta = "" if baseline else _fmt_pct(row["ratio_vs_paper"])
            if mode == CHECKED_MODE:
                ok = "" if baseline else ("info" if standard else ("✓" if row["within_5pct"] else "✗"))
                line += [delta, ok]
            elif mode == "released":
                line.append("" if standard else f"{row['over_paper_ratio']:.2f}×")
            else:
                line.append(delta)
        lines.append(line)
    return lines


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
            misses=[f"{r['model']} {r['variant']} {r['attention'].upper()} ({_fmt_pct(r['ratio_vs_paper'])})"
                    for r in rows if not r["within_5pct"]],
        )
    return out


def format_report(report: Dict) -> str:
    """The whole report as Markdown."""
    from tabulate import tabulate

    h, w = report["size"]
    shapes = ", ".join(f"{a}×{b} ({a * b:,})" for a, b in report["shapes"])
    std_rows = {r["key"]: r for r in report["rows"] if r["variant"] == "standard"}
    out = [
        f"## Encoder GFLOPs at {h}×{w} (fvcore, {report['mode']} counting conventions)",
        "",
        f"Levels (stride 8, 16, 32, 64): {shapes}; N = {report['num_tokens']:,} tokens. "
        "Query tokens: the tokens that query in the high-level layers (the levels kept, for the standard rows), "
        "and their share of N.",
    ]
    if "dino" in std_rows or "deformable" in std_rows:
        parts = []
        if "dino" in std_rows:
            parts.append(f"DINO-size standard encoder {std_rows['dino']['encoder_gflops']:.1f} (paper 137)")
        if "deformable" in std_rows:
            parts.append(f"Deformable DETR {std_rows['deformable']['encoder_gflops']:.1f} (paper 90)")
        out.append("Standard encoders (values projected over the tokens, the same in every mode): "
                   + ", ".join(parts) + ".")
    out += ["Ratios are Lite/standard at the same input; Δ compares ours with the paper's ratio "
            "(0 inside a range where the paper's Tables 3 and 6 disagree). Modes:", ""]
    out += [f'* "{mode}": {MODE_DESCRIPTIONS[mode]}.' for mode in report.get("modes", REPORT_MODES)]
    table = report_table(report)
    out += ["", tabulate(table[1:], headers=table[0], tablefmt="github", disable_numparse=True), ""]
    s = summary(report)
    parts = []
    for mode, stats in s.items():
        if not stats["checked"] and not stats["over_paper"]:
            continue
        parts.append(f'"{mode}" {stats["within"]}/{stats["checked"]}')
    if parts:
        checked = s.get(CHECKED_MODE, {}).get("checked", 0)
        lead = (f"Within ±{RATIO_TOLERANCE:.0%} of the paper's ratio (the {checked} checked rows: Tables 4 and 6, "
                f'Table 5 HL+LL; the criterion applies to "{CHECKED_MODE}"): ') if checked else (
                f"Within ±{RATIO_TOLERANCE:.0%} of the paper's ratio: ")
        out.append(lead + "; ".join(parts) + ".")
        if CHECKED_MODE in s and s[CHECKED_MODE]["misses"]:
            out.append(f'"{CHECKED_MODE}" misses: ' + "; ".join(s[CHECKED_MODE]["misses"]) + ".")
        if "released" in s and s["released"]["over_paper"]:
            values = s["released"]["over_paper"]
            out.append(f'"released": {min(values):.2f}–{max(values):.2f}× the paper\'s ratios.')
        out.append("")
    if report.get("breakdown"):
        out += [format_breakdown(report["breakdown"], report), ""]
    how = "every encoder traced whole" if report.get("exact") else (
        "one trace per kind of layer, summed in each encoder's layer order; --exact traces whole encoders"
    )
    out.append(f"{report['encoders_traced']} traces in {report['seconds']:.1f} s ({how}).")
    return "\n".join(out)


_TERM_LABELS = {
    "sampling_offsets": "sampling_offsets (Nq·C·2MLP)",
    "attention_weights": "attention_weights (Nq·C·MLP)",
    "query_proj": "query_proj (Nq·C²)",
    "value_proj": "value_proj (S·C² on the tokens; Nq·C² on the output)",
    "key_proj": "key_proj",
    "sampling": "sampling (4·Nq·M·L·P·channels: D, or C+1 exact)",
    "einsum": "exact projection after sampling + KDA query fold (Nq·C·(C+1) each)",
    "attention_math": "q·k, softmax, weighted sum (full mode)",
    "output_proj": "output_proj (Nq·C²)",
    "ffn": "FFN (2·Nq·C·F)",
    "light_ffn": "light FFN (2·Nq·C·F/8)",
    "layer_norm": "LayerNorm (5 per element)",
    "other": "other",
}


def breakdown_table(breakdown: Dict) -> List[List[str]]:
    """The per-layer table (header first): a column per layer kind, a row per term, in GFLOPs."""
    columns = breakdown["columns"]
    lines = [["term (GFLOPs)"] + [c["title"] for c in columns]]
    lines.append(["queries Nq / values S"] + [f"{c['num_query']:,} / {c['num_value']:,}" for c in columns])
    lines.append(["value projection placement"] + [c["placement"] for c in columns])
    for term, label in _TERM_LABELS.items():
        values = [c["terms"][term] for c in columns]
        if any(values):
            lines.append([label] + [_g(v) for v in values])
    lines.append(["value side (value_proj, key_proj, sampling, fold)"] + [_g(c["value_side"]) for c in columns])
    lines.append(["total"] + [_g(c["total"]) for c in columns])
    return lines


def explanation(breakdown: Dict, report: Optional[Dict] = None) -> List[str]:
    """Why the three modes differ, with the breakdown's numbers (Markdown lines)."""
    col = {c["id"]: c for c in breakdown["columns"]}
    A, B = breakdown["num_high_updates"], breakdown["num_blocks"]
    totals, std = breakdown["totals"], breakdown["standard_total"]
    hr, ho, hs = col["high_released"], col["high_output"], col["high_samples"]
    lo, le, rl = col["low_output"], col["low_exact"], col["released_last"]
    name = f"{breakdown['model']} {breakdown['variant']} ({breakdown['attention'].upper()})"
    C = EMBED_DIM
    D = C // NUM_HEADS
    stats = summary(report) if report else {}
    released = stats.get("released", {}).get("over_paper") or []
    released_range = f"{min(released):.2f}–{max(released):.2f}× " if released else ""
    checked = stats.get(CHECKED_MODE, {})
    last_excess = B * (rl["total"] - lo["total"])
    proj_excess = A * B * (hr["total"] - ho["total"])
    high_exact = breakdown["exact_high_value_side"]
    exact_high_excess = A * B * (high_exact - ho["value_side"])
    exact_low_excess = B * (le["value_side"] - lo["value_side"])
    kda = breakdown["attention"] == "kda"
    if le["placement"] == "tokens":
        low_exact_text = (f"In the low-level layer ({lo['num_query']:,} queries) sampling C + 1 channels costs more "
                          "than projecting the tokens, so auto projects the tokens:")
    else:
        low_exact_text = f"In the low-level layer ({lo['num_query']:,} queries) auto projects after sampling:"
    low_exact_text += f" value side {_g(le['value_side'])} against {_g(lo['value_side'])} for \"output\"."
    fold = " and, for KDA, the fold of the query into the input space (another Nq·C·(C+1))" if kda else ""
    lines = [
        f'**Why "released" costs {released_range}the paper\'s ratios.** {name}: '
        f"{_g(totals['released'], 1)} GFLOPs against {_g(totals['paper'], 1)} for \"paper\", two causes:",
        "",
        f"* The last layer of each block queries with all {rl['num_query']:,} tokens instead of the "
        f"{lo['num_query']:,} low-level ones, and runs the full FFN on the {rl['num_query'] - lo['num_query']:,} "
        f"high-level rows (FFN {_g(rl['terms']['ffn'])}) beside the light FFN: {_g(rl['total'])} GFLOPs against "
        f"{_g(lo['total'])}; ×{B} blocks = +{_g(last_excess, 2)}.",
        f"* It projects the values of all S = {hr['num_value']:,} tokens in every layer "
        f"(S·C² = {_g(hr['terms']['value_proj'])}), where \"output\" projects the {ho['num_query']:,} aggregated "
        f"outputs (Nq·C² = {_g(ho['terms']['value_proj'])}): +{_g(hr['total'] - ho['total'])} per high-level layer, "
        f"×{A * B} = +{_g(proj_excess, 2)}.",
        f"* Together +{_g(last_excess + proj_excess, 2)} GFLOPs, "
        f"+{(last_excess + proj_excess) / std:.3f} of the standard encoder.",
        "",
        f"**Why the exact projection after sampling (\"paper_exact\") cannot reach the paper's count.** "
        f"To give each head its own W_m·x after sampling, every head has to sample all C + 1 = {C + 1} channels "
        f"of the raw input (the ones channel carries the bias), not D = {D}: sampling {_g(hs['sampling'])} instead "
        f"of {_g(ho['sampling'])} in a high-level layer, then each head's projection Nq·C·(C+1){fold}: "
        f"{_g(hs['terms']['einsum'])}. A high-level layer's value side: exact samples {_g(hs['value_side'])}, "
        f"tokens {_g(hr['value_side'])}, \"output\" {_g(ho['value_side'])}. {low_exact_text} "
        f"{breakdown['variant']}: ×{A * B} high-level layers +{_g(exact_high_excess, 2)}, ×{B} low-level "
        f"+{_g(exact_low_excess, 2)}: {_g(totals['paper_exact'], 1)} GFLOPs, ratio "
        f"{totals['paper_exact'] / std:.3f} against \"paper\" {totals['paper'] / std:.3f}."
        + (" MSDA has no query fold; the C+1-channel sampling alone keeps its exact count above \"paper\"."
           if kda else ""),
        "",
        f"**\"output\" (the released code's `value_proj_after`) does.** Each head aggregates its own D = {D} "
        f"raw channels (sampling {_g(ho['sampling'])}, as \"tokens\" samples D channels of the projected values) "
        f"and `value_proj` runs once on the aggregated output (Nq·C² = {_g(ho['terms']['value_proj'])}): a value "
        "side of Nq·C² + 4·Nq·M·L·P·D per layer, the count behind the paper's GFLOPs"
        + (f" ({checked['within']}/{checked['checked']} checked rows within ±{RATIO_TOLERANCE:.0%})."
           if checked.get("checked") else ".")
        + " It is a different function from \"tokens\": the projection no longer mixes the channels before "
        "sampling, so each head samples (and, with KDA, matches its query against) only its own D-channel slice "
        "of the input. A model must be trained with `value_placement=\"output\"`; released checkpoints were "
        "trained with the values projected over the tokens and need \"tokens\" or \"auto\" (the same function; "
        "\"auto\" is what \"paper_exact\" counts).",
    ]
    return lines


def format_breakdown(breakdown: Dict, report: Optional[Dict] = None) -> str:
    from tabulate import tabulate

    table = breakdown_table(breakdown)
    per_block = breakdown["layers_per_block"]
    auto = breakdown["auto_placements"][:per_block]
    return "\n".join([
        f"### Per-layer breakdown: {breakdown['model']} {breakdown['variant']} ({breakdown['attention'].upper()})",
        "",
        "One layer of each kind, GFLOPs. \"output\": value_proj after aggregation (mode \"paper\"); exact samples: "
        "every head samples all C + 1 raw channels, then applies its own [W_m | b_m] (KDA also folds its query); "
        f"\"paper_exact\" uses auto's choice per layer ({', '.join(auto)} per block); the released last layer "
        "is the low-level layer of mode \"released\".",
        "",
        tabulate(table[1:], headers=table[0], tablefmt="github", disable_numparse=True),
        "",
        *explanation(breakdown, report),
    ])


def write_json(report: Dict, path: str) -> None:
    """Writes ``{"size", "mode", "modes", "shapes", "rows": [...], ...}``; each row has at least
    model, variant, mode (paper, paper_exact or released), encoder_gflops, standard_encoder_gflops,
    paper_encoder_gflops, paper_standard_encoder_gflops."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_png(report: Dict, path: str) -> None:
    """A bar chart of encoder GFLOPs per variant, a bar per mode, with the paper's values marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in REPORT_MODES if m in report.get("modes", REPORT_MODES)]
    families = [("DINO / H-DETR (Tables 4, 5)", lambda r: r["feedforward_dim"] == 2048 and r["model"] != "H-DETR"
                 and not r["model"].startswith("Lite-H-DETR")),
                ("Deformable DETR (Tables 3, 6)", lambda r: r["feedforward_dim"] == 1024)]
    groups = []
    for title, keep in families:
        by_key = _by_key([row for row in report["rows"] if keep(row)])
        if by_key:
            groups.append((title, by_key))
    if not groups:
        raise ValueError("nothing to plot")
    fig, axes = plt.subplots(len(groups), 1, figsize=(13, 5.0 * len(groups)), squeeze=False)
    for ax, (title, by_key) in zip(axes[:, 0], groups):
        labels, bars, paper_lo, paper_hi, paper_std, our_std = [], {m: [] for m in modes}, [], [], [], []
        for by_mode in by_key.values():
            first = by_mode[modes[0]]
            labels.append(f"{first['model']}\n{first['variant']} {first['attention'].upper()}")
            for mode in modes:
                bars[mode].append(by_mode[mode]["encoder_gflops"])
            low, high = first["paper_encoder_gflops_range"] or (first["paper_encoder_gflops"],) * 2
            paper_lo.append(low)
            paper_hi.append(high)
            paper_std.append(first["paper_standard_encoder_gflops"])
            our_std.append(first["standard_encoder_gflops"])
        x = list(range(len(labels)))
        width = 0.8 / len(modes)
        for i, mode in enumerate(modes):
            offset = (i - (len(modes) - 1) / 2) * width
            ax.bar([v + offset for v in x], bars[mode], width, label=f'ours, "{mode}"')
        mid = [(a + b) / 2 for a, b in zip(paper_lo, paper_hi)]
        err = [[m - a for m, a in zip(mid, paper_lo)], [b - m for m, b in zip(mid, paper_hi)]]
        ax.errorbar(x, mid, yerr=err, fmt="D", color="black", capsize=4, label="paper (published GFLOPs)")
        scaled = [m / modes_std * std for m, modes_std, std in zip(mid, paper_std, our_std)]
        ax.scatter(x, scaled, marker="o", facecolors="none", edgecolors="black", s=60, zorder=3,
                   label="paper ratio × our standard encoder")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("encoder GFLOPs")
        h, w = report["size"]
        ax.set_title(f"{title}, {h}×{w}, fvcore ({report['mode']} counting); standard rows: the same encoder "
                     "in every mode")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
