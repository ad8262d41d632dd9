"""Training-engine pieces for detectron2's trainers (detectron2 is imported inside the functions)."""
from .ddp import create_ddp_model, ddp_device_ids

__all__ = ["create_ddp_model", "ddp_device_ids"]
