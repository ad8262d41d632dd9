"""``lite-detr-flops`` / tools/analyze_flops.py: runs, and writes valid JSON and PNG."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from lite_detr_plugin import ops
from lite_detr_plugin.flops import PAPER_ENCODER_GFLOPS
from lite_detr_plugin.flops.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUIRED = {
    "model": str,
    "variant": str,
    "mode": str,
    "encoder_gflops": float,
    "standard_encoder_gflops": float,
    "paper_encoder_gflops": float,
    "paper_standard_encoder_gflops": float,
}


@pytest.fixture(autouse=True)
def _compiled():
    if not ops.has_kernel("cpu"):
        pytest.fail(f"the compiled lite_detr op is not loaded ({ops.build_info()})")


def test_report_json_and_png(tmp_path, capsys):
    json_path, png_path = tmp_path / "rows.json", tmp_path / "chart.png"
    assert main(["--size", "64x96", "--quiet", "--json", str(json_path), "--png", str(png_path)]) == 0
    out = capsys.readouterr().out
    assert "## Encoder GFLOPs at 64×96" in out
    assert "| Lite-DINO" in out and "H3L1-(2+1)x3" in out
    assert "Per-layer breakdown" in out
    assert '"paper" GFLOPs (ratio)' in out and '"paper_exact" GFLOPs (ratio)' in out and '"released"' in out
    assert "what-if" not in out

    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["size"] == [64, 96]
    assert data["counting"] == "paper"
    assert data["shapes"] == [[8, 12], [4, 6], [2, 3], [1, 2]]
    rows = data["rows"]
    assert data["modes"] == ["paper", "paper_exact", "released"]
    assert {r["mode"] for r in rows} == {"paper", "paper_exact", "released"}
    for row in rows:
        for field, kind in REQUIRED.items():
            assert isinstance(row[field], kind), (field, row[field])
        assert row["encoder_gflops"] > 0
    by_key = {(r["key"], r["mode"]): r for r in rows}
    for paper in PAPER_ENCODER_GFLOPS:  # every published figure has a row per mode
        for mode in ("paper", "paper_exact", "released"):
            row = by_key[(paper["key"], mode)]
            assert row["paper_encoder_gflops"] == paper["gflops"]
            assert row["checked"] == (paper["checked"] and mode == "paper")
            if paper["variant"] == "standard":  # the same encoder in every mode
                assert row["value_placement"] == "tokens"
                assert row["encoder_gflops"] == by_key[(paper["key"], "paper")]["encoder_gflops"]
            else:
                assert (row["low_query_mode"], row["value_placement"]) == {
                    "paper": ("paper", "output"), "paper_exact": ("paper", "auto"),
                    "released": ("released", "tokens")}[mode]
    assert len(rows) == 3 * len(PAPER_ENCODER_GFLOPS)
    assert len({(r["model"], r["variant"], r["mode"]) for r in rows}) == len(rows)
    assert by_key[("deformable", "paper")]["ratio"] == 1.0
    dino = next(r for r in rows if r["key"] == "dino")
    assert dino["paper_encoder_gflops"] == 137.0 and dino["encoder_gflops"] == dino["standard_encoder_gflops"]

    with open(png_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(str(png_path))
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200


@pytest.mark.parametrize("flag", ["--counting", "--mode"])  # --mode: the former name, still accepted
def test_rows_filter_and_full_counting(tmp_path, capsys, flag):
    json_path = tmp_path / "rows.json"
    assert main(["--size", "64x64", "--quiet", flag, "full", "--rows", "deformable-h2l2-2x3",
                 "--no-breakdown", "--json", str(json_path)]) == 0
    data = json.loads(json_path.read_text(encoding="utf-8"))
    rows = data["rows"]
    expected = [("deformable-h2l2-2x3", mode) for mode in ("paper", "paper_exact", "released")]
    assert [(r["key"], r["mode"]) for r in rows] == expected
    assert all(r["counting"] == "full" for r in rows)
    assert data["counting"] == "full"
    out = capsys.readouterr().out
    assert "Per-layer breakdown" not in out
    assert "(fvcore, full counting conventions)" in out


def test_modes_option(tmp_path, capsys):
    json_path = tmp_path / "rows.json"
    assert main(["--size", "64x64", "--quiet", "--modes", "released", "paper", "--rows", "dino-h3l1-2x3",
                 "--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    rows = json.loads(json_path.read_text(encoding="utf-8"))["rows"]
    assert [(r["key"], r["mode"]) for r in rows] == [("dino-h3l1-2x3", "paper"), ("dino-h3l1-2x3", "released")]
    assert '"paper_exact"' not in out
    assert "Per-layer breakdown" not in out  # it needs all three modes
    with pytest.raises(SystemExit):
        main(["--modes", "dchannel"])


def test_bad_arguments():
    with pytest.raises(SystemExit):
        main(["--size", "big"])
    with pytest.raises(SystemExit):
        main(["--swap-encoder", "H3L1-(2+1)x3"])  # needs --config-file


@pytest.mark.skipif(not os.path.isfile(os.path.join(ROOT, "tools", "analyze_flops.py")), reason="no source checkout")
def test_tools_script_runs():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "analyze_flops.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--config-file" in result.stdout and "--json" in result.stdout


@pytest.mark.skipif(shutil.which("lite-detr-flops") is None, reason="the package's console script is not installed")
def test_console_script_runs():
    result = subprocess.run(["lite-detr-flops", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "850x1040" in result.stdout
