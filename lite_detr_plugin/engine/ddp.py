"""DistributedDataParallel for models on any device, CPU included.

detectron2's ``create_ddp_model`` always passes ``device_ids=[local_rank]``,
which DDP refuses for a module on the CPU ("device_ids ... must be None for CPU
modules"), so ``--num-gpus N`` with detectron2's ``launch`` (gloo on a machine
without a GPU) died there. :func:`create_ddp_model` passes ``device_ids`` only
for a module on a single CUDA device.
"""
from typing import List, Optional

import torch

__all__ = ["create_ddp_model", "ddp_device_ids"]


def ddp_device_ids(model: torch.nn.Module, local_rank: int) -> Optional[List[int]]:
    """``[local_rank]`` for a module whose parameters are all on one CUDA device, else None
    (CPU modules, and multi-device modules, must not give DDP device ids)."""
    devices = {p.device for p in model.parameters()} | {b.device for b in model.buffers()}
    if len(devices) == 1 and next(iter(devices)).type == "cuda":
        return [local_rank]
    return None


def create_ddp_model(model: torch.nn.Module, *, fp16_compression: bool = False, **kwargs):
    """detectron2's ``create_ddp_model`` (the model itself for one process; DDP with an
    optional fp16 compression hook otherwise), with ``device_ids`` chosen by
    :func:`ddp_device_ids` unless given. ``kwargs`` go to DistributedDataParallel
    (detrex configs: ``broadcast_buffers``, ``find_unused_parameters``)."""
    from detectron2.engine.defaults import create_ddp_model as detectron2_create_ddp_model
    from detectron2.utils import comm

    if comm.get_world_size() > 1 and "device_ids" not in kwargs:
        kwargs["device_ids"] = ddp_device_ids(model, comm.get_local_rank())
    return detectron2_create_ddp_model(model, fp16_compression=fp16_compression, **kwargs)
