"""detrex's own deformable attention, made exportable: swapped for this package's module.

detrex's ``MultiScaleDeformableAttention`` calls a pybind CUDA function (or, on a
CPU, a Python loop over levels) that the ONNX exporter cannot see as one op.
:func:`swap_detrex_attention` replaces every such module by this package's
:class:`~lite_detr_plugin.layers.MultiScaleDeformableAttention`, built with the
same sizes and holding the same weights (the parameter names are the same), so
it computes the same function through ``lite_detr::msda_forward``, which the
export translates. A plain detrex DINO therefore exports too.
"""
from torch import nn

from ..layers.deformable_attention import MultiScaleDeformableAttention
from ..layers.factory import build_attention_like


def is_detrex_msda(module: nn.Module) -> bool:
    """True for ``detrex.layers.MultiScaleDeformableAttention`` (recognised without importing detrex)."""
    cls = type(module)
    return cls.__name__ == "MultiScaleDeformableAttention" and cls.__module__.startswith("detrex.")


def lite_msda_from_detrex(module: nn.Module) -> MultiScaleDeformableAttention:
    """This package's MSDA with the sizes, dropout, layout and weights of detrex's ``module``."""
    ours = build_attention_like(MultiScaleDeformableAttention, module, value_placement="tokens")  # detrex's order
    ours.load_state_dict(module.state_dict(), strict=True)
    ours.train(module.training)
    return ours


def swap_detrex_attention(model: nn.Module) -> int:
    """Replaces, in place, every detrex MSDA module inside ``model``; returns how many."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_detrex_msda(child):
                setattr(parent, name, lite_msda_from_detrex(child))
                swapped += 1
    return swapped
