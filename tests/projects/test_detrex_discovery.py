"""Finding detrex's source tree, and the learning-rate factor helper. No detrex needed."""
import os
import sys
import types

import pytest

from lite_detr_plugin.config import DeformableLRFactor, DetrexNotFoundError, add_deformable_lr_factor, detrex_root
from lite_detr_plugin.config.detrex import plugin_root

from .helpers import REPO_ROOT


def _fake_detrex_tree(root):
    (root / "detrex").mkdir(parents=True)
    (root / "detrex" / "__init__.py").write_text("")
    (root / "projects" / "dino" / "configs").mkdir(parents=True)
    return root


def test_detrex_root_from_environment(monkeypatch, tmp_path):
    tree = _fake_detrex_tree(tmp_path / "detrex_clone")
    monkeypatch.setenv("DETREX_ROOT", str(tree))
    assert detrex_root() == str(tree)


def test_bad_detrex_root_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("DETREX_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(DetrexNotFoundError, match="DETREX_ROOT"):
        detrex_root()


def test_installed_detrex_without_source_tree_names_the_variable(monkeypatch, tmp_path):
    """A non-editable detrex install has no projects/ next to it."""
    package = tmp_path / "site-packages" / "detrex"
    package.mkdir(parents=True)
    fake = types.ModuleType("detrex")
    fake.__file__ = str(package / "__init__.py")
    monkeypatch.delenv("DETREX_ROOT", raising=False)
    monkeypatch.setitem(sys.modules, "detrex", fake)
    with pytest.raises(DetrexNotFoundError, match="DETREX_ROOT") as error:
        detrex_root()
    assert "Installation" in str(error.value)  # links detrex's installation guide


def test_missing_detrex_names_the_variable(monkeypatch):
    monkeypatch.delenv("DETREX_ROOT", raising=False)
    monkeypatch.setitem(sys.modules, "detrex", None)  # import detrex -> ImportError
    with pytest.raises(DetrexNotFoundError, match="DETREX_ROOT"):
        detrex_root()


def test_installed_editable_detrex_is_found(monkeypatch, tmp_path):
    tree = _fake_detrex_tree(tmp_path / "clone")
    fake = types.ModuleType("detrex")
    fake.__file__ = str(tree / "detrex" / "__init__.py")
    monkeypatch.delenv("DETREX_ROOT", raising=False)
    monkeypatch.setitem(sys.modules, "detrex", fake)
    assert detrex_root() == str(tree)


def test_plugin_root_is_this_checkout(monkeypatch):
    monkeypatch.delenv("LITE_DETR_ROOT", raising=False)
    root = plugin_root()
    # An installed (non-editable) package has no projects/ next to it: None then.
    assert root is None or os.path.samefile(root, REPO_ROOT)
    monkeypatch.setenv("LITE_DETR_ROOT", REPO_ROOT)
    assert plugin_root() == REPO_ROOT


def test_deformable_lr_factor_multiplies_the_config_factor():
    factor = DeformableLRFactor(lambda name: 0.1 if "backbone" in name else 1)
    assert factor("backbone.res2.conv1.weight") == pytest.approx(0.1)
    assert factor("transformer.encoder.layers.0.self_attn.sampling_offsets.weight") == pytest.approx(0.1)
    assert factor("transformer.reference_points.bias") == pytest.approx(0.1)
    assert factor("transformer.encoder.layers.0.self_attn.value_proj.weight") == 1
    assert DeformableLRFactor()("a.sampling_offsets.bias") == pytest.approx(0.1)


def test_add_deformable_lr_factor_is_idempotent():
    class Node(dict):
        __getattr__ = dict.__getitem__

        def __setattr__(self, key, value):
            self[key] = value

    cfg = Node(optimizer=Node(params=Node(lr_factor_func=lambda name: 0.5)))
    add_deformable_lr_factor(cfg)
    wrapped = cfg.optimizer.params.lr_factor_func
    assert isinstance(wrapped, DeformableLRFactor)
    add_deformable_lr_factor(cfg)
    assert cfg.optimizer.params.lr_factor_func is wrapped
    assert wrapped("x.sampling_offsets.weight") == pytest.approx(0.05)
    untouched = Node(optimizer=Node(params=Node(lr_factor_func=None)))
    add_deformable_lr_factor(untouched, factor=1)
    assert untouched.optimizer.params.lr_factor_func is None
