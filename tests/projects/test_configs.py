"""Every shipped project config loads, builds and takes one CPU training step.

Needs detectron2 and detrex (skipped cleanly without them). The configs are
found by globbing ``projects/*/configs/**/*.py`` (minus ``models/`` helpers), so a
new config is tested without editing this file. Each one is shrunk for the CPU
(small images, fewer queries and denoising groups, ``device="cpu"``) but keeps
its backbone, neck, encoder variant, attention and decoder.
"""
import math
import os
import re

import pytest

from .helpers import REPO_ROOT, lite_configs, load_config, shrink_for_cpu, synthetic_batch

pytestmark = pytest.mark.detrex
pytest.importorskip("detectron2")
pytest.importorskip("detrex")

CONFIGS = lite_configs()
FULL_CONFIGS = [c for c in CONFIGS if "/tiny_cpu/" not in c]


def _expected(path):
    """(variant, attention, decoder KDA) that a config's file name promises."""
    name = os.path.basename(path)
    if "/tiny_cpu/" in path:
        decoder_kda = "/projects/lite_dino/" in path  # Lite-DINO's tiny configs keep its KDA decoder
        if name.startswith("dino_"):  # the standard-encoder baseline of the trade-off study
            return "standard", "msda", decoder_kda
        return "H3L1-(2+1)x3", "kda", decoder_kda
    h, low, a, b = re.search(r"_h(\d)l(\d)_(\d)x(\d)_", name).groups()
    variant = f"H{h}L{low}-({a}+1)x{b}"
    skipscale = name.endswith("_skipscale.py")
    decoder_kda = "lite_dino_" in name and not skipscale and not name.endswith("_no_dec_kda.py")
    return variant, ("msda" if skipscale else "kda"), decoder_kda


def test_configs_are_found():
    names = [os.path.relpath(c, REPO_ROOT) for c in CONFIGS]
    # 18 R50 + 6 Swin-T + the R50 zoom-out config; 3 tiny ones (Lite, zoom-out, standard-encoder baseline)
    assert len([n for n in names if n.startswith("projects/lite_dino/")]) == 28
    assert len([n for n in names if n.startswith("projects/lite_h_detr/")]) == 9
    assert len([n for n in names if n.startswith("projects/lite_deformable_detr/")]) == 11
    assert not any("/models/" in n for n in names)


def test_no_init_files_in_projects():
    """projects/ must stay a namespace shared with detrex's own projects."""
    for folder, _, files in os.walk(os.path.join(REPO_ROOT, "projects")):
        assert "__init__.py" not in files, folder


@pytest.mark.parametrize("project", ["lite_dino", "lite_h_detr", "lite_deformable_detr"])
def test_config_without_detrex_tree_names_detrex_root(monkeypatch, tmp_path, project):
    from lite_detr_plugin.config import DetrexNotFoundError

    path = next(c for c in FULL_CONFIGS if f"/projects/{project}/" in c)
    monkeypatch.setenv("DETREX_ROOT", str(tmp_path / "no_detrex_here"))
    with pytest.raises(DetrexNotFoundError, match="DETREX_ROOT"):
        load_config(path)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_config_builds_and_trains_one_step(path, synthetic_root):
    import torch
    from detectron2.config import instantiate

    from lite_detr_plugin.encoders import LiteEncoder
    from lite_detr_plugin.layers import KeyAwareDeformableAttention

    cfg = load_config(path)
    variant, attention, decoder_kda = _expected(path)

    # What the file promises, before shrinking.
    assert cfg.keys() >= {"model", "dataloader", "optimizer", "lr_multiplier", "train"}
    assert cfg.train.output_dir.startswith("./output/")
    assert os.path.basename(path)[: -len(".py")] in cfg.train.output_dir or "/tiny_cpu/" in path
    if path in FULL_CONFIGS:
        epochs = int(re.search(r"_(\d+)ep", os.path.basename(path)).group(1))
        assert cfg.train.max_iter == epochs * 7500  # detrex's iterations at batch 16
        assert cfg.dataloader.train.total_batch_size == 16

    shrink_for_cpu(cfg)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()

    encoder = model.transformer.encoder
    assert isinstance(encoder, LiteEncoder)
    assert encoder.variant == variant
    assert encoder.attention == attention
    kda_in_decoder = [m for m in model.transformer.decoder.modules() if isinstance(m, KeyAwareDeformableAttention)]
    assert bool(kda_in_decoder) == decoder_kda
    if decoder_kda:
        assert len(kda_in_decoder) == len(model.transformer.decoder.layers)

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    watched = [p for p in encoder.parameters() if p.requires_grad][:4]
    before = [p.detach().clone() for p in watched]

    losses = model(synthetic_batch())
    total = sum(losses.values())
    assert math.isfinite(total.detach().item()), {k: v.detach().item() for k, v in losses.items()}
    optimizer.zero_grad()
    total.backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    optimizer.step()
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, watched))
