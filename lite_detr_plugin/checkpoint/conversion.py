"""Released Lite-DETR (Lite-DINO R50) checkpoints -> detrex Lite-DINO state dicts.

A conversion is a table of renaming rules (:data:`RULES`) from the released
names to detrex's, a few tensor transforms (class rows), and checks: every
source key must match a rule, every parameter of the target model must be
produced with its shape, and the released layout must be complete. Anything
else raises :class:`ConversionError` with the offending keys, unless the caller
explicitly asks for a partial conversion.

The pieces: :mod:`.rules` (renaming rules, class-row transforms),
:mod:`.released` (reading the checkpoint and its variant), :mod:`.layouts` (the
expected key layouts), :mod:`.report` (the conversion report).
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Tuple, Union

import torch

from ..encoders.variants import LiteVariant
from .layouts import Layout, lite_dino_layout, official_layout
from .released import extract_state_dict, infer_variant, strip_prefix
from .report import ConversionReport
from .rules import (
    CLASS_MAPS,
    COCO_UNUSED_IDS,
    RULES,
    TRANSFORM_NOTES,
    TRANSFORMS,
    ConversionError,
    TransformContext,
    match_rule,
)

_DECODER_LAYER = re.compile(r"transformer\.decoder\.layers\.(\d+)\.")


def _shape(value) -> Tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


def _tensor_entries(state_dict, allow_partial: bool) -> Tuple["OrderedDict[str, torch.Tensor]", list]:
    """The tensor entries of ``state_dict`` and the keys whose value is not a tensor.

    Raises ConversionError unless ``state_dict`` maps strings to tensors; keys with other values
    are only tolerated (and reported) with ``allow_partial``.
    """
    if not isinstance(state_dict, Mapping):
        raise ConversionError(
            f"state_dict must be a mapping of parameter names to tensors, got {type(state_dict).__name__}"
        )
    bad_keys = [k for k in state_dict if not isinstance(k, str)]
    if bad_keys:
        raise ConversionError(f"state_dict keys must be parameter names (str), got {bad_keys[:5]!r}")
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors and not allow_partial:
        shown = ", ".join(f"{k} ({type(state_dict[k]).__name__})" for k in not_tensors[:10])
        raise ConversionError(f"state_dict values must be tensors; not a tensor at key(s): {shown}")
    return OrderedDict((k, v) for k, v in state_dict.items() if isinstance(v, torch.Tensor)), not_tensors


def convert(
    state_dict: Mapping[str, torch.Tensor],
    variant: Union[str, LiteVariant, None] = "auto",
    *,
    num_high_levels: Optional[int] = None,
    name_hint: Optional[str] = None,
    target: Optional[Mapping] = None,
    target_source: Optional[str] = None,
    class_map: str = "coco80",
    allow_partial: bool = False,
) -> Tuple["OrderedDict[str, torch.Tensor]", ConversionReport]:
    """Converts a released Lite-DINO state dict to detrex Lite-DINO names.

    Args:
        state_dict: the released model state dict (``checkpoint["model"]``), with or
            without DDP's ``module.`` prefix.
        variant: ``"auto"`` or ``"H3L1-(2+1)x3"``-style; see :func:`infer_variant`.
        num_high_levels, name_hint: H for ``variant="auto"``, directly or from a
            released file name.
        target: ``{name: shape or tensor}`` of the model to load into, e.g. a built
            model's ``state_dict()``; default :func:`lite_dino_layout` of the variant.
        class_map: ``"coco80"`` (91 COCO category-id rows -> detrex's 80 classes) or ``"none"``.
        allow_partial: return what converted instead of raising on problems.

    Returns:
        ``(state_dict, report)``: the converted tensors in target order, and the report.

    Raises:
        ConversionError: listing every unmapped, missing or mis-shaped key, unless
            ``allow_partial``; then the report lists them and the state dict
            holds only the keys that converted cleanly.
    """
    if class_map not in CLASS_MAPS:
        raise ValueError(f"class_map must be one of {CLASS_MAPS}, got {class_map!r}")
    state_dict, not_tensors = _tensor_entries(state_dict, allow_partial)
    source, prefix = strip_prefix(state_dict)
    found, how = infer_variant(source, variant, num_high_levels=num_high_levels, name_hint=name_hint)
    report = ConversionReport(variant=found.name, variant_source=how, class_map=class_map, stripped_prefix=prefix)
    report.not_tensors = not_tensors

    # The released layout the checkpoint should have (class count read from the checkpoint).
    head = source.get("class_embed.0.bias")
    num_source_classes = int(head.shape[0]) if head is not None else 91
    label = source.get("label_enc.weight")
    labelbook = int(label.shape[0]) - 1 if label is not None else num_source_classes
    expected_source = official_layout(found, num_classes=num_source_classes, dn_labelbook_size=labelbook)
    report.missing_source = [k for k in expected_source if k not in source]
    report.unexpected_source_shapes = [
        (k, _shape(v), expected_source[k])
        for k, v in source.items()
        if k in expected_source and _shape(v) != tuple(expected_source[k])
    ]

    if target is None:
        num_target_classes = 80 if class_map == "coco80" else num_source_classes
        target_layout: Layout = lite_dino_layout(found, num_classes=num_target_classes)
        report.target_source = target_source or f"built-in detrex Lite-DINO R50 layout, {num_target_classes} classes"
    else:
        target_layout = OrderedDict((k, _shape(v)) for k, v in target.items())
        report.target_source = target_source or "given"

    decoder_layers = {int(m.group(1)) for m in map(_DECODER_LAYER.match, source) if m}
    lateral = [k for k, v in source.items() if re.fullmatch(r"input_proj\.\d+\.0\.weight", k) and v.dim() == 4
               and v.shape[-1] == 1]
    ctx = TransformContext(class_map, max(decoder_layers) + 1 if decoder_layers else 6, len(lateral))
    groups_ctx = {"num_decoder_layers": str(ctx.num_decoder_layers), "num_lateral": str(ctx.num_lateral)}

    produced: Dict[str, Tuple[str, torch.Tensor]] = {}
    counts: Dict[str, int] = OrderedDict((g, 0) for g in OrderedDict.fromkeys(r.group for r in RULES))
    used_transforms = set()
    for name, tensor in source.items():
        found_rule = match_rule(name)
        if found_rule is None:
            report.unmapped_source.append(name)
            continue
        rule, groups = found_rule
        try:
            value = tensor if rule.transform is None else TRANSFORMS[rule.transform](tensor, name, ctx)
        except ConversionError as exc:
            report.transform_errors.append(str(exc))
            continue
        if rule.transform is not None and class_map == "coco80":
            used_transforms.add(rule.transform)
        counts[rule.group] += 1
        for new_name in rule.targets({**groups, **groups_ctx}):
            if new_name in produced:
                report.unexpected_target.append((name, f"{new_name} (already produced from {produced[new_name][0]})"))
                continue
            produced[new_name] = (name, value)
    report.counts = dict(counts)
    report.transforms = [
        TRANSFORM_NOTES[t].format(unused=",".join(map(str, COCO_UNUSED_IDS)))
        for t in ("class_rows", "label_rows") if t in used_transforms
    ]
    if class_map == "none" and "label_enc.weight" in source:
        report.transforms.append("label_enc: the unused last row dropped (num_classes + 1 -> num_classes rows)")

    converted: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for new_name, expected in target_layout.items():
        if new_name not in produced:
            report.missing_target.append(new_name)
            continue
        source_name, value = produced[new_name]
        if _shape(value) != tuple(expected):
            report.shape_mismatches.append((new_name, source_name, _shape(value), tuple(expected)))
            continue
        converted[new_name] = value
        report.mapped.append((source_name, new_name))
    report.unexpected_target += [(src, name) for name, (src, _) in produced.items() if name not in target_layout]

    # detrex ties class_embed.i / bbox_embed.i to transformer.decoder.*: both names must agree.
    for name, value in converted.items():
        if name.startswith(("class_embed.", "bbox_embed.")):
            twin = "transformer.decoder." + name
            if twin in converted and not torch.equal(converted[twin], value):
                report.inconsistent.append((name, twin))

    if not report.ok and not allow_partial:
        raise ConversionError("refusing a partial conversion of the Lite-DETR checkpoint\n" + report.format(limit=50))
    return converted, report


def convert_file(
    path: str,
    variant: Union[str, LiteVariant, None] = "auto",
    *,
    checkpoint_key: str = "auto",
    **kwargs,
) -> Tuple["OrderedDict[str, torch.Tensor]", ConversionReport]:
    """:func:`convert` on a checkpoint file (H read from its name when possible)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    kwargs.setdefault("name_hint", path)
    return convert(extract_state_dict(checkpoint, checkpoint_key), variant, **kwargs)


def save_detectron2_checkpoint(state_dict: Mapping[str, torch.Tensor], path: str, report: ConversionReport = None,
                               source: str = "") -> None:
    """Writes ``{"model": state_dict}``, loadable as detectron2's ``train.init_checkpoint``."""
    payload = {"model": OrderedDict((k, v.detach().contiguous()) for k, v in state_dict.items())}
    if report is not None:
        payload["lite_detr_conversion"] = {
            "source": source,
            "variant": report.variant,
            "class_map": report.class_map,
            "complete": report.ok,
        }
    torch.save(payload, path)


def layout_of(state_dict: Mapping) -> "OrderedDict[str, Tuple[int, ...]]":
    """``{name: shape}`` of a state dict."""
    return OrderedDict((k, _shape(v)) for k, v in state_dict.items())
