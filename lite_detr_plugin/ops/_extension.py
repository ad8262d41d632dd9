"""Loading of the compiled op library, with a PyTorch fallback.

The library ``lite_detr_plugin/_C<suffix>.so`` (built by setup.py) is a plain
shared object, loaded with ``torch.ops.load_library``; loading it registers the
``torch.ops.lite_detr`` operators. When it is missing or fails to load, the
package still imports and the ops run their PyTorch reference; the reason is
reported once, on first use. Nothing here imports ``torch._dynamo``: importing
the package stays cheap (``tools/import_time.py``).
"""
import importlib.machinery
import os
import warnings

import torch

_OPS = ("kda_forward", "_kda_backward", "msda_forward", "_msda_backward")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _library_path(package_dir: str = _PACKAGE_DIR) -> str:
    """The built library ``_C`` next to the package's ``__init__.py``, as torchvision's
    ``_get_extension_path`` finds it; ImportError when there is none."""
    loader = (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
    spec = importlib.machinery.FileFinder(package_dir, loader).find_spec("_C")
    if spec is None or spec.origin is None:
        raise ImportError(
            f"the compiled library lite_detr_plugin._C was not found in {package_dir} "
            f"(looked for _C{{{','.join(importlib.machinery.EXTENSION_SUFFIXES)}}})"
        )
    return spec.origin


def _load():
    try:
        torch.ops.load_library(_library_path())
    except (ImportError, OSError, RuntimeError) as exc:
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
    # Warned in eager calls only: a warning inside a torch.compile trace would be a graph
    # break, and torch.compiler.disable would import torch._dynamo with the package.
    if not torch.compiler.is_compiling():
        _warn_fallback(device.type)
    return False


def build_details() -> dict:
    """What setup.py built (``_build.json``, written beside the library): devices, cuda_version,
    nvcc_version, cuda_archs, cpu_isas, torch_version, and why CUDA was left out
    (cuda_reason). Empty when the record is missing (a library built by other means)."""
    import json

    path = os.path.join(_PACKAGE_DIR, "_build.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def build_info() -> str:
    """The devices of a loaded library ('cpu' or 'cpu;cuda'), then ';key=value' fields of
    :func:`build_details` (cuda_version, cuda_archs, cpu_isas, torch): e.g.
    'cpu;cuda;cuda_version=13.0;cuda_archs=9.0+PTX;cpu_isas=base,avx2,avx512;torch=2.11.0+cu130'.
    Else why it did not load."""
    if _LOAD_ERROR is not None:
        return f"not loaded ({_LOAD_ERROR})"
    info = torch.ops.lite_detr.build_info()
    details = build_details()
    fields = [
        ("cuda_version", details.get("cuda_version")),
        ("cuda_archs", ",".join(details.get("cuda_archs") or [])),
        ("cpu_isas", ",".join(details.get("cpu_isas") or [])),
        ("torch", details.get("torch_version")),
        ("no_cuda_because", None if details.get("cuda_version") else details.get("cuda_reason")),
    ]
    return ";".join([info] + [f"{key}={value}" for key, value in fields if value])


def cpu_capability() -> str:
    """The instruction set of the CPU kernels in use ('base', 'avx2', 'avx512'), or '' when not loaded.

    The widest the processor supports; the environment variable LITE_DETR_CPU_ISA
    (read once, at the first call) can ask for a narrower one.
    """
    return torch.ops.lite_detr.cpu_capability() if _LOAD_ERROR is None else ""
