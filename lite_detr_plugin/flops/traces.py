"""Tracing the report's encoders: each distinct encoder once, by default one trace per kind of layer.

:class:`EncoderCounter` caches the fvcore trace of each :class:`~lite_detr_plugin.flops.specs.EncoderSpec`
(by default of its unit encoder, see ``EncoderSpec.unit``) and gives a :class:`Counted`: the encoder's
total, value side, sampling and placements, read from the trace in the encoder's layer order.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from .encoder import EncoderFlops, count_encoder, layer_terms, level_shapes
from .specs import NUM_LEVELS, EncoderSpec


@dataclass
class Counted:
    """The count of one encoder (FLOPs) from the trace of a unit encoder and the encoder's layer order.

    ``layout[i]`` is the unit layer whose count the encoder's layer i has (see
    ``EncoderSpec.unit``); with ``exact`` the unit is the encoder itself.
    """

    spec: EncoderSpec
    unit: EncoderFlops
    layout: List[int]

    def _layer(self, index: int) -> str:
        return self.unit.layers[index]

    def _call(self, index: int):
        name = self._layer(index) + "."
        return next(c for c in self.unit.attention_calls if c.module.startswith(name))

    def layer(self, index: int):
        """``(terms, attention call)`` of the encoder's layer ``index`` (see :func:`layer_terms`)."""
        unit_index = self.layout[index]
        return layer_terms(self.unit, self._layer(unit_index)), self._call(unit_index)

    @property
    def total(self) -> int:
        layer_totals = [self.unit.module_total(name) for name in self.unit.layers]
        outside = self.unit.total - sum(layer_totals)
        if outside and len(self.layout) != len(self.unit.layers):
            raise RuntimeError(
                f"{self.spec.label}: {outside} FLOPs outside the layers; count it with exact=True"
            )
        return sum(layer_totals[i] for i in self.layout) + outside

    @property
    def value_side(self) -> int:
        return sum(self._call(i).value_side for i in self.layout)

    @property
    def sampling(self) -> int:
        return sum(self._call(i).sampling for i in self.layout)

    @property
    def placements(self) -> List[str]:
        return [self._call(i).placement for i in self.layout]


class EncoderCounter:
    """Counts each distinct encoder once, by default from one trace per kind of layer (``EncoderSpec.unit``)."""

    def __init__(self, size: Tuple[int, int], counting: str, progress: Optional[Callable[[str], None]] = None,
                 exact: bool = False):
        self.size = tuple(size)
        self.counting = counting
        self.exact = exact
        self.shapes = level_shapes(*size, NUM_LEVELS)
        self.traces: Dict[EncoderSpec, EncoderFlops] = {}
        self.progress = progress

    def shapes_for(self, num_levels: int):
        # The 3/2-scale baselines keep the lowest-resolution levels of the 4-scale pyramid.
        return self.shapes[NUM_LEVELS - num_levels:]

    def trace(self, spec: EncoderSpec) -> EncoderFlops:
        if spec not in self.traces:
            if self.progress is not None:
                self.progress(spec.label)
            self.traces[spec] = count_encoder(spec.build(), self.shapes_for(spec.num_levels),
                                              counting=self.counting)
        return self.traces[spec]

    def __call__(self, spec: EncoderSpec) -> Counted:
        if self.exact:
            flops = self.trace(spec)
            return Counted(spec, flops, list(range(len(flops.layers))))
        unit, layout = spec.unit()
        return Counted(spec, self.trace(unit), layout)
