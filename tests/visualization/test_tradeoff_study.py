"""tools/tradeoff_study.py on a two-iteration run: the JSON's schema, the table and the chart.

Needs detectron2 and detrex. Trains 2 configs × 2 resolutions × 1 seed for 2 iterations each.
"""
import json
import os

import pytest
from PIL import Image

pytestmark = pytest.mark.detrex
pytest.importorskip("detectron2")
pytest.importorskip("detrex")

RUN_KEYS = {"config", "label", "resolution", "seed", "max_iter", "batch_size", "train_seconds", "AP", "AP50", "AP75", "APs", "APm",
            "APl", "encoder_gflops", "total_gflops", "latency_ms"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from lite_detr_plugin.study.tradeoff import main

    root = tmp_path_factory.mktemp("study")
    patch = pytest.MonkeyPatch()
    patch.setenv("LITE_DETR_DATASETS", str(root / "datasets"))
    out = root / "out"
    document = main(["--configs", "standard", "lite_h3l1_kda", "--resolutions", "96", "64", "--seeds", "0",
                     "--max-iter", "2", "--batch-size", "2", "--output-dir", str(out), "--flop-images", "1", "--latency-images", "1",
                     "--latency-rounds", "2"])
    yield out, document
    patch.undo()


def test_json_rows_and_summary(study):
    out, document = study
    with open(out / "tradeoff.json") as f:
        assert json.load(f) == json.loads(json.dumps(document))
    runs = document["runs"]
    assert len(runs) == 4
    for row in runs:
        assert set(row) == RUN_KEYS
        assert row["max_iter"] == 2 and row["batch_size"] == 2 and row["train_seconds"] > 0
        assert 0 <= row["AP"] <= 100
        assert row["APl"] is None  # no large object in the synthetic set: COCOeval's NaN becomes null
        assert 0 < row["encoder_gflops"] < row["total_gflops"] and row["latency_ms"] > 0
        assert os.path.isfile(out / f"{row['config']}_r{row['resolution']}_s{row['seed']}_i2_b2" / "model_final.pth")
    by = {(r["config"], r["resolution"]): r for r in runs}
    # the Lite encoder costs less than the standard one, and a smaller input costs less
    for resolution in (96, 64):
        assert by[("lite_h3l1_kda", resolution)]["encoder_gflops"] < by[("standard", resolution)]["encoder_gflops"]
    assert by[("standard", 64)]["total_gflops"] < by[("standard", 96)]["total_gflops"]
    assert {(s["config"], s["resolution"]) for s in document["summary"]} == set(by)
    assert all(s["AP_std"] == 0.0 and s["seeds"] == [0] for s in document["summary"])
    assert document["meta"]["max_iter"] == 2 and document["meta"]["wall_seconds"] > 0
    assert document["meta"]["latency"]["rounds"] == 2 and document["meta"]["latency"]["images"] == 1


def test_chart_is_written(study):
    out, _ = study
    with Image.open(out / "tradeoff.png") as png:
        png.verify()


def test_a_finished_run_is_not_trained_again(study):
    from lite_detr_plugin.study.tradeoff import run_study

    out, _ = study
    document = run_study(["standard"], [64], [0], 2, str(out), flop_images=1, latency_images=1,
                         json_path=str(out / "again.json"), progress=False, batch_size=2)
    assert document["runs"][0]["train_seconds"] is None


def test_latency_only_retimes_the_json_runs(study):
    from lite_detr_plugin.study.tradeoff import main

    out, before = study
    again = main(["--output-dir", str(out), "--json", str(out / "tradeoff.json"), "--png", str(out / "again.png"),
                  "--latency-only", "--latency-rounds", "1", "--latency-images", "1"])
    assert again["meta"]["latency"]["rounds"] == 1
    # the same runs, AP and GFLOPs untouched; only the (re-timed) latencies may differ
    strip = lambda row: {k: v for k, v in row.items() if k != "latency_ms"}  # noqa: E731
    assert [strip(r) for r in again["runs"]] == [strip(r) for r in before["runs"]]
    assert all(r["latency_ms"] > 0 for r in again["runs"])
    with open(out / "tradeoff.json") as f:
        assert json.load(f)["meta"]["latency"]["rounds"] == 1


def test_table_and_summary_without_training():
    from lite_detr_plugin.study.tradeoff import format_table, summarize

    rows = [dict(config="standard", label="std", resolution=96, seed=s, AP=a, AP50=0, AP75=0, APs=1, APm=2, APl=3,
                 encoder_gflops=1.0, total_gflops=2.0, latency_ms=10.0 + s) for s, a in ((0, 10.0), (1, 20.0))]
    (entry,) = summarize(rows)
    assert entry["AP"] == 15.0 and entry["AP_std"] == 5.0 and entry["latency_ms"] == 10.5
    rows[0]["APl"] = rows[1]["APl"] = None
    (entry,) = summarize(rows)
    assert entry["APl"] is None and entry["APl_std"] is None
    table = format_table([entry])
    assert "15.0 ± 5.0" in table and "| std" in table and "–" in table
