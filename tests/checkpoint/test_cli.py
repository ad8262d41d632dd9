"""tools/convert_checkpoint.py (through lite_detr_plugin.checkpoint.cli.main)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lite_detr_plugin.checkpoint.cli import main

from .helpers import load_layout, official_state_dict, shapes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def released_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "r50_s3ex3_50.4.pth"
    state_dict = official_state_dict(load_layout("official", "r50_s3ex3"))
    torch.save({"model": state_dict, "optimizer": {}, "epoch": 35}, path)
    return path


def test_writes_a_detectron2_checkpoint(released_file, tmp_path, capsys):
    output = tmp_path / "lite_dino.pth"
    assert main(["--input", str(released_file), "--output", str(output)]) == 0
    saved = torch.load(output, map_location="cpu", weights_only=False)
    assert shapes(saved["model"]) == load_layout("target", "r50_s3ex3")
    assert saved["lite_detr_conversion"]["variant"] == "H3L1-(2+1)x3"
    assert saved["lite_detr_conversion"]["complete"] is True
    printed = capsys.readouterr().out
    assert "H3L1-(2+1)x3" in printed and "mapped 692 source keys -> 700 target keys" in printed


def test_explicit_variant_and_target_keys(released_file, tmp_path):
    output = tmp_path / "out.pth"
    target = Path(__file__).parent / "data" / "target_r50_s3ex3.json"
    assert main(["--input", str(released_file), "--output", str(output), "--variant", "H3L1-(2+1)x3",
                 "--target-keys", str(target)]) == 0
    assert output.exists()


def test_refuses_and_writes_nothing(released_file, tmp_path, capsys):
    checkpoint = torch.load(released_file, map_location="cpu", weights_only=False)
    del checkpoint["model"]["transformer.tgt_embed.weight"]
    broken = tmp_path / "r50_s3ex3_broken.pth"
    torch.save(checkpoint, broken)
    output = tmp_path / "out.pth"
    assert main(["--input", str(broken), "--output", str(output)]) == 1
    assert not output.exists()
    assert "transformer.tgt_embed.weight" in capsys.readouterr().err

    assert main(["--input", str(broken), "--output", str(output), "--allow-partial"]) == 0
    saved = torch.load(output, map_location="cpu", weights_only=False)
    assert len(saved["model"]) == 699 and saved["lite_detr_conversion"]["complete"] is False
    captured = capsys.readouterr()
    assert "transformer.tgt_embed.weight" in captured.out and "partial" in captured.err


def test_variant_contradicting_the_weights(released_file, tmp_path, capsys):
    assert main(["--input", str(released_file), "--dry-run", "--variant", "H3L1-(6+1)x1"]) == 1
    assert "checkpoint has 9 layers" in capsys.readouterr().err


def test_script_runs(released_file, tmp_path):
    output = tmp_path / "out.pth"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "convert_checkpoint.py"), "--input", str(released_file),
         "--output", str(output), "--num-high-levels", "3"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert output.exists()
