"""Module helpers for tests: perturbing initial weights, gradient checks."""
from typing import List

import torch
from torch import nn

__all__ = ["perturb_parameters_", "missing_gradients"]


@torch.no_grad()
def perturb_parameters_(module: nn.Module, std: float = 0.05, seed: int = 0) -> nn.Module:
    """Adds N(0, std²) noise to every parameter, in place, and returns the module.

    Deformable attention starts with ``sampling_offsets.weight = 0`` (and MSDA with
    ``attention_weights = 0``): every query of a head then samples the same
    pattern with uniform weights, which hides mistakes in offsets, weights and
    query handling. Perturbed weights make each query sample its own locations.
    The noise is drawn in float64 on the CPU from ``seed``, so it is the same for
    every dtype and device.
    """
    generator = torch.Generator().manual_seed(seed)
    for parameter in module.parameters():
        noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * std
        parameter.add_(noise.to(device=parameter.device, dtype=parameter.dtype))
    return module


def missing_gradients(module: nn.Module) -> List[str]:
    """Names of the parameters whose ``.grad`` is None or identically zero."""
    return [
        name for name, parameter in module.named_parameters()
        if parameter.grad is None or not bool(parameter.grad.detach().ne(0).any())
    ]
