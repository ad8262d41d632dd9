"""lite_detr_plugin.benchmarks.placement (lite-detr-benchmark-placement): both placements timed at a
small size; its cost terms and its "auto" column are the cost model's (lite_detr_plugin.layers.placement)."""
import json

import pytest
import torch

from lite_detr_plugin.benchmarks.placement import main
from lite_detr_plugin.layers.placement import choose_placement, placement_terms


def test_placement_benchmark_runs_small(tmp_path, capsys):
    """lite-detr-benchmark-placement at a small size: its cost terms and "auto" column are the model's."""
    path = tmp_path / "placement.json"
    threads = torch.get_num_threads()
    try:
        assert main(["--size", "64x96", "--queries", "10", "40", "--repeats", "1", "--threads", "1",
                     "--json", str(path)]) == 0
    finally:
        torch.set_num_threads(threads)  # --threads sets it for the process
    out = capsys.readouterr().out
    assert "fitted κ" in out and "auto picks" in out
    data = json.loads(path.read_text())
    num_value = 8 * 12 + 4 * 6 + 2 * 3 + 1 * 2  # the 64×96 image's four maps
    assert [(r["attention"], r["num_query"]) for r in data["rows"]] == [
        ("kda", 10), ("kda", 40), ("msda", 10), ("msda", 40)]
    for row in data["rows"]:
        assert row["num_value"] == num_value and row["tokens_ms"] > 0 and row["samples_ms"] > 0
        terms = placement_terms(row["attention"], row["num_query"], num_value, 256, 8, 4, 4)
        assert row["d_gemm"] == terms["samples"][0] - terms["tokens"][0]
        assert row["d_sampling"] == terms["samples"][1] - terms["tokens"][1]
        assert row["auto"] == choose_placement("auto", row["attention"], row["num_query"], num_value, 256, 8, 4, 4)
    assert data["fits"]["kda"]["kappa_in_use"] == 10.0 and data["fits"]["msda"]["kappa_in_use"] == 5.0
    with pytest.raises(SystemExit):
        main(["--queries", "0"])
