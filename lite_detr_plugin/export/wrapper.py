"""``ExportWrapper``: a detrex DETR as ``images -> (scores, labels, boxes)``.

detrex's detectors take a list of dicts and return detectron2 ``Instances``,
neither of which an exporter can trace. The wrapper runs the same modules on a
plain tensor, as the detector's own eval forward does for images that fill
the whole batch (every padding mask is False):

    normalizer -> backbone -> neck -> position embedding -> transformer
    -> the last decoder layer's class / box heads -> top-K over queries × classes

and returns the detector's own top-K (``select_box_nums_for_evaluation``) in
the pixels of ``images``, before any rescaling to an original image size
(``detector_postprocess``, which also clips and drops empty boxes, is left to
the caller). Nothing of detectron2 or detrex is imported here: the detector is
recognised by its attributes.

Supported: detrex's DINO (and this package's ``LiteDINO``), H-DETR
(``HDeformableDETR``; the one-to-one queries, as in its eval forward) and
Deformable DETR (single- or two-stage, with or without box refinement), with
their standard encoder or after ``swap_encoder``.
"""
from typing import Tuple

import torch
from torch import nn

FAMILIES = ("dino", "h_deformable_detr", "deformable_detr")
_COMMON = ("backbone", "neck", "position_embedding", "transformer", "class_embed", "bbox_embed", "normalizer")


def detector_family(model: nn.Module) -> str:
    """'dino', 'h_deformable_detr' or 'deformable_detr'; ValueError for anything else."""
    missing = [name for name in _COMMON if not hasattr(model, name)]
    if not isinstance(model, nn.Module) or missing:
        raise ValueError(
            "model must be a detrex DINO, H-DETR or Deformable DETR (a built detector with backbone, neck, "
            f"position_embedding, transformer, class_embed, bbox_embed and normalizer); got {type(model).__name__}"
            + (f" without {', '.join(missing)}" if missing and isinstance(model, nn.Module) else "")
        )
    if hasattr(model, "num_queries_one2one"):
        return "h_deformable_detr"
    if hasattr(model, "label_enc") and hasattr(model, "dn_number"):
        return "dino"
    if hasattr(model, "as_two_stage"):
        return "deformable_detr"
    raise ValueError(f"model {type(model).__name__} looks like a DETR but is not DINO, H-DETR or Deformable DETR")


def _inverse_sigmoid(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """detrex's ``inverse_sigmoid`` (same clamps), so the boxes match its heads exactly."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class ExportWrapper(nn.Module):
    """``forward(images [B, 3, H, W] float32) -> (scores [B, K], labels [B, K] int64, boxes [B, K, 4])``.

    ``images`` are pixel values before normalisation (the model's input format),
    already resized and padded to H×W; ``boxes`` are xyxy in pixels of ``images``.
    K is the detector's ``select_box_nums_for_evaluation``. The wrapped model is
    used as it is (same module objects): call ``.eval()`` on the wrapper.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.family = detector_family(model)
        self.model = model
        self.num_select = int(model.select_box_nums_for_evaluation)

    def extra_repr(self) -> str:
        return f"family={self.family!r}, num_select={self.num_select}"

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def features(self, images: torch.Tensor):
        """Normalisation, backbone, neck: the multi-level features (with their masks and position embeddings)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"ExportWrapper: images must be [B, 3, H, W], got shape {list(images.shape)}")
        x = self.model.normalizer(images.float()).to(self.dtype)
        feats = self.model.neck(self.model.backbone(x))
        masks = [x.new_zeros((x.shape[0],) + tuple(f.shape[-2:]), dtype=torch.bool) for f in feats]
        positions = [self.model.position_embedding(m).to(self.dtype) for m in masks]
        return feats, masks, positions

    def transformer(self, feats, masks, positions):
        """The detector's transformer call: (last decoder states, their reference boxes)."""
        model = self.model
        if self.family == "dino":
            states, init_reference, references, _, _ = model.transformer(
                feats, masks, positions, (None, None), attn_masks=[None, None]
            )
        elif self.family == "deformable_detr":
            query_embeds = None if model.as_two_stage else model.query_embedding.weight
            states, init_reference, references, _, _ = model.transformer(feats, masks, positions, query_embeds)
        else:
            states, init_reference, references = self._h_detr_transformer(feats, masks, positions)
        last = states.shape[0] - 1
        return states[last], last, (init_reference if last == 0 else references[last - 1])

    def _h_detr_transformer(self, feats, masks, positions):
        """H-DETR's eval path: only the one-to-one queries (its forward swaps these counts in and back)."""
        model = self.model
        saved = model.num_queries, model.transformer.two_stage_num_proposals
        model.num_queries = model.transformer.two_stage_num_proposals = model.num_queries_one2one
        try:
            query_embeds = None
            if not model.as_two_stage or model.mixed_selection:
                query_embeds = model.query_embedding.weight[: model.num_queries]
            self_attn_mask = torch.zeros(model.num_queries, model.num_queries, dtype=torch.bool, device=feats[0].device)
            states, init_reference, references, _, _ = model.transformer(
                feats, masks, positions, query_embeds, self_attn_mask
            )
        finally:
            model.num_queries, model.transformer.two_stage_num_proposals = saved
        return states, init_reference, references

    def heads(self, state, layer: int, reference) -> Tuple[torch.Tensor, torch.Tensor]:
        """The last layer's class logits ``[B, Q, C]`` and boxes (cx, cy, w, h in [0, 1]) ``[B, Q, 4]``."""
        logits = self.model.class_embed[layer](state)
        delta = self.model.bbox_embed[layer](state)
        reference = _inverse_sigmoid(reference)
        if reference.shape[-1] == 4:
            delta = delta + reference
        else:
            delta = torch.cat([delta[..., :2] + reference, delta[..., 2:]], dim=-1)
        return logits, delta.sigmoid()

    def select(self, logits, boxes, height: int, width: int):
        """The detector's ``inference``: top-K of sigmoid scores over queries × classes, boxes to xyxy pixels."""
        batch, _, num_classes = logits.shape
        scores, indexes = torch.topk(logits.float().sigmoid().flatten(1), self.num_select, dim=1)
        labels = indexes % num_classes
        queries = torch.div(indexes, num_classes, rounding_mode="floor")
        boxes = torch.gather(boxes.float(), 1, queries.unsqueeze(-1).expand(batch, self.num_select, 4))
        cx, cy, w, h = boxes.unbind(-1)
        xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
        scale = torch.tensor([width, height, width, height], dtype=xyxy.dtype, device=xyxy.device)
        return scores, labels, xyxy * scale

    def forward(self, images: torch.Tensor):
        feats, masks, positions = self.features(images)
        state, layer, reference = self.transformer(feats, masks, positions)
        logits, boxes = self.heads(state, layer, reference)
        if self.family == "h_deformable_detr":
            logits = logits[:, : self.model.num_queries_one2one]
            boxes = boxes[:, : self.model.num_queries_one2one]
        return self.select(logits, boxes, images.shape[-2], images.shape[-1])
