"""A stand-in for ``detrex`` / ``detrex.layers`` in ``sys.modules``, for tests without detrex.

The fake ``MultiScaleDeformableAttention`` follows detrex's (v0.3.0) constructor,
parameter names and ``init_weights``; it counts its constructions so a test can
check that code meant to *inherit* from it never runs its constructor.
:func:`detrex_transformer_init` is the re-initialisation loop of detrex's DINO,
H-DETR and Deformable DETR transformers (``init_weights``).
"""
import math
import sys
import types
from typing import Optional

import torch
from torch import nn

__all__ = ["FakeDetrexMSDA", "install_fake_detrex", "hide_detrex", "detrex_transformer_init"]


class FakeDetrexMSDA(nn.Module):
    """detrex's ``MultiScaleDeformableAttention`` constructor and init (no forward)."""

    constructed = 0

    def __init__(self, embed_dim=256, num_heads=8, num_levels=4, num_points=4, img2col_step=64, dropout=0.1,
                 batch_first=False):
        super().__init__()
        type(self).constructed += 1
        self.dropout = nn.Dropout(dropout)
        self.batch_first = batch_first
        self.im2col_step = img2col_step
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.init_weights()

    def init_weights(self):
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.num_heads, 1, 1, 2)
        grid = grid.repeat(1, self.num_levels, self.num_points, 1)
        for i in range(self.num_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, *args, **kwargs):
        raise AssertionError("the fake detrex MultiScaleDeformableAttention has no forward")


def install_fake_detrex(monkeypatch, attention_class: Optional[type] = None) -> type:
    """Puts fake ``detrex`` and ``detrex.layers`` modules in ``sys.modules`` (undone by
    ``monkeypatch``) and returns their ``MultiScaleDeformableAttention`` class: a fresh
    subclass of :class:`FakeDetrexMSDA` unless ``attention_class`` is given."""
    if attention_class is None:
        attention_class = type("MultiScaleDeformableAttention", (FakeDetrexMSDA,), {"constructed": 0})
    detrex = types.ModuleType("detrex")
    layers = types.ModuleType("detrex.layers")
    layers.MultiScaleDeformableAttention = attention_class
    detrex.layers = layers
    detrex.__path__ = []  # a package, so `from detrex.layers import ...` resolves through sys.modules
    monkeypatch.setitem(sys.modules, "detrex", detrex)
    monkeypatch.setitem(sys.modules, "detrex.layers", layers)
    return attention_class


def hide_detrex(monkeypatch) -> None:
    """Makes ``detrex`` look un-imported (``"detrex" not in sys.modules``) until
    ``monkeypatch`` is undone, so that a test behaves the same with or without detrex
    installed and imported by earlier tests."""
    for name in [n for n in sys.modules if n == "detrex" or n.startswith("detrex.")]:
        monkeypatch.delitem(sys.modules, name)


def detrex_transformer_init(module: nn.Module, attention_class: type) -> None:
    """``DINOTransformer.init_weights`` (same in H-DETR and Deformable DETR): xavier on
    every >1-D parameter, then ``init_weights()`` on every detrex MSDA instance."""
    for parameter in module.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter)
    for child in module.modules():
        if isinstance(child, attention_class):
            child.init_weights()
