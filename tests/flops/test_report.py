"""The paper-table report: its shortcut (one trace per kind of layer) is exact, and the
DINO-size counts at 850×1040 equal the per-layer formulas."""
import pytest

from lite_detr_plugin import ops
from lite_detr_plugin.flops import PAPER_ENCODER_GFLOPS, build_report
from lite_detr_plugin.flops.paper import paper_ratio_range, ratio_deviation, within_tolerance

SMALL = (96, 128)  # levels 12×16, 6×8, 3×4, 2×2


@pytest.fixture(autouse=True)
def _compiled():
    if not ops.has_kernel("cpu"):
        pytest.fail(f"the compiled lite_detr op is not loaded ({ops.build_info()})")


def _by(report):
    return {(r["key"], r["mode"]): r for r in report["rows"]}


def test_layer_kind_shortcut_equals_whole_encoder_traces():
    fast = build_report(SMALL, breakdown=True)
    exact = build_report(SMALL, breakdown=True, exact=True)
    assert fast["encoders_traced"] < exact["encoders_traced"]
    fast_rows, exact_rows = _by(fast), _by(exact)
    assert fast_rows.keys() == exact_rows.keys()
    for key, row in fast_rows.items():
        other = exact_rows[key]
        for field in ("encoder_gflops", "standard_encoder_gflops", "dchannel_encoder_gflops",
                      "value_side_gflops", "placements"):
            assert row.get(field) == other.get(field), (key, field)
    assert fast["breakdown"] == exact["breakdown"]


def test_rows_cover_every_paper_figure():
    report = build_report(SMALL, breakdown=False)
    rows = _by(report)
    for paper in PAPER_ENCODER_GFLOPS:
        modes = ("standard",) if paper["variant"] == "standard" else ("paper", "released")
        for mode in modes:
            row = rows[(paper["key"], mode)]
            assert row["paper_encoder_gflops"] == paper["gflops"]
            assert row["checked"] == (paper["checked"] and mode == "paper")
    assert rows[("dino", "standard")]["ratio"] == 1.0
    assert rows[("deformable", "standard")]["ratio"] == 1.0


def test_paper_figures():
    by_key = {row["key"]: row for row in PAPER_ENCODER_GFLOPS}
    assert by_key["dino-h3l1-2x3"]["gflops"] == 53 and by_key["dino"]["gflops"] == 137
    assert by_key["deformable-h3l1-2x3"]["gflops_range"] == (36, 39)
    assert by_key["deformable-h3l1-2x3"]["sources"] == {"Table 3": 39, "Table 6": 36}
    low, high = paper_ratio_range(by_key["deformable-h3l1-2x3"])
    assert (low, high) == pytest.approx((36 / 90, 39 / 90))
    assert ratio_deviation(0.41, by_key["deformable-h3l1-2x3"]) == 0.0  # inside the range
    assert ratio_deviation(53 / 137 * 1.06, by_key["dino-h3l1-2x3"]) == pytest.approx(0.06)
    assert within_tolerance(53 / 137 * 1.049, by_key["dino-h3l1-2x3"])
    assert not within_tolerance(53 / 137 * 1.051, by_key["dino-h3l1-2x3"])
    checked = {row["key"] for row in PAPER_ENCODER_GFLOPS if row["checked"]}
    assert {"dino-h3-hl-ll", "dino-h2-hl-ll-kda", "deformable-h3l1-2x4"} <= checked
    assert not {"dino", "dino-3scale", "dino-2scale", "deformable"} & checked


# The DINO-size encoder at 850×1040: C=256, M=8, L=4, P=4, D=32; N tokens.
C, M, L, P, D = 256, 8, 4, 4, 32
LEVELS = [(107, 130), (54, 65), (27, 33), (14, 17)]
N = sum(h * w for h, w in LEVELS)  # 18,549
HIGH3 = sum(h * w for h, w in LEVELS[1:])  # 4,639
LOW3 = N - HIGH3  # 13,910


def standard_layer(ffn):
    # value_proj, sampling_offsets, output_proj: N·C² each; attention_weights N·C·M·L·P;
    # FFN 2·N·C·F; two LayerNorms at 5 per element; grid-sample-style sampling 4·N·M·L·P·D
    return 3 * N * C * C + N * C * M * L * P + 2 * N * C * ffn + 2 * 5 * N * C + 4 * N * M * L * P * D


def kda_layer(nq, placement, ffn_rows, light_rows):
    flops = nq * C * (M * L * P * 2) + 2 * nq * C * C  # offsets, query_proj, output_proj
    if placement == "tokens":
        flops += N * C * C + 4 * nq * M * L * P * D
    else:  # sampling of C + 1 channels, per-head projection after sampling, the query fold
        flops += 4 * nq * M * L * P * (C + 1) + 2 * nq * C * (C + 1)
    flops += 2 * ffn_rows * C * 2048 + 2 * light_rows * C * 256
    flops += 5 * C * (nq + ffn_rows + light_rows)
    return flops


def test_dino_size_counts_at_850x1040():
    report = build_report((850, 1040), keys=["dino", "deformable", "dino-h3l1-2x3"], breakdown=False)
    rows = _by(report)
    assert report["shapes"] == [list(s) for s in LEVELS]
    assert rows[("dino", "standard")]["encoder_gflops"] == pytest.approx(6 * standard_layer(2048) / 1e9, abs=1e-3)
    assert rows[("dino", "standard")]["encoder_gflops"] == pytest.approx(144.3, abs=0.05)
    assert rows[("deformable", "standard")]["encoder_gflops"] == pytest.approx(86.0, abs=0.05)

    paper = rows[("dino-h3l1-2x3", "paper")]
    # "auto": the high-level layers project after sampling, the low-level layer before
    assert paper["placements"] == ["samples", "samples", "tokens"] * 3
    high = kda_layer(HIGH3, "samples", HIGH3, 0)
    low = kda_layer(LOW3, "tokens", 0, LOW3)
    assert paper["encoder_gflops"] == pytest.approx(3 * (2 * high + low) / 1e9, abs=1e-3)
    released = rows[("dino-h3l1-2x3", "released")]
    high_tokens = kda_layer(HIGH3, "tokens", HIGH3, 0)
    last = kda_layer(N, "tokens", HIGH3, LOW3)  # every token queries; full FFN on the high rows
    assert released["encoder_gflops"] == pytest.approx(3 * (2 * high_tokens + last) / 1e9, abs=1e-3)
    # the D-channel what-if: value side Nq·C² + 4·Nq·M·L·P·D in every Lite layer
    def what_if(nq, ffn_rows, light_rows):
        return (nq * C * (M * L * P * 2) + 3 * nq * C * C + 4 * nq * M * L * P * D
                + 2 * ffn_rows * C * 2048 + 2 * light_rows * C * 256 + 5 * C * (nq + ffn_rows + light_rows))
    expected = 3 * (2 * what_if(HIGH3, HIGH3, 0) + what_if(LOW3, 0, LOW3))
    assert paper["dchannel_encoder_gflops"] == pytest.approx(expected / 1e9, abs=1e-3)
    assert paper["dchannel_within_5pct"]
