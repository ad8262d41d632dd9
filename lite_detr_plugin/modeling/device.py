"""Run code that hard-codes CUDA on the device a model actually lives on.

detrex's DINO builds its denoising queries and its denoising losses with
``.cuda()`` and ``.to("cuda")`` written into the code, so it cannot train on a
CPU as shipped. :func:`redirect_cuda` runs such code unchanged while sending
those calls to another device. Inside the block, in the calling thread only:

* ``tensor.cuda(...)`` becomes ``tensor.to(device)``;
* ``tensor.to(x, ...)`` / ``tensor.to(device=x, ...)`` becomes ``tensor.to(device, ...)``
  when ``x`` names a CUDA device: ``"cuda"``, ``"cuda:1"``, ``torch.device("cuda")``
  or an integer index.

Every other call (dtype conversions, ``.to(other_tensor)``, CPU targets) is left
alone. When ``device`` is itself a CUDA device the block changes nothing. The
patch is installed on ``torch.Tensor`` while at least one thread is inside a
block and removed when the last one leaves; other threads are passed through.
"""
import contextlib
import threading
from typing import Iterator, Union

import torch

__all__ = ["redirect_cuda", "is_redirecting"]

_ORIGINAL_CUDA = torch.Tensor.cuda
_ORIGINAL_TO = torch.Tensor.to

_state = threading.local()
_lock = threading.Lock()
_active_blocks = 0


def _target() -> Union[torch.device, None]:
    stack = getattr(_state, "stack", None)
    return stack[-1] if stack else None


def is_redirecting() -> bool:
    """True inside a :func:`redirect_cuda` block (of this thread) that redirects."""
    return _target() is not None


def _names_cuda(device) -> bool:
    if isinstance(device, bool):
        return False
    if isinstance(device, int):
        return True  # an index means a CUDA device, as in tensor.to(0)
    if isinstance(device, str):
        return device.strip().lower().startswith("cuda")
    if isinstance(device, torch.device):
        return device.type == "cuda"
    return False


def _redirected_cuda(self, device=None, non_blocking=False, memory_format=torch.preserve_format):
    target = _target()
    if target is None:
        return _ORIGINAL_CUDA(self, device=device, non_blocking=non_blocking, memory_format=memory_format)
    return _ORIGINAL_TO(self, target, non_blocking=non_blocking, memory_format=memory_format)


def _redirected_to(self, *args, **kwargs):
    target = _target()
    if target is not None:
        if args and _names_cuda(args[0]):
            args = (target,) + tuple(args[1:])
        elif "device" in kwargs and _names_cuda(kwargs["device"]):
            kwargs = dict(kwargs, device=target)
    return _ORIGINAL_TO(self, *args, **kwargs)


def _install() -> None:
    global _active_blocks
    with _lock:
        if _active_blocks == 0:
            torch.Tensor.cuda = _redirected_cuda
            torch.Tensor.to = _redirected_to
        _active_blocks += 1


def _uninstall() -> None:
    global _active_blocks
    with _lock:
        _active_blocks -= 1
        if _active_blocks == 0:
            torch.Tensor.cuda = _ORIGINAL_CUDA
            torch.Tensor.to = _ORIGINAL_TO


@contextlib.contextmanager
def redirect_cuda(device: Union[str, torch.device, None]) -> Iterator[None]:
    """Within the block, ``.cuda()`` / ``.to("cuda")`` go to ``device`` instead.

    A no-op when ``device`` is a CUDA device (or None): code written for CUDA
    then runs exactly as written.
    """
    device = None if device is None else torch.device(device)
    if device is None or device.type == "cuda":
        yield
        return
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(device)
    _install()
    try:
        yield
    finally:
        stack.pop()
        _uninstall()
