"""Loading of the compiled op library, with a PyTorch fallback.

``lite_detr_plugin._C`` registers the ``torch.ops.lite_detr`` operators. When it
is missing or fails to load, the package still imports and the ops run their
PyTorch reference; the reason is reported once, on first use.
"""
import warnings

import torch

_OPS = ("kda_forward", "kda_backward", "msda_forward", "msda_backward")


def _load():
    try:
        from lite_detr_plugin import _C  # noqa: F401  (registers torch.ops.lite_detr)
    except (ImportError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _kernel_devices():
    if _LOAD_ERROR is not None:
        return frozenset()
    return frozenset(
        device
        for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))
        if all(torch._C._dispatch_has_kernel_for_dispatch_key(f"lite_detr::{op}", key) for op in _OPS)
    )


# Resolved once at import, so that torch.compile traces plain constants.
_LOAD_ERROR = _load()
_KERNEL_DEVICES = _kernel_devices()
_WARNED = set()


def load_error():
    """Why the compiled library is unavailable, or None when it loaded."""
    return _LOAD_ERROR


def is_loaded() -> bool:
    return _LOAD_ERROR is None


def has_kernel(device_type: str) -> bool:
    """Whether the compiled ops have a kernel for ``device_type`` ('cpu', 'cuda')."""
    return device_type in _KERNEL_DEVICES


@torch.compiler.disable
def _warn_fallback(device_type: str) -> None:
    if device_type in _WARNED:
        return
    _WARNED.add(device_type)
    reason = _LOAD_ERROR or f"it was built without {device_type.upper()} kernels"
    warnings.warn(
        f"lite_detr_plugin: the compiled KDA/MSDA op is unavailable for {device_type} tensors "
        f"({reason}); using the slower PyTorch reference. Reinstall with "
        "`pip install --no-build-isolation .` to build it.",
        RuntimeWarning,
        stacklevel=4,
    )


def use_compiled(device: torch.device) -> bool:
    """True when the compiled op serves ``device``; warns once per device type otherwise."""
    if device.type in _KERNEL_DEVICES:
        return True
    _warn_fallback(device.type)
    return False


def build_info() -> str:
    """'cpu' or 'cpu;cuda' for a loaded library, else why it did not load."""
    if _LOAD_ERROR is not None:
        return f"not loaded ({_LOAD_ERROR})"
    return torch.ops.lite_detr.build_info()


def cpu_capability() -> str:
    """The instruction set of the CPU kernels in use ('base', 'avx2', 'avx512'), or '' when not loaded.

    The widest the processor supports; the environment variable LITE_DETR_CPU_ISA
    (read once, at the first call) can ask for a narrower one.
    """
    return torch.ops.lite_detr.cpu_capability() if _LOAD_ERROR is None else ""
