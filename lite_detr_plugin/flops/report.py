"""The encoder GFLOPs report: the paper's Tables 4-6 against fvcore counts of our encoders.

Every row of :data:`~lite_detr_plugin.flops.paper.PAPER_ENCODER_GFLOPS` is
built as a :class:`~lite_detr_plugin.encoders.LiteEncoder` (DINO size: C=256,
M=8 heads, L=4 levels, P=4 points) and counted on one image of the given size:

* standard rows: ``variant="standard"``, the value projection over the tokens,
  i.e. detrex's deformable encoder (the 3/2-scale baselines keep only the
  3/2 lowest-resolution levels);
* Lite rows, two modes:

  - ``paper``: Lite DETR's eq. (2) (only the low-level tokens query in the
    low-level layer, which has only the light FFN) with ``value_placement="auto"``:
    each layer projects its values before or after sampling, whichever costs
    fewer FLOPs;
  - ``released``: the public Lite-DETR code (every token queries in the
    low-level layer, the high-level rows through the full FFN) with the value
    projection over all tokens, as that code does.

The paper's GFLOPs come from its own scripts, at its own input and counting,
so each Lite variant is compared as the ratio Lite/standard at the same input
against the paper's ratio. For the paper mode the report also gives the
"D-channel what-if": the count if projecting after sampling cost ``Nq·C²`` and
the sampling were counted at D = C/M channels per head, the convention of the
modified released code that reproduces the paper's figures (see the README).
"""
import json
import time
from dataclasses import dataclass, replace
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .encoder import EncoderFlops, count_encoder, layer_terms, level_shapes
from .handles import SAMPLING_FLOPS
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

        return LiteEncoder(
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


def row_specs(row: Dict) -> Dict[str, EncoderSpec]:
    """The encoders a paper row needs, by mode ("standard", or "paper" and "released")."""
    if row["variant"] == "standard":
        return {"standard": EncoderSpec(row["attention"], row["feedforward_dim"], row["num_levels"], "standard",
                                        "paper", "tokens")}
    common = (row["attention"], row["feedforward_dim"], row["num_levels"], row["variant"])
    return {
        "paper": EncoderSpec(*common, low_query_mode="paper", value_placement="auto"),
        "released": EncoderSpec(*common, low_query_mode="released", value_placement="tokens"),
    }


def breakdown_specs(row: Dict) -> Dict[str, EncoderSpec]:
    """A Lite row with the value placement forced to "tokens" / "samples", for the per-layer breakdown."""
    common = (row["attention"], row["feedforward_dim"], row["num_levels"], row["variant"])
    return {
        "tokens": EncoderSpec(*common, low_query_mode="paper", value_placement="tokens"),
        "samples": EncoderSpec(*common, low_query_mode="paper", value_placement="samples"),
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
    def value_side_dchannel(self) -> int:
        return sum(self._call(i).value_side_dchannel for i in self.layout)

    @property
    def total_dchannel(self) -> int:
        return self.total - self.value_side + self.value_side_dchannel

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
) -> Dict:
    """Count every encoder of the paper's tables at ``size`` and compare with the paper.

    Args:
        size: (height, width) of the input image.
        mode: FLOP counting mode, "paper" (fvcore's conventions) or "full".
        keys: only these paper rows (see ``PAPER_ENCODER_GFLOPS``); their standard rows are added.
        breakdown: also count the per-layer breakdown of :data:`BREAKDOWN_KEY` (when selected).
        progress: called with a label before each encoder is traced.
        exact: trace every layer of every encoder instead of one repeating unit
            (same counts, several times slower; see ``EncoderSpec.one_block``).

    Returns:
        ``dict(size, mode, shapes, num_tokens, rows, breakdown, gap, seconds)``; ``rows`` as
        written by ``--json``.
    """
    start = time.perf_counter()
    counter = EncoderCounter(tuple(size), mode, progress, exact=exact)
    selected = [row for row in PAPER_ENCODER_GFLOPS if keys is None or row["key"] in set(keys)]
    if keys is not None:
        unknown = set(keys) - set(PAPER_BY_KEY)
        if unknown:
            raise KeyError(f"unknown paper rows {sorted(unknown)}; known: {', '.join(PAPER_BY_KEY)}")
    num_tokens = sum(h * w for h, w in counter.shapes)
    rows = []
    for paper in selected:
        standard = counter(standard_spec(paper))
        for row_mode, spec in row_specs(paper).items():
            rows.append(_row(paper, row_mode, spec, counter(spec), standard, counter, num_tokens))
    report = dict(
        size=list(size),
        mode=mode,
        shapes=[list(s) for s in counter.shapes],
        num_tokens=num_tokens,
        rows=rows,
        breakdown=None,
        gap=_gap(rows),
    )
    if breakdown and mode == "paper" and BREAKDOWN_KEY in [r["key"] for r in selected]:
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
    row = dict(
        key=paper["key"],
        table=paper["table"],
        model=paper["model"],
        variant=paper["variant"],
        attention=paper["attention"],
        feedforward_dim=paper["feedforward_dim"],
        num_levels=paper["num_levels"],
        mode=row_mode,
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
        within_5pct=within_tolerance(ratio, paper) if paper["checked"] and row_mode == "paper" else None,
        checked=bool(paper["checked"]) and row_mode == "paper",
        query_tokens=query_tokens,
        query_share=round(query_tokens / num_tokens, 4),
        note=paper["note"],
    )
    if row_mode == "paper":
        dratio = flops.total_dchannel / standard.total_dchannel
        row.update(
            dchannel_encoder_gflops=round(flops.total_dchannel / 1e9, 3),
            dchannel_ratio=round(dratio, 4),
            dchannel_ratio_vs_paper=round(ratio_deviation(dratio, paper), 4),
            dchannel_within_5pct=within_tolerance(dratio, paper),
            value_side_gflops=round(flops.value_side / 1e9, 3),
            dchannel_value_side_gflops=round(flops.value_side_dchannel / 1e9, 3),
            placements=flops.placements,
        )
    if row_mode == "released":
        row["released_over_paper_ratio"] = round(ratio / paper_ratio, 3)
    return row


def _gap(rows: List[Dict]) -> List[Dict]:
    """For each Lite paper-mode row: how much of our count is the value side, as counted and as D-channel."""
    out = []
    for row in rows:
        if row["mode"] != "paper":
            continue
        std = row["standard_encoder_gflops"]
        out.append(
            dict(
                key=row["key"],
                model=row["model"],
                variant=row["variant"],
                attention=row["attention"],
                encoder_gflops=row["encoder_gflops"],
                dchannel_encoder_gflops=row["dchannel_encoder_gflops"],
                value_side_gflops=row["value_side_gflops"],
                dchannel_value_side_gflops=row["dchannel_value_side_gflops"],
                rest_gflops=round(row["encoder_gflops"] - row["value_side_gflops"], 3),
                gap_ratio_points=round((row["value_side_gflops"] - row["dchannel_value_side_gflops"]) / std, 4),
                placements="".join("S" if p == "samples" else "T" for p in row["placements"]),
            )
        )
    return out


# ------------------------------------------------------------------ per-layer breakdown


def _dchannel_terms(terms: Dict[str, int], call) -> Dict[str, int]:
    """A layer's terms under the D-channel what-if: value side = Nq·C² + sampling of D channels per head."""
    out = dict(terms)
    C, M, L, P = call.embed_dim, call.num_heads, call.num_levels, call.num_points
    out["value_proj"] = call.num_query * C * C
    out["key_proj"] = call.num_query * C * C if call.separate_key else 0
    out["sampling"] = SAMPLING_FLOPS * call.num_query * M * L * P * (C // M) * (2 if call.separate_key else 1)
    out["einsum"] = 0
    return out


def build_breakdown(counter: EncoderCounter, paper: Dict) -> Dict:
    """Per-layer terms (GFLOPs) of the standard layer and of the Lite layers of ``paper``, per placement."""
    std = counter(standard_spec(paper))
    lite_paper = counter(row_specs(paper)["paper"])
    lite_released = counter(row_specs(paper)["released"])
    forced = {name: counter(spec) for name, spec in breakdown_specs(paper).items()}
    from ..encoders import parse_variant

    variant = parse_variant(paper["variant"])
    high_index, low_index = 0, variant.num_high_updates  # the first high layer, the first low layer

    def layer(counted: Counted, index: int):
        unit_index = counted.layout[index]
        return layer_terms(counted.unit, counted._layer(unit_index)), counted._call(unit_index)

    columns = []

    def add(title, flops, index, what_if=False):
        terms, call = layer(flops, index)
        if what_if:
            terms = _dchannel_terms(terms, call)
            placement = "samples (D-channel what-if)"
        else:
            placement = call.placement
        columns.append(dict(title=title, num_query=call.num_query, num_value=call.num_value, placement=placement,
                            terms=terms, total=sum(terms.values())))

    add("standard layer", std, 0)
    add("high-level layer, tokens", forced["tokens"], high_index)
    add("high-level layer, samples", forced["samples"], high_index)
    add("high-level layer, D-channel what-if", forced["samples"], high_index, what_if=True)
    add("low-level layer (paper), tokens", forced["tokens"], low_index)
    add("low-level layer (paper), samples", forced["samples"], low_index)
    add("low-level layer (paper), D-channel what-if", forced["samples"], low_index, what_if=True)
    add("low-level layer (released), tokens", lite_released, low_index)
    auto = lite_paper.placements
    return dict(
        key=paper["key"],
        model=paper["model"],
        variant=paper["variant"],
        attention=paper["attention"],
        columns=columns,
        auto_placements=auto,
        layers_per_block=variant.num_high_updates + 1,
    )


# ------------------------------------------------------------------ output


def _fmt_g(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _fmt_pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


def _paper_cell(row: Dict) -> str:
    if row["paper_encoder_gflops_range"]:
        low, high = row["paper_encoder_gflops_range"]
        rlow, rhigh = row["paper_ratio_range"]
        return f"{low:g}–{high:g} ({rlow:.3f}–{rhigh:.3f})"
    return f"{row['paper_encoder_gflops']:g} ({row['paper_ratio']:.3f})"


def _ours_cell(row: Dict) -> str:
    if row["variant"] == "standard" and row["num_levels"] == NUM_LEVELS:
        return f"{_fmt_g(row['encoder_gflops'])} (1)"
    return f"{_fmt_g(row['encoder_gflops'])} ({row['ratio']:.3f}, −{row['reduction'] * 100:.0f}%)"


def _queries_cell(row: Dict) -> str:
    return f"{row['query_tokens']:,} ({row['query_share'] * 100:.1f}%)"


def report_table(report: Dict) -> List[List[str]]:
    """The main table's rows (header first), one line per paper row."""
    header = [
        "Table", "Model", "Variant", "Attn", "Queries", "Paper GFLOPs (ratio)", "Ours, paper mode (ratio, reduction)",
        "Δ ratio", "±5%", "Ours, released mode (ratio)", "× paper ratio", "D-channel what-if (ratio)", "Δ ratio",
    ]
    lines = [header]
    by_key: Dict[str, Dict[str, Dict]] = {}
    for row in report["rows"]:
        by_key.setdefault(row["key"], {})[row["mode"]] = row
    for key, modes in by_key.items():
        main = modes.get("paper") or modes["standard"]
        released = modes.get("released")
        if "standard" in modes:
            ok = "info" if main["ratio"] != 1.0 else ""
            delta = _fmt_pct(main["ratio_vs_paper"]) if main["ratio"] != 1.0 else ""
        else:
            ok = "✓" if main["within_5pct"] else "✗"
            delta = _fmt_pct(main["ratio_vs_paper"])
        lines.append([
            main["table"],
            main["model"],
            main["variant"],
            main["attention"].upper(),
            _queries_cell(main),
            _paper_cell(main),
            _ours_cell(main),
            delta,
            ok,
            f"{_fmt_g(released['encoder_gflops'])} ({released['ratio']:.3f})" if released else "",
            f"{released['released_over_paper_ratio']:.2f}×" if released else "",
            f"{_fmt_g(main['dchannel_encoder_gflops'])} ({main['dchannel_ratio']:.3f})" if released else "",
            (_fmt_pct(main["dchannel_ratio_vs_paper"]) + (" ✓" if main["dchannel_within_5pct"] else " ✗"))
            if released else "",
        ])
    return lines


def summary(report: Dict) -> Dict:
    checked = [r for r in report["rows"] if r["checked"]]
    return dict(
        checked=len(checked),
        within=sum(bool(r["within_5pct"]) for r in checked),
        dchannel_within=sum(bool(r["dchannel_within_5pct"]) for r in checked),
        released_over_paper=[r["released_over_paper_ratio"] for r in report["rows"] if r["mode"] == "released"],
        misses=[f"{r['model']} {r['variant']} ({_fmt_pct(r['ratio_vs_paper'])})" for r in checked
                if not r["within_5pct"]],
    )


def format_report(report: Dict) -> str:
    """The whole report as Markdown."""
    from tabulate import tabulate

    h, w = report["size"]
    shapes = ", ".join(f"{a}×{b} ({a * b:,})" for a, b in report["shapes"])
    std_rows = {r["key"]: r for r in report["rows"] if r["mode"] == "standard"}
    out = [
        f"## Encoder GFLOPs at {h}×{w} (fvcore, {report['mode']} counting mode)",
        "",
        f"Levels (stride 8, 16, 32, 64): {shapes}; N = {report['num_tokens']:,} tokens. "
        "Queries: the tokens that query in the high-level layers (the levels kept, for the standard rows), "
        "and their share of N.",
    ]
    if "dino" in std_rows or "deformable" in std_rows:
        parts = []
        if "dino" in std_rows:
            parts.append(f"DINO-size standard encoder {std_rows['dino']['encoder_gflops']:.1f} (paper 137)")
        if "deformable" in std_rows:
            parts.append(f"Deformable DETR {std_rows['deformable']['encoder_gflops']:.1f} (paper 90)")
        out.append("Standard encoders: " + ", ".join(parts) + ".")
    out += [
        "Ratios are Lite/standard at the same input; Δ compares ours with the paper's ratio "
        "(0 inside a range where the paper's Tables 3 and 6 disagree). Paper mode: eq. (2) low-level "
        "queries, value projection before or after sampling, whichever is cheaper per layer. "
        "Released mode: every token queries in the low-level layer, values projected over all tokens. "
        "D-channel what-if: projection after sampling counted as Nq·C² plus sampling of D = C/M channels per head.",
        "",
        tabulate(report_table(report)[1:], headers=report_table(report)[0], tablefmt="github", disable_numparse=True),
        "",
    ]
    s = summary(report)
    if s["checked"]:
        released = s["released_over_paper"]
        out.append(
            f"Within ±{RATIO_TOLERANCE:.0%} of the paper's ratio: {s['within']}/{s['checked']} checked rows in the "
            f"paper mode; {s['dchannel_within']}/{s['checked']} under the D-channel what-if. "
            + (f"Released mode: {min(released):.2f}–{max(released):.2f}× the paper's ratios." if released else "")
        )
        if s["misses"]:
            out.append("Paper-mode misses: " + "; ".join(s["misses"]) + ".")
        out.append("")
    if report.get("gap"):
        out += [format_gap(report), ""]
    if report.get("breakdown"):
        out += [format_breakdown(report["breakdown"]), ""]
    how = "every encoder traced whole" if report.get("exact") else (
        "one trace per kind of layer, summed in each encoder's layer order; --exact traces whole encoders"
    )
    out.append(f"{report['encoders_traced']} traces in {report['seconds']:.1f} s ({how}).")
    return "\n".join(out)


def format_gap(report: Dict) -> str:
    from tabulate import tabulate

    header = ["Model", "Variant", "Attn", "Ours", "value side", "D-channel", "value side (D-ch.)", "rest (same)",
              "gap (ratio points)", "placements (T/S per layer)"]
    body = [
        [g["model"], g["variant"], g["attention"].upper(), _fmt_g(g["encoder_gflops"]), _fmt_g(g["value_side_gflops"]),
         _fmt_g(g["dchannel_encoder_gflops"]), _fmt_g(g["dchannel_value_side_gflops"]), _fmt_g(g["rest_gflops"]),
         f"{g['gap_ratio_points']:+.3f}", g["placements"]]
        for g in report["gap"]
    ]
    return "\n".join([
        "### Where the paper mode differs from the D-channel what-if (GFLOPs)",
        "",
        "Only the value side (value/key projection, sampling, KDA's query fold) differs; the rest "
        "(offsets, weights or query projection, output projection, FFNs, LayerNorms) is the same count. "
        "T: value projection over the tokens, S: after sampling (auto's choice per layer).",
        "",
        tabulate(body, headers=header, tablefmt="github", disable_numparse=True),
    ])


_TERM_LABELS = {
    "sampling_offsets": "sampling_offsets (Nq·C·2MLP)",
    "attention_weights": "attention_weights (Nq·C·MLP)",
    "query_proj": "query_proj (Nq·C²)",
    "value_proj": "value_proj (S·C², or Nq·C² what-if)",
    "key_proj": "key_proj",
    "sampling": "sampling (4·Nq·M·L·P·channels)",
    "einsum": "after-sampling projection + KDA query fold (Nq·C·(C+1) each)",
    "attention_math": "q·k, softmax, weighted sum (full mode)",
    "output_proj": "output_proj (Nq·C²)",
    "ffn": "FFN (2·Nq·C·F)",
    "light_ffn": "light FFN (2·Nq·C·F/8)",
    "layer_norm": "LayerNorm (5 per element)",
    "other": "other",
}


def format_breakdown(breakdown: Dict) -> str:
    from tabulate import tabulate

    columns = breakdown["columns"]
    header = ["term (GFLOPs)"] + [f"{c['title']} (Nq={c['num_query']:,}, S={c['num_value']:,})" for c in columns]
    body = []
    for term, label in _TERM_LABELS.items():
        values = [c["terms"][term] for c in columns]
        if not any(values):
            continue
        body.append([label] + [f"{v / 1e9:.3f}" for v in values])
    body.append(["total"] + [f"{c['total'] / 1e9:.3f}" for c in columns])
    per_block = breakdown["layers_per_block"]
    auto = breakdown["auto_placements"][:per_block]
    return "\n".join([
        f"### Per-layer breakdown: {breakdown['model']} {breakdown['variant']} ({breakdown['attention'].upper()})",
        "",
        "Our 'samples' placement is exact: every head samples all C + 1 channels of the raw input (one value head "
        "shared by all heads), then applies its own [W_m | b_m] (and KDA folds its query into the input space). "
        f"Auto picks, per block: {', '.join(auto)}.",
        "",
        tabulate(body, headers=header, tablefmt="github", disable_numparse=True),
    ])


def write_json(report: Dict, path: str) -> None:
    """Writes ``{"size", "mode", "shapes", "rows": [...], ...}``; each row has at least
    model, variant, mode, encoder_gflops, standard_encoder_gflops, paper_encoder_gflops,
    paper_standard_encoder_gflops."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_png(report: Dict, path: str) -> None:
    """A bar chart of encoder GFLOPs per variant (ours, both modes) with the paper's values marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [("DINO / H-DETR (Tables 4, 5)", lambda r: r["feedforward_dim"] == 2048 and r["model"] != "H-DETR"
                 and not r["model"].startswith("Lite-H-DETR")),
                ("Deformable DETR (Tables 3, 6)", lambda r: r["feedforward_dim"] == 1024)]
    groups = []
    for title, keep in families:
        by_key: Dict[str, Dict[str, Dict]] = {}
        for row in report["rows"]:
            if keep(row):
                by_key.setdefault(row["key"], {})[row["mode"]] = row
        if by_key:
            groups.append((title, by_key))
    if not groups:
        raise ValueError("nothing to plot")
    fig, axes = plt.subplots(len(groups), 1, figsize=(12, 4.2 * len(groups)), squeeze=False)
    for ax, (title, by_key) in zip(axes[:, 0], groups):
        labels, ours, released, dchan, paper_lo, paper_hi = [], [], [], [], [], []
        for modes in by_key.values():
            main = modes.get("paper") or modes["standard"]
            labels.append(f"{main['model']}\n{main['variant']} {main['attention'].upper()}")
            ours.append(main["encoder_gflops"])
            released.append(modes["released"]["encoder_gflops"] if "released" in modes else float("nan"))
            dchan.append(main.get("dchannel_encoder_gflops", float("nan")) if "released" in modes else float("nan"))
            low, high = main["paper_encoder_gflops_range"] or (main["paper_encoder_gflops"],) * 2
            paper_lo.append(low)
            paper_hi.append(high)
        x = list(range(len(labels)))
        width = 0.27
        ax.bar([i - width for i in x], ours, width, label="ours, paper mode (standard rows: standard)")
        ax.bar(x, released, width, label="ours, released mode")
        ax.bar([i + width for i in x], dchan, width, label="D-channel what-if", alpha=0.6)
        mid = [(a + b) / 2 for a, b in zip(paper_lo, paper_hi)]
        err = [[m - a for m, a in zip(mid, paper_lo)], [b - m for m, b in zip(mid, paper_hi)]]
        ax.errorbar(x, mid, yerr=err, fmt="D", color="black", capsize=4, label="paper")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("encoder GFLOPs")
        h, w = report["size"]
        ax.set_title(f"{title}, {h}×{w}, fvcore ({report['mode']} counting)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
