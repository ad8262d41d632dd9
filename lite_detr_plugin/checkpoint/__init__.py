"""Checkpoint conversion: the released Lite-DETR (Lite-DINO R50) weights -> detrex Lite-DINO.

``convert(state_dict, variant)`` returns the renamed state dict and a report,
and raises :class:`ConversionError` rather than converting part of a
checkpoint. Importing this package needs neither detectron2 nor detrex; only
:mod:`.detrex_target` (checks against a built model) does.
"""
from .conversion import convert, convert_file, layout_of, save_detectron2_checkpoint
from .layouts import lite_dino_layout, official_layout
from .released import encoder_blocks, extract_state_dict, infer_variant, strip_prefix, variant_from_name
from .report import ConversionReport
from .rules import CLASS_MAPS, COCO_80_IDS, RULES, ConversionError, Rule, match_rule

__all__ = [
    "CLASS_MAPS",
    "COCO_80_IDS",
    "RULES",
    "ConversionError",
    "ConversionReport",
    "Rule",
    "convert",
    "convert_file",
    "encoder_blocks",
    "extract_state_dict",
    "infer_variant",
    "layout_of",
    "lite_dino_layout",
    "match_rule",
    "official_layout",
    "save_detectron2_checkpoint",
    "strip_prefix",
    "variant_from_name",
]
