"""``lite-detr-export`` / ``lite-detr-benchmark``: one clear line for bad input; the benchmark's JSON and PNG.

The CLI tests call ``main([...])`` (console scripts do not exist where the
package is not pip-installed). Those that build a detector are marked detrex.
"""
import json
import os

import pytest
import torch

from lite_detr_plugin.export import ExportError, build_trt_engine
from lite_detr_plugin.export import benchmark_cli, cli, tensorrt


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1, err
    assert "Traceback" not in "\n".join(err)
    return errors[0]


def test_trt_engine_without_gpu_or_tensorrt_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = cli.main(["--config-file", "any.py", "--trt-engine", "model.plan"])
    assert code == 2
    line = one_error_line(capsys)
    assert "TensorRT" in line and ("GPU" in line or "tensorrt" in line)
    with pytest.raises(ExportError, match="cannot build a TensorRT engine"):
        build_trt_engine("model.onnx", "model.plan")
    assert tensorrt.tensorrt_unavailable_reason() is not None


def test_bad_size_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--config-file", "any.py", "--size", "800by1333"])
    assert exit_info.value.code == 2
    assert "size must be HxW" in capsys.readouterr().err


def test_missing_config_is_one_line(capsys):
    code = cli.main(["--config-file", "no/such/config.py", "--output", "x.onnx"])
    assert code == 2
    one_error_line(capsys)


def test_benchmark_refuses_cuda_without_gpu(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert benchmark_cli.main(["--config-file", "x.py", "--device", "cuda"]) == 2
    assert "no CUDA GPU" in one_error_line(capsys)


TINY_DINO = "projects/lite_dino/configs/tiny_cpu/lite_dino_tiny_cpu.py"
SMALL = ["model.num_queries=20", "model.select_box_nums_for_evaluation=10", "model.transformer.decoder.num_layers=1"]


@pytest.mark.detrex
def test_export_cli_writes_onnx_and_reports(tmp_path, capsys, detrex_root):
    output = str(tmp_path / "lite_dino.onnx")
    code = cli.main(["--config-file", TINY_DINO, "--output", output, "--size", "64x64", "--opset", "17",
                     "--sampler", "gather", "--simplify"] + SMALL)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert os.path.getsize(output) > 0
    assert "GatherND" in captured.out and "MiB" in captured.out and "max |Δ| scores" in captured.out
    assert "RANDOMLY INITIALISED" in captured.err


@pytest.mark.detrex
def test_export_cli_not_a_detr_is_one_line(tmp_path, capsys, detrex_root):
    config = tmp_path / "not_a_detr.py"
    config.write_text("from detectron2.config import LazyCall as L\nimport torch\n"
                      "model = L(torch.nn.Linear)(in_features=2, out_features=2)\n")
    code = cli.main(["--config-file", str(config), "--output", str(tmp_path / "x.onnx"), "--weights", ""])
    assert code == 2
    assert "DINO, H-DETR or Deformable DETR" in one_error_line(capsys)


@pytest.mark.detrex
def test_benchmark_json_parts_sum_to_total_and_png_is_valid(tmp_path, capsys, detrex_root):
    import matplotlib.image

    out_json, out_png = str(tmp_path / "latency.json"), str(tmp_path / "latency.png")
    code = benchmark_cli.main(["--config-file", TINY_DINO, "--sizes", "64x64", "64x96", "--repeats", "2",
                               "--threads", "1", "--json", out_json, "--png", out_png] + SMALL)
    assert code == 0, capsys.readouterr().err
    rows = json.load(open(out_json))
    assert len(rows) == 2
    for row in rows:
        ms = row["ms"]
        parts = sum(ms[p] for p in ("backbone", "neck", "encoder", "decoder", "heads"))
        assert all(ms[p] > 0 for p in ("backbone", "neck", "encoder", "decoder", "heads"))
        assert abs(parts - ms["total"]) <= 0.1 * ms["total"], ms
        assert row["gflops"]["encoder"] > 0 and row["gflops"]["total"] > row["gflops"]["encoder"]
    with open(out_png, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out_png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


@pytest.mark.detrex
def test_benchmark_eager_and_onnxruntime_side_by_side(tmp_path, capsys, detrex_root):
    out_json = str(tmp_path / "ort.json")
    code = benchmark_cli.main(["--config-file", TINY_DINO, "--sizes", "64x64", "--repeats", "1", "--threads", "1",
                               "--backend", "eager", "onnxruntime", "--no-flops", "--json", out_json] + SMALL)
    assert code == 0, capsys.readouterr().err
    eager, ort = json.load(open(out_json))  # side by side on the same model and size
    assert (eager["backend"], ort["backend"]) == ("eager", "onnxruntime") and eager["size"] == ort["size"]
    assert set(ort["ms"]) == {"total"} and ort["ms"]["total"] > 0 and eager["ms"]["encoder"] > 0
