"""Renaming rules and tensor transforms from released Lite-DETR names to detrex Lite-DINO names.

:data:`RULES` maps every released key (a full regex match) to one or more
detrex keys; :data:`TRANSFORMS` fix the class rows: the released heads have 91
rows indexed by COCO category id, detrex's COCO datasets use 80 contiguous ids,
so ``class_map="coco80"`` keeps the rows of the 80 COCO categories, in
category-id order, in every ``class_embed`` and in ``label_enc`` (whose 92nd
row, unused by the released denoising, is dropped too). ``class_map="none"``
keeps the class rows as they are.
"""
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch

# The 80 COCO category ids (1..90 minus the 10 ids the 2017 annotations never use),
# in the order detectron2 maps them to contiguous ids 0..79.
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO_80_IDS = tuple(i for i in range(1, 91) if i not in COCO_UNUSED_IDS)
CLASS_MAPS = ("coco80", "none")

class ConversionError(ValueError):
    """The checkpoint cannot be converted completely; the message lists the keys."""


@dataclass(frozen=True)
class Rule:
    """``pattern`` (full match on a released name) -> one or more detrex names.

    ``target`` is a format string over the match's named groups and the
    conversion context (``num_decoder_layers``, ``num_lateral``), or a callable
    ``(groups) -> name``; a tuple gives several targets (the released model
    shares a module that detrex keeps twice). ``transform`` names a tensor
    transform of :data:`TRANSFORMS`.
    """

    group: str
    pattern: str
    target: Union[str, Callable, Tuple]
    transform: Optional[str] = None

    def targets(self, groups: Dict[str, str]) -> List[str]:
        targets = self.target if isinstance(self.target, tuple) else (self.target,)
        return [t(groups) if callable(t) else t.format(**groups) for t in targets]


def _res_stage(groups):
    return f"backbone.res{int(groups['layer']) + 1}.{groups['block']}"


def _neck(part):
    def target(groups):
        index, lateral = int(groups["i"]), int(groups["num_lateral"])
        if index < lateral:
            return f"neck.convs.{index}.{part}.{groups['p']}"
        return f"neck.extra_convs.{index - lateral}.{part}.{groups['p']}"
    return target


_P = r"(?P<p>weight|bias)"
_BN = r"(?P<p>weight|bias|running_mean|running_var)"
_BODY = r"backbone\.0\.body\."
_LAYER = _BODY + r"layer(?P<layer>[1-4])\.(?P<block>\d+)\."
_ENC = r"transformer\.encoder\.layers\.(?P<i>\d+)\."
_DEC = r"transformer\.decoder\.layers\.(?P<i>\d+)\."
_ATTN = r"(?P<m>sampling_offsets|value_proj|query_proj|output_proj)\." + _P

RULES: Tuple[Rule, ...] = (
    # ResNet-50: torchvision names -> detectron2 names.
    Rule("backbone", _BODY + r"conv1\.weight", "backbone.stem.conv1.weight"),
    Rule("backbone", _BODY + r"bn1\." + _BN, "backbone.stem.conv1.norm.{p}"),
    Rule("backbone", _LAYER + r"conv(?P<k>[123])\.weight", lambda g: f"{_res_stage(g)}.conv{g['k']}.weight"),
    Rule("backbone", _LAYER + r"bn(?P<k>[123])\." + _BN, lambda g: f"{_res_stage(g)}.conv{g['k']}.norm.{g['p']}"),
    Rule("backbone", _LAYER + r"downsample\.0\.weight", lambda g: f"{_res_stage(g)}.shortcut.weight"),
    Rule("backbone", _LAYER + r"downsample\.1\." + _BN, lambda g: f"{_res_stage(g)}.shortcut.norm.{g['p']}"),
    # input_proj (conv + GroupNorm per level) -> ChannelMapper.
    Rule("neck", r"input_proj\.(?P<i>\d+)\.0\." + _P, _neck("conv")),
    Rule("neck", r"input_proj\.(?P<i>\d+)\.1\." + _P, _neck("norm")),
    # Encoder -> LiteEncoder (released low-level semantics).
    Rule("encoder", r"transformer\.level_embed", "transformer.level_embeds"),
    Rule("encoder", _ENC + r"self_attn\." + _ATTN, "transformer.encoder.layers.{i}.self_attn.{m}.{p}"),
    Rule("encoder", _ENC + r"(?P<n>norm1|norm2)\." + _P, "transformer.encoder.layers.{i}.{n}.{p}"),
    Rule("encoder", _ENC + r"linear1\." + _P, "transformer.encoder.layers.{i}.ffn.fc1.{p}"),
    Rule("encoder", _ENC + r"linear2\." + _P, "transformer.encoder.layers.{i}.ffn.fc2.{p}"),
    Rule("encoder", _ENC + r"linear12\." + _P, "transformer.encoder.layers.{i}.light_ffn.fc1.{p}"),
    Rule("encoder", _ENC + r"linear22\." + _P, "transformer.encoder.layers.{i}.light_ffn.fc2.{p}"),
    Rule("encoder", _ENC + r"norm22\." + _P, "transformer.encoder.layers.{i}.light_norm.{p}"),
    # Decoder: the released layer runs self-attn (norm2), cross-attn (norm1), FFN (norm3);
    # detrex's runs self_attn, norm, cross_attn, norm, ffn, norm.
    Rule("decoder", _DEC + r"self_attn\.(?P<q>in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)",
         "transformer.decoder.layers.{i}.attentions.0.attn.{q}"),
    Rule("decoder", _DEC + r"cross_attn\." + _ATTN, "transformer.decoder.layers.{i}.attentions.1.{m}.{p}"),
    Rule("decoder", _DEC + r"norm2\." + _P, "transformer.decoder.layers.{i}.norms.0.{p}"),
    Rule("decoder", _DEC + r"norm1\." + _P, "transformer.decoder.layers.{i}.norms.1.{p}"),
    Rule("decoder", _DEC + r"norm3\." + _P, "transformer.decoder.layers.{i}.norms.2.{p}"),
    Rule("decoder", _DEC + r"linear1\." + _P, "transformer.decoder.layers.{i}.ffns.0.layers.0.0.{p}"),
    Rule("decoder", _DEC + r"linear2\." + _P, "transformer.decoder.layers.{i}.ffns.0.layers.1.{p}"),
    Rule("decoder", r"transformer\.decoder\.norm\." + _P, "transformer.decoder.norm.{p}"),
    Rule("decoder", r"transformer\.decoder\.ref_point_head\.layers\.(?P<j>\d+)\." + _P,
         "transformer.decoder.ref_point_head.layers.{j}.{p}"),
    # Queries and two-stage proposal generation.
    Rule("queries", r"transformer\.tgt_embed\.weight", "transformer.tgt_embed.weight"),
    Rule("queries", r"transformer\.(?P<n>enc_output|enc_output_norm)\." + _P, "transformer.{n}.{p}"),
    Rule("queries", r"label_enc\.weight", "label_enc.weight", "label_rows"),
    # Heads: one per decoder layer (registered twice, at the top and in the decoder),
    # and the two-stage heads, which detrex keeps as head number num_decoder_layers.
    Rule("heads", r"(?P<d>(?:transformer\.decoder\.)?)class_embed\.(?P<i>\d+)\." + _P, "{d}class_embed.{i}.{p}",
         "class_rows"),
    Rule("heads", r"(?P<d>(?:transformer\.decoder\.)?)bbox_embed\.(?P<i>\d+)\.layers\.(?P<j>\d+)\." + _P,
         "{d}bbox_embed.{i}.layers.{j}.{p}"),
    Rule("heads", r"transformer\.enc_out_class_embed\." + _P,
         ("class_embed.{num_decoder_layers}.{p}", "transformer.decoder.class_embed.{num_decoder_layers}.{p}"),
         "class_rows"),
    Rule("heads", r"transformer\.enc_out_bbox_embed\.layers\.(?P<j>\d+)\." + _P,
         ("bbox_embed.{num_decoder_layers}.layers.{j}.{p}",
          "transformer.decoder.bbox_embed.{num_decoder_layers}.layers.{j}.{p}")),
)
_COMPILED = tuple((re.compile(rule.pattern), rule) for rule in RULES)


def match_rule(name: str) -> Optional[Tuple[Rule, Dict[str, str]]]:
    """The rule that maps a released name, with its groups, or None."""
    for pattern, rule in _COMPILED:
        match = pattern.fullmatch(name)
        if match is not None:
            return rule, {k: v for k, v in match.groupdict().items() if v is not None}
    return None


# -- tensor transforms

def _class_rows(tensor: torch.Tensor, name: str, ctx: "TransformContext") -> torch.Tensor:
    if ctx.class_map == "none":
        return tensor
    if tensor.shape[0] != 91:
        raise ConversionError(
            f"{name}: class_map='coco80' expects 91 rows (COCO category ids 0..90), got shape {list(tensor.shape)}; "
            f"use class_map='none' for a checkpoint with another class set"
        )
    return tensor[list(COCO_80_IDS)].clone()


def _label_rows(tensor: torch.Tensor, name: str, ctx: "TransformContext") -> torch.Tensor:
    # The released label book has num_classes + 1 rows; its denoising draws labels
    # in [0, num_classes), so the last row is never looked up. detrex's has num_classes.
    if ctx.class_map == "none":
        return tensor[: tensor.shape[0] - 1].clone()
    if tensor.shape[0] != 92:
        raise ConversionError(
            f"{name}: class_map='coco80' expects 92 rows (91 COCO category ids + 1), got shape {list(tensor.shape)}"
        )
    return tensor[list(COCO_80_IDS)].clone()


TRANSFORMS: Dict[str, Callable] = {"class_rows": _class_rows, "label_rows": _label_rows}
TRANSFORM_NOTES = {
    "class_rows": "class head rows: 91 (COCO category ids) -> 80 (ids 1..90 without {unused}, in id order)",
    "label_rows": "label_enc rows: 92 -> 80 (the 80 COCO category ids; the unused last row dropped)",
}


@dataclass
class TransformContext:
    class_map: str
    num_decoder_layers: int
    num_lateral: int
