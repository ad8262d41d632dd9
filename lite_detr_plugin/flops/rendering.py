"""The encoder GFLOPs report written out: Markdown tables (``lite-detr-flops``'s output) and JSON.

:func:`format_report` renders a report of :func:`~lite_detr_plugin.flops.build_report`:
the main table (a group of columns per report mode), the ±5% summary and the
per-layer breakdown with its explanation (:mod:`~lite_detr_plugin.flops.explanation`).
:func:`~lite_detr_plugin.flops.chart.write_png` draws it.
"""
import json
from typing import Dict, List, Optional

from .explanation import explanation, fmt_gflops
from .paper import RATIO_TOLERANCE
from .rows import by_key, format_pct, summary
from .specs import CHECKED_MODE, MODE_DESCRIPTIONS, NUM_LEVELS, REPORT_MODES


def _gflops_cell(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _paper_cell(row: Dict) -> str:
    if row["paper_encoder_gflops_range"]:
        low, high = row["paper_encoder_gflops_range"]
        rlow, rhigh = row["paper_ratio_range"]
        return f"{low:g}–{high:g} ({rlow:.3f}–{rhigh:.3f})"
    return f"{row['paper_encoder_gflops']:g} ({row['paper_ratio']:.3f})"


def _ours_cell(row: Dict) -> str:
    if row["variant"] == "standard" and row["num_levels"] == NUM_LEVELS:
        return f"{_gflops_cell(row['encoder_gflops'])} (1)"
    return f"{_gflops_cell(row['encoder_gflops'])} ({row['ratio']:.3f})"


def _queries_cell(row: Dict) -> str:
    return f"{row['query_tokens']:,} ({row['query_share'] * 100:.1f}%)"


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
    for key, by_mode in by_key(report["rows"]).items():
        first = by_mode[modes[0]]
        line = [first["table"], first["model"], first["variant"], first["attention"].upper(), _queries_cell(first),
                _paper_cell(first)]
        standard = first["variant"] == "standard"
        baseline = standard and first["num_levels"] == NUM_LEVELS
        for mode in modes:
            row = by_mode[mode]
            line.append(_ours_cell(row))
            delta = "" if baseline else format_pct(row["ratio_vs_paper"])
            if mode == CHECKED_MODE:
                ok = "" if baseline else ("info" if standard else ("✓" if row["within_5pct"] else "✗"))
                line += [delta, ok]
            elif mode == "released":
                line.append("" if standard else f"{row['over_paper_ratio']:.2f}×")
            else:
                line.append(delta)
        lines.append(line)
    return lines


def format_report(report: Dict) -> str:
    """The whole report as Markdown."""
    from tabulate import tabulate

    h, w = report["size"]
    shapes = ", ".join(f"{a}×{b} ({a * b:,})" for a, b in report["shapes"])
    std_rows = {r["key"]: r for r in report["rows"] if r["variant"] == "standard"}
    out = [
        f"## Encoder GFLOPs at {h}×{w} (fvcore, {report['counting']} counting conventions)",
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
    "attention_math": "q·k, softmax, weighted sum (full counting)",
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
            lines.append([label] + [fmt_gflops(v) for v in values])
    lines.append(["value side (value_proj, key_proj, sampling, fold)"]
                 + [fmt_gflops(c["value_side"]) for c in columns])
    lines.append(["total"] + [fmt_gflops(c["total"]) for c in columns])
    return lines


def format_breakdown(breakdown: Dict, report: Optional[Dict] = None) -> str:
    """The per-layer breakdown as Markdown: its table, then why the modes differ."""
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
    """Writes ``{"size", "counting", "modes", "shapes", "rows": [...], ...}``; each row has at least
    model, variant, mode (paper, paper_exact or released), encoder_gflops, standard_encoder_gflops,
    paper_encoder_gflops, paper_standard_encoder_gflops."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
        f.write("\n")

