"""lite_detr_plugin.benchmarks.encoder: one configuration measured in-process, and the table's ratios."""
import math

from lite_detr_plugin.benchmarks import encoder as bench

SPEC = dict(device="cpu", dtype="float32", size=[64, 96], batch_size=1, num_levels=4, embed_dim=32, num_heads=4,
            feedforward_dim=64, repeats=2, warmup=1, threads=1, paired=True, flops=False)


def test_run_child_measures_one_configuration():
    config = dict(variant="H3L1-(2+1)x3", mode="paper", attention="kda")
    result = bench.run_child(dict(SPEC, config=config))
    assert result["output_ok"] and result["num_layers"] == 9 and result["threads"] == 1
    assert result["num_tokens"] == 8 * 12 + 4 * 6 + 2 * 3 + 1 * 2  # 64x96: strides 8..64
    assert len(result["times_ms"]) == 2 and result["latency_ms"] > 0 and result["first_ms"] > 0
    assert result["paired_ratio"] > 0 and (math.isnan(result["peak_mb"]) or result["peak_mb"] >= 0)


def test_ratios_are_against_the_standard_msda_encoder():
    rows = [dict(device="cpu", dtype="float32", variant="standard", mode="-", attention="msda", latency_ms=200.0,
                 peak_mb=100.0, num_layers=6),
            dict(device="cpu", dtype="float32", variant="H3L1-(2+1)x3", mode="paper", attention="kda",
                 latency_ms=80.0, peak_mb=50.0, num_layers=9),
            dict(device="cpu", dtype="float32", variant="H3L1-(2+1)x3", mode="released", attention="kda",
                 error="timed out")]
    bench.add_ratios(rows)
    assert rows[0]["latency_ratio"] == 1.0 and rows[1]["latency_ratio"] == 0.4 and rows[1]["memory_ratio"] == 0.5
    assert rows[2]["latency_ratio"] is None
    lines = bench.target_lines(rows)
    assert lines == ["cpu float32 H3L1-(2+1)x3 paper: 0.40× latency, 0.50× memory -> meets the target "
                     "(≤ 0.45× latency, ≤ 1× memory)"]
    table = bench.markdown_table(rows)
    assert "error: timed out" in table and "0.40" in table
