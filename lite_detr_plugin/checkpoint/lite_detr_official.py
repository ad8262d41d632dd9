"""Released Lite-DETR (Lite-DINO R50) checkpoints -> detrex Lite-DINO state dicts.

A conversion is a table of renaming rules (:data:`RULES`) from the released
names to detrex's, a few tensor transforms (class rows), and checks: every
source key must match a rule, every parameter of the target model must be
produced with its shape, and the released layout must be complete. Anything
else raises :class:`ConversionError` with the offending keys, unless the caller
explicitly asks for a partial conversion.

The layout: see :mod:`lite_detr_plugin.checkpoint.layouts`. Classes: the
released heads have 91 rows indexed by COCO category id; detrex's COCO
datasets use 80 contiguous ids, so by default (``class_map="coco80"``) the rows
of the 80 COCO categories are kept, in category-id order, in every ``class_embed``
and in ``label_enc`` (whose 92nd row, unused by the released denoising, is
dropped too). ``class_map="none"`` keeps the class rows as they are.
"""
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch

from ..encoders.variants import LiteVariant, make_variant, parse_variant
from .layouts import Layout, lite_dino_layout, official_layout

# The 80 COCO category ids (1..90 minus the 10 ids the 2017 annotations never use),
# in the order detectron2 maps them to contiguous ids 0..79.
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO_80_IDS = tuple(i for i in range(1, 91) if i not in COCO_UNUSED_IDS)
CLASS_MAPS = ("coco80", "none")

# ``r50_s3ex3_50.4.pth``: s = enc_scale (H, the high-level scales), ex = num_expansion (B).
_NAME_HINT = re.compile(r"(?:^|[^a-z0-9])s(\d+)ex(\d+)(?:[^a-z0-9]|$)", re.IGNORECASE)
_ENCODER_LAYER = re.compile(r"transformer\.encoder\.layers\.(\d+)\.(.+)")
_DECODER_LAYER = re.compile(r"transformer\.decoder\.layers\.(\d+)\.")


class ConversionError(ValueError):
    """The checkpoint cannot be converted completely; the message lists the keys."""


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------

def _class_rows(tensor: torch.Tensor, name: str, ctx: "_Context") -> torch.Tensor:
    if ctx.class_map == "none":
        return tensor
    if tensor.shape[0] != 91:
        raise ConversionError(
            f"{name}: class_map='coco80' expects 91 rows (COCO category ids 0..90), got shape {list(tensor.shape)}; "
            f"use class_map='none' for a checkpoint with another class set"
        )
    return tensor[list(COCO_80_IDS)].clone()


def _label_rows(tensor: torch.Tensor, name: str, ctx: "_Context") -> torch.Tensor:
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
class _Context:
    class_map: str
    num_decoder_layers: int
    num_lateral: int


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

@dataclass
class ConversionReport:
    """What a conversion did and what it could not do.

    Attributes:
        variant: the encoder variant (``"H3L1-(2+1)x3"``-style).
        variant_source: how the variant was found.
        mapped: ``(source, target)`` pairs, in target order.
        counts: mapped source keys per group (backbone, neck, encoder, decoder, queries, heads).
        transforms: notes on the tensor transforms applied.
        stripped_prefix: a prefix removed from every key (``"module."`` from DDP), or "".
        unmapped_source: source keys no rule maps.
        missing_source: keys of the released layout absent from the checkpoint.
        unexpected_source_shapes: ``(key, shape, expected)`` against the released layout.
        missing_target: parameters of the target model not produced.
        unexpected_target: produced names the target model does not have.
        shape_mismatches: ``(target, source, shape, expected)``.
        transform_errors: source tensors a transform refused (e.g. not 91 class rows).
        inconsistent: ``(target_a, target_b)`` that must hold equal tensors (tied modules) but do not.
        notes: anything else worth telling.
    """

    variant: str = ""
    variant_source: str = ""
    class_map: str = "coco80"
    target_source: str = ""
    mapped: List[Tuple[str, str]] = field(default_factory=list)
    counts: Dict[str, int] = field(default_factory=dict)
    transforms: List[str] = field(default_factory=list)
    stripped_prefix: str = ""
    unmapped_source: List[str] = field(default_factory=list)
    missing_source: List[str] = field(default_factory=list)
    unexpected_source_shapes: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    missing_target: List[str] = field(default_factory=list)
    unexpected_target: List[Tuple[str, str]] = field(default_factory=list)
    shape_mismatches: List[Tuple[str, str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    transform_errors: List[str] = field(default_factory=list)
    inconsistent: List[Tuple[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def problems(self) -> Dict[str, list]:
        found = {
            "source keys no rule maps (unmapped)": self.unmapped_source,
            "released-layout keys missing from the checkpoint": self.missing_source,
            "source keys whose shape differs from the released layout": self.unexpected_source_shapes,
            "target keys not produced (missing)": self.missing_target,
            "produced keys the target model does not have (source -> target)": self.unexpected_target,
            "shape mismatches (target <- source: got, expected)": self.shape_mismatches,
            "source tensors a transform refused": self.transform_errors,
            "tied target tensors that differ": self.inconsistent,
        }
        return {title: items for title, items in found.items() if items}

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [f"variant {self.variant} ({self.variant_source}); class_map={self.class_map}; "
                 f"target layout: {self.target_source}"]
        if self.stripped_prefix:
            lines.append(f"stripped prefix {self.stripped_prefix!r} from every key")
        counts = ", ".join(f"{group} {n}" for group, n in self.counts.items())
        lines.append(f"mapped {sum(self.counts.values())} source keys -> {len(self.mapped)} target keys ({counts})")
        lines += [f"transform: {note}" for note in self.transforms]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def format(self, limit: Optional[int] = None) -> str:
        """The summary and every problem, one key per line (``limit`` per section if given)."""
        lines = [self.summary()]
        for title, items in self.problems.items():
            lines.append(f"{len(items)} {title}:")
            shown = items if limit is None else items[:limit]
            for item in shown:
                lines.append("  " + _format_item(item))
            if len(shown) < len(items):
                lines.append(f"  ... and {len(items) - len(shown)} more")
        return "\n".join(lines)


def _format_item(item) -> str:
    if isinstance(item, str):
        return item
    if len(item) == 4:
        target, source, got, expected = item
        return f"{target} <- {source}: {list(got)}, expected {list(expected)}"
    if len(item) == 3:
        key, got, expected = item
        return f"{key}: {list(got)}, expected {list(expected)}"
    return " vs ".join(map(str, item)) if all(isinstance(i, str) for i in item) else str(item)


# ---------------------------------------------------------------------------
# Checkpoint loading and variant inference
# ---------------------------------------------------------------------------

def extract_state_dict(checkpoint: Mapping, key: str = "auto") -> Mapping[str, torch.Tensor]:
    """The model state dict inside a loaded checkpoint.

    ``key="auto"`` takes ``checkpoint["model"]`` (what Lite-DETR's ``main.py`` saves),
    else ``checkpoint["state_dict"]``, else the mapping itself if it holds tensors.
    ``key="ema_model"`` picks the EMA weights when the checkpoint has them.
    """
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f"a checkpoint must be a dict, got {type(checkpoint).__name__}")
    if key != "auto":
        if key not in checkpoint:
            raise ConversionError(f"the checkpoint has no {key!r} entry; it has {sorted(checkpoint)}")
        return checkpoint[key]
    for candidate in ("model", "state_dict"):
        if candidate in checkpoint and isinstance(checkpoint[candidate], Mapping):
            return checkpoint[candidate]
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    raise ConversionError(
        f"cannot find the model state dict in the checkpoint (entries: {sorted(checkpoint)}); pass the entry name"
    )


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> Tuple[Dict, str]:
    """Removes a DDP-style prefix when every key has it."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()), prefix
    return OrderedDict(state_dict), ""


def encoder_blocks(state_dict: Mapping[str, torch.Tensor]) -> Tuple[int, int]:
    """``(A, B)`` from the checkpoint: its encoder layer count and which layers have ``linear12``.

    The released encoder has B blocks of A layers plus one layer with the light
    FFN, so the light layers must be exactly every (A+1)-th.
    """
    layers, light = set(), set()
    for name in state_dict:
        match = _ENCODER_LAYER.fullmatch(name)
        if match is not None:
            index = int(match.group(1))
            layers.add(index)
            if match.group(2).split(".")[0] in ("linear12", "linear22", "norm22"):
                light.add(index)
    if not layers:
        raise ConversionError("the checkpoint has no transformer.encoder.layers.* keys: not a Lite-DETR DINO model")
    num_layers = max(layers) + 1
    if layers != set(range(num_layers)):
        raise ConversionError(f"encoder layer indices are not contiguous: {sorted(layers)}")
    if not light:
        raise ConversionError(
            "no encoder layer has linear12/linear22/norm22: the checkpoint was trained without small_expand, "
            "which the released Lite encoder layout requires"
        )
    light = sorted(light)
    per_block = light[0] + 1
    expected = list(range(per_block - 1, num_layers, per_block))
    if per_block < 2 or light != expected or num_layers % per_block:
        raise ConversionError(
            f"the light FFN (linear12) sits in encoder layers {light} of {num_layers}: not an interleaved "
            f"(A+1)xB layout, which puts it in every (A+1)-th layer"
        )
    return per_block - 1, num_layers // per_block


def variant_from_name(name: str) -> Optional[Tuple[int, int]]:
    """``(H, B)`` from a released file name such as ``r50_s3ex3_50.4.pth``, or None."""
    match = _NAME_HINT.search(str(name).rsplit("/", 1)[-1])
    return (int(match.group(1)), int(match.group(2))) if match else None


def infer_variant(
    state_dict: Mapping[str, torch.Tensor],
    variant: Union[str, LiteVariant, None] = "auto",
    num_high_levels: Optional[int] = None,
    name_hint: Optional[str] = None,
) -> Tuple[LiteVariant, str]:
    """The checkpoint's encoder variant, and how it was determined.

    A and B come from the weights. H (how many of the lowest-resolution levels
    are high-level) leaves no trace in the weights: it comes from ``variant``,
    ``num_high_levels``, or a released file name (``s<H>ex<B>``). A given
    ``variant`` must agree with the weights.
    """
    state_dict, _ = strip_prefix(state_dict)
    num_high_updates, num_blocks = encoder_blocks(state_dict)
    level_embed = state_dict.get("transformer.level_embed")
    num_levels = int(level_embed.shape[0]) if level_embed is not None else 4
    if variant not in (None, "auto"):
        given = variant if isinstance(variant, LiteVariant) else parse_variant(variant)
        if (given.num_high_updates, given.num_blocks) != (num_high_updates, num_blocks):
            raise ConversionError(
                f"variant {given.name} has {given.num_layers} encoder layers in {given.num_blocks} blocks of "
                f"({given.num_high_updates}+1), but the checkpoint has {(num_high_updates + 1) * num_blocks} layers "
                f"in blocks of ({num_high_updates}+1)x{num_blocks}"
            )
        if given.num_levels != num_levels:
            raise ConversionError(f"variant {given.name} has {given.num_levels} levels, the checkpoint {num_levels}")
        if num_high_levels is not None and num_high_levels != given.num_high_levels:
            raise ConversionError(f"num_high_levels={num_high_levels} contradicts variant {given.name}")
        return given, "given"
    source = "num_high_levels"
    if num_high_levels is None and name_hint is not None:
        hint = variant_from_name(name_hint)
        if hint is not None:
            num_high_levels, hinted_blocks = hint
            source = f"file name s{hint[0]}ex{hint[1]}"
            if hinted_blocks != num_blocks:
                raise ConversionError(
                    f"the file name says num_expansion={hinted_blocks} but the weights have {num_blocks} blocks"
                )
    if num_high_levels is None:
        raise ConversionError(
            f"the weights give blocks ({num_high_updates}+1)x{num_blocks} but not H (enc_scale, the number of "
            f"high-level scales), which leaves no trace in the weights: pass a variant such as "
            f"'H3L1-({num_high_updates}+1)x{num_blocks}' or num_high_levels"
        )
    if not 1 <= num_high_levels < num_levels:
        raise ConversionError(f"H={num_high_levels} must be between 1 and {num_levels - 1}")
    found = make_variant(num_high_levels, num_levels - num_high_levels, num_high_updates, num_blocks)
    return found, f"A, B from the weights, H from {source}"


# ---------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------

def _shape(value) -> Tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


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
    source, prefix = strip_prefix(state_dict)
    found, how = infer_variant(source, variant, num_high_levels=num_high_levels, name_hint=name_hint)
    report = ConversionReport(variant=found.name, variant_source=how, class_map=class_map, stripped_prefix=prefix)

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
    ctx = _Context(class_map, max(decoder_layers) + 1 if decoder_layers else 6, len(lateral))
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
