"""Lite DETR encoder variants: ``HxLy-(A+1)xB`` strings and their validation.

``H3L1-(2+1)x3`` means: the H=3 lowest-resolution levels are high-level, the
y=1 remaining level is low-level; each of B=3 blocks updates the high-level
tokens A=2 times, then the low-level tokens once.
"""
import re
from dataclasses import dataclass

_VARIANT = re.compile(r"^\s*H(\d+)\s*L(\d+)\s*-\s*\(\s*(\d+)\s*\+\s*1\s*\)\s*[x×]\s*(\d+)\s*$", re.IGNORECASE)
STANDARD = "standard"


@dataclass(frozen=True)
class LiteVariant:
    """An interleaved encoder layout.

    Attributes:
        num_high_levels: H, the lowest-resolution levels updated A times per block.
        num_low_levels: the remaining, highest-resolution levels, updated once per block.
        num_high_updates: A, high-level updates per block.
        num_blocks: B.
    """

    num_high_levels: int
    num_low_levels: int
    num_high_updates: int
    num_blocks: int

    @property
    def num_levels(self) -> int:
        return self.num_high_levels + self.num_low_levels

    @property
    def num_layers(self) -> int:
        return (self.num_high_updates + 1) * self.num_blocks

    @property
    def name(self) -> str:
        return (
            f"H{self.num_high_levels}L{self.num_low_levels}-({self.num_high_updates}+1)x{self.num_blocks}"
        )

    def __str__(self) -> str:
        return self.name


def parse_variant(variant: str) -> LiteVariant:
    """Parses ``"H3L1-(2+1)x3"`` (case and spaces free; ``×`` accepted)."""
    if not isinstance(variant, str):
        raise ValueError(f"variant must be a string like 'H3L1-(2+1)x3', got {variant!r}")
    match = _VARIANT.match(variant)
    if match is None:
        raise ValueError(
            f"variant {variant!r} is not of the form 'HxLy-(A+1)xB', e.g. 'H3L1-(2+1)x3' "
            f"(H high-level scales, y low-level scales, A high-level updates per block, B blocks), "
            f"or {STANDARD!r}"
        )
    h, low, a, b = (int(g) for g in match.groups())
    return make_variant(h, low, a, b)


def make_variant(num_high_levels: int, num_low_levels: int, num_high_updates: int, num_blocks: int) -> LiteVariant:
    """Validates a split: every count at least 1."""
    for name, value in (
        ("num_high_levels (H)", num_high_levels),
        ("num_low_levels", num_low_levels),
        ("num_high_updates (A)", num_high_updates),
        ("num_blocks (B)", num_blocks),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return LiteVariant(num_high_levels, num_low_levels, num_high_updates, num_blocks)


def variant_for_levels(
    num_feature_levels: int, num_high_levels: int, num_high_updates: int, num_blocks: int
) -> LiteVariant:
    """The variant with H high-level scales out of ``num_feature_levels``; requires 1 <= H < levels."""
    if not isinstance(num_feature_levels, int) or num_feature_levels < 2:
        raise ValueError(
            f"a Lite encoder needs at least 2 feature levels (high and low), got num_feature_levels={num_feature_levels!r}"
        )
    if not isinstance(num_high_levels, int) or not 1 <= num_high_levels < num_feature_levels:
        raise ValueError(
            f"num_high_levels (H) must be between 1 and num_feature_levels - 1 = {num_feature_levels - 1}, "
            f"got {num_high_levels!r}"
        )
    return make_variant(num_high_levels, num_feature_levels - num_high_levels, num_high_updates, num_blocks)


# The variants of the paper's Tables 4-6 (4 feature levels).
PAPER_VARIANTS = (
    "H2L2-(2+1)x3",
    "H3L1-(6+1)x1",
    "H3L1-(3+1)x2",
    "H3L1-(2+1)x3",
    "H3L1-(2+1)x4",
)
