"""Registries of the plugin's components: encoders and attention modules, selectable by name.

fvcore's ``Registry`` (the one detectron2 re-exports), plus short aliases and a
ValueError that lists what is registered. Components register where they are
defined::

    @ATTENTION_REGISTRY.register(aliases=("kda",))
    class KeyAwareDeformableAttention(...): ...

and a user's own attention joins the same way; ``LiteEncoder(attention="name")``,
``swap_encoder(cfg, attention="name")`` and ``use_kda_cross_attention(decoder,
attention="name")`` then build it, also from a LazyConfig (the config file
imports the module that registers it). This module imports nothing of the
package, so any layer of it can register.
"""
from typing import Dict, Iterable, List, Optional

from fvcore.common.registry import Registry

__all__ = ["ComponentRegistry", "UnknownComponentError", "ENCODER_REGISTRY", "ATTENTION_REGISTRY"]


class UnknownComponentError(KeyError, ValueError):
    """No component of that name. A ValueError, and a KeyError as fvcore's ``Registry.get`` raises."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _qualified_name(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


class ComponentRegistry(Registry):
    """fvcore's ``Registry`` with aliases, name checks and :meth:`unregister`.

    ``register`` keeps fvcore's forms (``register(obj)`` and ``@register()``) and
    adds ``name=`` (default ``obj.__name__``) and ``aliases=``. Registering a
    different object under a taken name raises ValueError; registering an object
    with the same module and qualified name again (a reloaded module or config
    file) replaces it. Iteration yields ``(name, obj)`` for the main names only.
    """

    def __init__(self, name: str, doc: str = "") -> None:
        super().__init__(name)
        self.__doc__ = doc
        self._aliases: Dict[str, str] = {}

    def register(self, obj: Optional[object] = None, *, name: Optional[str] = None, aliases: Iterable[str] = ()):
        aliases = tuple(aliases)
        if obj is None:
            def decorator(cls):
                self._register(cls, name, aliases)
                return cls

            return decorator
        self._register(obj, name, aliases)
        return obj

    def _do_register(self, name: str, obj: object) -> None:  # fvcore's hook, kept for subclasses of Registry
        self._register(obj, name, ())

    def _register(self, obj: object, name: Optional[str], aliases: tuple) -> None:
        name = obj.__name__ if name is None else name
        for label in (name,) + aliases:
            if not isinstance(label, str) or not label:
                raise ValueError(f"{self._name} registry: names must be non-empty strings, got {label!r}")
            existing = self._lookup(label)
            if existing is not None and existing is not obj and _qualified_name(existing) != _qualified_name(obj):
                raise ValueError(
                    f"{self._name} registry: {label!r} is already taken by {_qualified_name(existing)}; "
                    f"cannot register {_qualified_name(obj)} under it"
                )
        self._obj_map[name] = obj
        for alias in aliases:
            self._aliases[alias] = name

    def _lookup(self, name: str) -> Optional[object]:
        return self._obj_map.get(self._aliases.get(name, name))

    def unregister(self, name: str) -> object:
        """Removes a component (by name or alias) and its aliases; returns it."""
        main = self._aliases.get(name, name)
        if main not in self._obj_map:
            raise self._unknown(name)
        self._aliases = {alias: target for alias, target in self._aliases.items() if target != main}
        return self._obj_map.pop(main)

    def get(self, name: str) -> object:
        obj = self._lookup(name) if isinstance(name, str) else None
        if obj is None:
            raise self._unknown(name)
        return obj

    def resolve(self, name_or_class) -> object:
        """``get(name)`` for a name; a registered class itself is returned as it is."""
        if isinstance(name_or_class, str):
            return self.get(name_or_class)
        if name_or_class in self._obj_map.values():
            return name_or_class
        raise self._unknown(name_or_class)

    def short_name(self, name_or_obj) -> str:
        """A registered component's first alias if it has one (``"kda"``), else its main name."""
        obj = self.resolve(name_or_obj)
        main = next(name for name, registered in self._obj_map.items() if registered is obj)
        return next((alias for alias, target in self._aliases.items() if target == main), main)

    def __contains__(self, name: str) -> bool:
        return self._lookup(name) is not None

    def names(self) -> List[str]:
        """Every accepted name: the main names and the aliases, sorted."""
        return sorted(list(self._obj_map) + list(self._aliases))

    def _unknown(self, name) -> UnknownComponentError:
        return UnknownComponentError(
            f"no component named {name!r} in the {self._name} registry; registered: {', '.join(self.names())}. "
            f"Register your own with @{self._name}.register()"
        )


ENCODER_REGISTRY = ComponentRegistry(
    "ENCODER_REGISTRY", "Encoders with detrex's encoder interface (built by swap_encoder)."
)
ATTENTION_REGISTRY = ComponentRegistry(
    "ATTENTION_REGISTRY",
    "Attention modules with detrex's MultiScaleDeformableAttention constructor and forward "
    "(built by LiteEncoder and use_kda_cross_attention).",
)
