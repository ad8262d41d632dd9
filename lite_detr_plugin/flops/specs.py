"""What the encoder GFLOPs report counts: the report's modes and the encoder built for each paper row.

Every row of :data:`~lite_detr_plugin.flops.paper.PAPER_ENCODER_GFLOPS` is
built as a :class:`~lite_detr_plugin.encoders.LiteEncoder` (DINO size: C=256,
M=8 heads, L=4 levels, P=4 points) and counted on one image of the given size.
Three report modes (:data:`REPORT_MODES`; the ``modes`` of
:func:`~lite_detr_plugin.flops.build_report`, not to be confused with its
``counting`` conventions), each a real encoder that is traced (no arithmetic on
the counts):

* ``paper``: Lite DETR's eq. (2) (only the low-level tokens query in the
  low-level layer, which has only the light FFN) with
  ``value_placement="output"``, the released code's ``value_proj_after``: each
  head aggregates its own D channels of the raw input and ``value_proj`` is
  applied to the aggregated output. The paper's accounting; a different
  (trainable) function from "tokens". The ±5% criterion applies to this mode.
* ``paper_exact``: eq. (2) with ``value_placement="auto"``: each layer projects
  its values over the tokens or exactly after sampling (every head samples all
  C + 1 raw channels; KDA folds its query), whichever costs fewer FLOPs. The
  same function as the released attention.
* ``released``: the public Lite-DETR code (every token queries in the
  low-level layer, the high-level rows through the full FFN) with the value
  projection over all tokens (``low_query_mode="released"``,
  ``value_placement="tokens"``).

Standard rows (``variant="standard"``: detrex's deformable encoder, values
projected over the tokens; the 3/2-scale baselines keep only the 3/2
lowest-resolution levels) are the same encoder in every mode and appear once
per mode.
"""
from dataclasses import dataclass, replace
from typing import Dict, List, Sequence, Tuple

from .paper import PAPER_BY_KEY

DEFAULT_SIZE = (850, 1040)
EMBED_DIM = 256
NUM_HEADS = 8
NUM_POINTS = 4
NUM_LEVELS = 4
LOW_FFN_RATIO = 8
#: The variant whose layers the per-layer breakdown shows.
BREAKDOWN_KEY = "dino-h3l1-2x3"

#: The report's modes: (low_query_mode, value_placement) of the Lite encoders counted.
REPORT_MODES: Dict[str, Tuple[str, str]] = {
    "paper": ("paper", "output"),
    "paper_exact": ("paper", "auto"),
    "released": ("released", "tokens"),
}
#: The mode the ±5% criterion applies to.
CHECKED_MODE = "paper"
MODE_DESCRIPTIONS = {
    "paper": 'eq. (2) low-level queries, value_placement="output" (value_proj after aggregation, '
             "the released code's value_proj_after): the paper's accounting",
    "paper_exact": 'eq. (2), value_placement="auto" (values projected over the tokens or exactly after '
                   "sampling, whichever costs fewer FLOPs per layer): the released attention's function",
    "released": 'the released code: every token queries in the last layer of each block, values projected '
                'over all tokens (low_query_mode="released", value_placement="tokens")',
}


def check_modes(modes: Sequence[str]) -> Tuple[str, ...]:
    """``modes`` in :data:`REPORT_MODES`' order, without repeats; ValueError for an unknown or no mode."""
    modes = tuple(modes)
    unknown = [m for m in modes if m not in REPORT_MODES]
    if unknown or not modes:
        raise ValueError(f"report modes must be among {', '.join(REPORT_MODES)}; got {list(modes)}")
    return tuple(m for m in REPORT_MODES if m in modes)  # canonical order, no repeats


@dataclass(frozen=True)
class EncoderSpec:
    """What to build: a standard or Lite encoder of DINO size."""

    attention: str
    feedforward_dim: int
    num_levels: int
    variant: str
    low_query_mode: str = "paper"
    value_placement: str = "auto"
    num_layers: int = 6  # standard encoders only

    def build(self):
        from ..encoders import LiteEncoder

        encoder = LiteEncoder(
            embed_dim=EMBED_DIM,
            num_heads=NUM_HEADS,
            feedforward_dim=self.feedforward_dim,
            attn_dropout=0.0,
            ffn_dropout=0.0,
            num_layers=self.num_layers if self.variant == "standard" else None,
            num_feature_levels=self.num_levels,
            variant=self.variant,
            attention=self.attention,
            low_query_mode=self.low_query_mode,
            value_placement=self.value_placement,
            num_points=NUM_POINTS,
            low_ffn_ratio=LOW_FFN_RATIO,
        ).eval()
        return encoder

    def unit(self) -> Tuple["EncoderSpec", List[int]]:
        """The smallest encoder with one layer of each kind, and the encoder's layers as indices into it.

        A layer's cost depends only on the shapes it gets (queries, values,
        levels) and its widths, so layers of the same kind cost the same:

        * a standard encoder is one layer, ``num_layers`` times: ``(standard, 1 layer), [0] * n``;
        * a Lite ``HxLy-(A+1)xB`` is a high-level layer A times then a low-level
          layer, B times: ``(HxLy-(1+1)x1), ([0] * A + [1]) * B``.

        Tracing the unit and summing its layers' counts in this order gives the
        encoder's count; ``--exact`` (and the tests) trace whole encoders to check it.
        """
        if self.variant == "standard":
            return replace(self, num_layers=1), [0] * self.num_layers
        from ..encoders import parse_variant

        variant = parse_variant(self.variant)
        unit = f"H{variant.num_high_levels}L{variant.num_low_levels}-(1+1)x1"
        return replace(self, variant=unit), ([0] * variant.num_high_updates + [1]) * variant.num_blocks

    @property
    def label(self) -> str:
        if self.variant == "standard":
            return f"standard {self.attention} ffn={self.feedforward_dim} L={self.num_levels} layers={self.num_layers}"
        return (
            f"{self.variant} {self.attention} ffn={self.feedforward_dim} {self.low_query_mode} "
            f"value_placement={self.value_placement}"
        )


def standard_spec(row: Dict) -> EncoderSpec:
    """The 4-scale standard encoder a paper row is compared with."""
    ref = PAPER_BY_KEY[row["standard"]]
    return EncoderSpec(ref["attention"], ref["feedforward_dim"], ref["num_levels"], "standard", "paper", "tokens")


def row_specs(row: Dict, modes: Sequence[str] = tuple(REPORT_MODES)) -> Dict[str, EncoderSpec]:
    """The encoder a paper row counts in each report mode (the same standard encoder in every mode)."""
    modes = check_modes(modes)
    if row["variant"] == "standard":
        spec = EncoderSpec(row["attention"], row["feedforward_dim"], row["num_levels"], "standard", "paper", "tokens")
        return {mode: spec for mode in modes}
    common = (row["attention"], row["feedforward_dim"], row["num_levels"], row["variant"])
    return {
        mode: EncoderSpec(*common, low_query_mode=REPORT_MODES[mode][0], value_placement=REPORT_MODES[mode][1])
        for mode in modes
    }
