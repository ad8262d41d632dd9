"""The interleaved Lite encoder, its variants and weight conversion."""
from .conversion import convert_detrex_encoder_state_dict, lite_encoder_from_detrex
from .lite_encoder import LiteEncoder, LiteEncoderLayer
from .variants import PAPER_VARIANTS, STANDARD, LiteVariant, parse_variant

__all__ = [
    "LiteEncoder",
    "LiteEncoderLayer",
    "LiteVariant",
    "parse_variant",
    "PAPER_VARIANTS",
    "STANDARD",
    "convert_detrex_encoder_state_dict",
    "lite_encoder_from_detrex",
]
