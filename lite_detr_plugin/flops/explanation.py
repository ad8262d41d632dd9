"""The prose under the per-layer breakdown: why the report's three modes differ, with its numbers."""
from typing import Dict, List, Optional

from .paper import RATIO_TOLERANCE
from .rows import summary
from .specs import CHECKED_MODE, EMBED_DIM, NUM_HEADS


def fmt_gflops(flops: float, digits: int = 3) -> str:
    """FLOPs as GFLOPs with ``digits`` decimals."""
    return f"{flops / 1e9:.{digits}f}"


def explanation(breakdown: Dict, report: Optional[Dict] = None) -> List[str]:
    """Why the three modes differ, with the breakdown's numbers (Markdown lines)."""
    g = fmt_gflops  # short: the prose below formats a number in nearly every clause
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
    low_exact_text += f" value side {g(le['value_side'])} against {g(lo['value_side'])} for \"output\"."
    fold = " and, for KDA, the fold of the query into the input space (another Nq·C·(C+1))" if kda else ""
    lines = [
        f'**Why "released" costs {released_range}the paper\'s ratios.** {name}: '
        f"{g(totals['released'], 1)} GFLOPs against {g(totals['paper'], 1)} for \"paper\", two causes:",
        "",
        f"* The last layer of each block queries with all {rl['num_query']:,} tokens instead of the "
        f"{lo['num_query']:,} low-level ones, and runs the full FFN on the {rl['num_query'] - lo['num_query']:,} "
        f"high-level rows (FFN {g(rl['terms']['ffn'])}) beside the light FFN: {g(rl['total'])} GFLOPs against "
        f"{g(lo['total'])}; ×{B} blocks = +{g(last_excess, 2)}.",
        f"* It projects the values of all S = {hr['num_value']:,} tokens in every layer "
        f"(S·C² = {g(hr['terms']['value_proj'])}), where \"output\" projects the {ho['num_query']:,} aggregated "
        f"outputs (Nq·C² = {g(ho['terms']['value_proj'])}): +{g(hr['total'] - ho['total'])} per high-level layer, "
        f"×{A * B} = +{g(proj_excess, 2)}.",
        f"* Together +{g(last_excess + proj_excess, 2)} GFLOPs, "
        f"+{(last_excess + proj_excess) / std:.3f} of the standard encoder.",
        "",
        f"**Why the exact projection after sampling (\"paper_exact\") cannot reach the paper's count.** "
        f"To give each head its own W_m·x after sampling, every head has to sample all C + 1 = {C + 1} channels "
        f"of the raw input (the ones channel carries the bias), not D = {D}: sampling {g(hs['sampling'])} instead "
        f"of {g(ho['sampling'])} in a high-level layer, then each head's projection Nq·C·(C+1){fold}: "
        f"{g(hs['terms']['einsum'])}. A high-level layer's value side: exact samples {g(hs['value_side'])}, "
        f"tokens {g(hr['value_side'])}, \"output\" {g(ho['value_side'])}. {low_exact_text} "
        f"{breakdown['variant']}: ×{A * B} high-level layers +{g(exact_high_excess, 2)}, ×{B} low-level "
        f"+{g(exact_low_excess, 2)}: {g(totals['paper_exact'], 1)} GFLOPs, ratio "
        f"{totals['paper_exact'] / std:.3f} against \"paper\" {totals['paper'] / std:.3f}."
        + (" MSDA has no query fold; the C+1-channel sampling alone keeps its exact count above \"paper\"."
           if kda else ""),
        "",
        f"**\"output\" (the released code's `value_proj_after`) does.** Each head aggregates its own D = {D} "
        f"raw channels (sampling {g(ho['sampling'])}, as \"tokens\" samples D channels of the projected values) "
        f"and `value_proj` runs once on the aggregated output (Nq·C² = {g(ho['terms']['value_proj'])}): a value "
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
