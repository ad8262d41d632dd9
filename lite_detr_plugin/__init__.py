"""Lite DETR for detectron2/detrex: interleaved encoder and key-aware deformable attention."""
from . import ops

__version__ = "0.1.0"
