"""The demo and visualizer command lines (argparse only: no model is built)."""
import pytest

from lite_detr_plugin.visualization.predictor import parse_args
from lite_detr_plugin.visualization.visualize import build_parser


def test_overrides_anywhere_on_the_line():
    args = parse_args(build_parser(), ["--config-file", "c.py", "--input", "a.png", "b.png", "train.init_checkpoint=k.pth",
                                       "--output", "o.png", "x.y=1", "--compare-checkpoint", "s.pth",
                                       "--compare-opts", "model.transformer.encoder.attention=msda"])
    assert args.input == ["a.png", "b.png"] and args.output == "o.png"
    assert args.opts == ["train.init_checkpoint=k.pth", "x.y=1"]
    assert args.compare_checkpoint == "s.pth" and args.compare_opts == ["model.transformer.encoder.attention=msda"]
    args = parse_args(build_parser(), ["a.b=2", "--config-file", "c.py", "--input", "a.png", "--output", "o"])
    assert args.opts == ["a.b=2"] and args.input == ["a.png"]


def test_input_of_overrides_only_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(build_parser(), ["--config-file", "c.py", "--input", "a=b", "--output", "o"])
    assert "--input: no image" in capsys.readouterr().err
