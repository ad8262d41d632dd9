"""See where deformable attention looks (paper Fig. 5) and what a detector finds.

:class:`AttentionRecorder` (PyTorch only) records sampling locations and weights from
a model's own forward; :mod:`.attention_figure` draws Fig. 5 (matplotlib);
:mod:`.demo` and :mod:`.visualize` are the ``lite-detr-demo`` and
``lite-detr-visualize`` commands (detectron2, imported inside their functions).
"""
from .recorder import AttentionRecord, AttentionRecorder, recompute_attention

__all__ = ["AttentionRecord", "AttentionRecorder", "recompute_attention"]
