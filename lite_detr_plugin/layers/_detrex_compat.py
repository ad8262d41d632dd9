"""Make our attention modules count as detrex ``MultiScaleDeformableAttention``.

detrex's DINO, H-DETR and Deformable DETR transformers re-initialise their
encoder and decoder after building them: every >1-D parameter gets
``xavier_uniform_``, then ``init_weights()`` is called on every module that is
an instance of ``detrex.layers.MultiScaleDeformableAttention``. Our modules
must be such instances to get their own initialisation back, yet importing
lite_detr_plugin must never require detrex.

So when detrex is already imported, an instance is created from a subclass
that also derives from detrex's class (its ``__init__`` is never called, and
its methods are all shadowed by ours). Without detrex nothing changes.
"""
import sys

_COMPAT_CLASSES = {}


def detrex_attention_class():
    """detrex's ``MultiScaleDeformableAttention`` (possibly its import-error dummy),
    or None when detrex has not been imported."""
    if "detrex" not in sys.modules:
        return None
    try:
        from detrex.layers import MultiScaleDeformableAttention
    except Exception:  # a broken detrex install must not break us
        return None
    return MultiScaleDeformableAttention


class DetrexReinitCompatible:
    """Mixin: instances are detrex ``MultiScaleDeformableAttention`` when detrex is loaded.

    Subclasses must initialise with ``nn.Module.__init__(self)``, never
    ``super().__init__()``, so detrex's constructor is not run.
    """

    _plain_class = None  # set on the derived classes

    def __new__(cls, *args, **kwargs):
        base = detrex_attention_class()
        if base is not None and not issubclass(cls, base):
            key = (cls, base)
            if key not in _COMPAT_CLASSES:
                _COMPAT_CLASSES[key] = type(
                    cls.__name__,
                    (cls, base),
                    {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "_plain_class": cls},
                )
            cls = _COMPAT_CLASSES[key]
        return object.__new__(cls)

    def __reduce_ex__(self, protocol):
        # Pickle (and deepcopy) through the plain class, which is importable by
        # name; unpickling re-derives detrex's base if detrex is loaded then.
        reduced = object.__reduce_ex__(self, protocol)
        plain = type(self)._plain_class
        if plain is None:
            return reduced
        return (_new_instance, (plain,)) + tuple(reduced[2:])


def _new_instance(cls):
    """An empty instance of ``cls``, for unpickling; its state is set afterwards."""
    return cls.__new__(cls)
