"""The report of a checkpoint conversion: what was mapped, and every problem found."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

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
        not_tensors: source keys whose value is not a tensor (dropped; ``allow_partial`` only).
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
    not_tensors: List[str] = field(default_factory=list)
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
            "source keys whose value is not a tensor (dropped)": self.not_tensors,
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
