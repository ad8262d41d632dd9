"""Building a registered attention module from detrex's MSDA keywords.

:class:`~lite_detr_plugin.encoders.LiteEncoder` and
:func:`~lite_detr_plugin.config.use_kda_cross_attention` build their attention
through :func:`build_attention`, so any class in ``ATTENTION_REGISTRY`` can
serve. Such a class takes detrex's ``MultiScaleDeformableAttention`` keywords
(``embed_dim, num_heads, num_levels, num_points, dropout, batch_first``) and has
its ``forward(query, key=None, value=None, identity=None, query_pos=None,
key_padding_mask=None, reference_points=None, spatial_shapes=None,
level_start_index=None)`` returning ``identity + attention`` (``[bs, Nq, C]``
when ``batch_first``).
"""
import inspect
from typing import Any, Dict, Union

from torch import nn

from ..registry import ATTENTION_REGISTRY

__all__ = ["build_attention", "build_attention_like", "OPTIONAL_KEYWORDS"]

# Keywords only some attentions take, with the value that means "not asked for".
OPTIONAL_KEYWORDS: Dict[str, Any] = {"value_placement": "auto", "use_key_proj": False}


def _accepts(cls: type, keyword: str) -> bool:
    parameters = inspect.signature(cls).parameters
    return keyword in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def build_attention(attention: Union[str, type], *, embed_dim: int, num_heads: int, num_levels: int,
                    num_points: int, dropout: float, batch_first: bool, **options) -> nn.Module:
    """``cls(embed_dim=..., ..., batch_first=..., **options)`` for the registered ``attention``.

    Args:
        attention: a name or alias in ``ATTENTION_REGISTRY`` (``"kda"``, ``"msda"``,
            a user's name), or a registered class.
        options: keywords of :data:`OPTIONAL_KEYWORDS` (``value_placement``,
            ``use_key_proj``). One the class does not take is dropped when it has
            its "not asked for" value and refused (ValueError) otherwise.

    Raises:
        ValueError: unknown name (the message lists the registered ones), an unknown
            option, or an option the class does not take.
    """
    cls = ATTENTION_REGISTRY.resolve(attention)
    kwargs = dict(embed_dim=embed_dim, num_heads=num_heads, num_levels=num_levels, num_points=num_points,
                  dropout=dropout, batch_first=batch_first)
    for keyword, value in options.items():
        if keyword not in OPTIONAL_KEYWORDS:
            raise ValueError(f"build_attention: unknown option {keyword!r}; options are {sorted(OPTIONAL_KEYWORDS)}")
        if _accepts(cls, keyword):
            kwargs[keyword] = value
        elif value != OPTIONAL_KEYWORDS[keyword]:
            raise ValueError(
                f"attention {ATTENTION_REGISTRY.short_name(cls)!r} ({cls.__name__}) does not take "
                f"{keyword}={value!r}"
            )
    return cls(**kwargs)


def build_attention_like(attention: Union[str, type], template: nn.Module, **options) -> nn.Module:
    """:func:`build_attention` with the sizes, dropout and layout of ``template`` (a detrex or lite_detr
    deformable attention), on its device and dtype. New weights: the caller copies any it wants."""
    dropout = getattr(template, "dropout", None)
    built = build_attention(
        attention,
        embed_dim=template.embed_dim,
        num_heads=template.num_heads,
        num_levels=template.num_levels,
        num_points=template.num_points,
        dropout=dropout.p if isinstance(dropout, nn.Dropout) else 0.0,
        batch_first=template.batch_first,
        **options,
    )
    parameter = next(template.parameters(), None)
    if parameter is not None:
        built.to(device=parameter.device, dtype=parameter.dtype)
    return built
