"""lite-detr-demo and lite-detr-visualize end to end on the tiny Lite-DINO (random weights saved to a checkpoint).

Needs detectron2 and detrex.
"""
import os

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.detrex
pytest.importorskip("detectron2")
pytest.importorskip("detrex")

TINY = "projects/lite_dino/configs/tiny_cpu/lite_dino_tiny_cpu.py"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Two synthetic images, and a checkpoint of the tiny model (random init), in a temporary folder;
    the tiny config's dataset is generated there too."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer

    from lite_detr_plugin.data import generate_synthetic_coco
    from lite_detr_plugin.visualization.predictor import load_model

    root = tmp_path_factory.mktemp("demo")
    patch = pytest.MonkeyPatch()
    patch.setenv("LITE_DETR_DATASETS", str(root / "datasets"))
    images = generate_synthetic_coco(str(root / "images"), num_train=2, num_val=2, seed=5)
    torch.manual_seed(0)
    _, model = load_model(TINY, allow_random_weights=True)
    DetectionCheckpointer(model, save_dir=str(root)).save("tiny")
    yield {"root": root, "images": os.path.join(images, "val"), "checkpoint": str(root / "tiny.pth")}
    patch.undo()


def _valid_png(path, size=None):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert size is None or image.size == size
        return np.asarray(image.convert("RGB"))


def test_demo_draws_every_input(workspace, capsys):
    from lite_detr_plugin.visualization.demo import main

    out = workspace["root"] / "demo_out"
    written = main(["--config-file", TINY, "--input", workspace["images"], "--output", str(out),
                    "--confidence-threshold", "0.0", f"train.init_checkpoint={workspace['checkpoint']}"])
    assert [os.path.basename(p) for p in written] == ["000000.png", "000001.png"]
    source = np.asarray(Image.open(os.path.join(workspace["images"], "000000.png")).convert("RGB"))
    drawn = _valid_png(written[0], size=(160, 128))
    assert not np.array_equal(drawn, source)  # threshold 0: the top detections are drawn
    printed = capsys.readouterr().out
    assert printed.count(" ms (") == 2 and "detections" in printed


def test_demo_one_file_output_and_glob(workspace):
    from lite_detr_plugin.visualization.demo import main

    target = str(workspace["root"] / "one.png")
    written = main(["--config-file", TINY, "--input", os.path.join(workspace["images"], "*1.png"), "--output", target,
                    f"train.init_checkpoint={workspace['checkpoint']}"])
    assert written == [target]
    _valid_png(target, size=(160, 128))


def test_demo_refuses_random_weights_and_bad_inputs(workspace):
    from lite_detr_plugin.visualization.demo import main

    with pytest.raises(ValueError, match="--allow-random-weights"):
        main(["--config-file", TINY, "--input", workspace["images"], "--output", str(workspace["root"] / "x")])
    with pytest.raises(FileNotFoundError, match="no such image"):
        main(["--config-file", TINY, "--input", "/nonexistent/*.jpg", "--output", str(workspace["root"] / "x"),
              "--allow-random-weights"])
    with pytest.raises(FileNotFoundError, match="no such file"):
        main(["--config-file", TINY, "--input", workspace["images"], "--output", str(workspace["root"] / "x"),
              "train.init_checkpoint=/nonexistent.pth"])


def test_visualize_compares_kda_with_skipscale(workspace, capsys):
    from lite_detr_plugin.visualization.visualize import main

    target = str(workspace["root"] / "fig5.png")
    image = os.path.join(workspace["images"], "000000.png")
    written = main(["--config-file", TINY, "--input", image, "--output", target, "--point", "80,60",
                    "--compare-opts", "model.transformer.encoder.attention=msda", "--allow-random-weights"])
    assert written == [target]
    _valid_png(target)
    printed = capsys.readouterr().out
    # one KDA row from the model, one MSDA row from the compared model, MSDA first as in the paper
    assert "2 row(s) (compared: deformable attention (MSDA), model: KDA)" in printed


def test_visualize_compare_takes_a_checkpoint_and_refuses_random_weights(workspace, capsys):
    from lite_detr_plugin.visualization.visualize import main

    image = os.path.join(workspace["images"], "000001.png")
    target = str(workspace["root"] / "fig5_ckpt.png")
    written = main(["--config-file", TINY, "--input", image, "--output", target, "--compare", workspace["checkpoint"],
                    f"train.init_checkpoint={workspace['checkpoint']}"])
    assert written == [target]
    _valid_png(target)
    assert "2 row(s) (model: KDA, compared: KDA)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--allow-random-weights"):
        main(["--config-file", TINY, "--input", image, "--output", target])
    with pytest.raises(ValueError, match="--compare 'weights.bin'"):
        main(["--config-file", TINY, "--input", image, "--output", target, "--compare", "weights.bin",
              "--allow-random-weights"])


def test_recorded_encoder_attention_of_a_whole_model(workspace):
    import torch

    from lite_detr_plugin.visualization.predictor import load_model, prepare_image, read_rgb
    from lite_detr_plugin.visualization.visualize import record_attention

    cfg, model = load_model(TINY, [f"train.init_checkpoint={workspace['checkpoint']}"])
    prepared = prepare_image(cfg, read_rgb(os.path.join(workspace["images"], "000000.png")))
    outputs, records, padded = record_attention(model, prepared.inputs)
    assert len(records) == 9 and {r.kind for r in records} == {"kda"}  # H3L1-(2+1)x3: 9 encoder layers
    num_tokens = int((records[0].spatial_shapes[:, 0] * records[0].spatial_shapes[:, 1]).sum())
    low = int(records[0].level_start_index[1])  # H3L1: level 0 is the only low-level scale
    # two high-level layers (the S1-S3 tokens query), then a released low-level layer (every token)
    assert [r.query_start for r in records[:3]] == [low, low, 0]
    assert records[2].num_queries == num_tokens
    assert padded == prepared.input_size
    torch.testing.assert_close(records[0].weights.sum((-2, -1)), torch.ones(records[0].weights.shape[:3]))
    assert len(outputs[0]["instances"]) > 0
