"""Finding detrex and its project configs from outside the detrex repository.

detrex's project configs (``projects/dino/configs/...``) are not installed by
``pip``: they live in the detrex source tree, and their modeling code imports as
the namespace package ``projects`` only when the detrex root is on ``sys.path``.
Our own projects (``projects/lite_dino`` ...) live in this repository's root and
join the same ``projects`` namespace (neither tree has a ``projects/__init__.py``).

Everything that needs detectron2 imports it inside the function.
"""
import os
import sys
from typing import Optional

DETREX_ROOT_ENV = "DETREX_ROOT"
DETREX_INSTALL_URL = "https://detrex.readthedocs.io/en/latest/tutorials/Installation.html"

class DetrexNotFoundError(RuntimeError):
    """detrex's source tree (with its ``projects/`` folder) could not be located."""


def _is_detrex_root(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "projects")) and os.path.isdir(os.path.join(path, "detrex"))


def detrex_root() -> str:
    """The root of detrex's source tree: the folder holding ``detrex/`` and ``projects/``.

    ``$DETREX_ROOT`` when set; otherwise the tree of the installed ``detrex``
    package (an editable install, as detrex's installation guide does). Raises
    :class:`DetrexNotFoundError`, naming ``DETREX_ROOT``, when neither works.
    """
    env = os.environ.get(DETREX_ROOT_ENV)
    if env:
        root = os.path.abspath(os.path.expanduser(env))
        if not _is_detrex_root(root):
            raise DetrexNotFoundError(
                f"{DETREX_ROOT_ENV}={env!r} is not a detrex source tree (expected {root}/projects and "
                f"{root}/detrex). Point {DETREX_ROOT_ENV} at your detrex clone; see {DETREX_INSTALL_URL}"
            )
        return root
    try:
        import detrex
    except ImportError as exc:
        raise DetrexNotFoundError(
            f"detrex is not installed and {DETREX_ROOT_ENV} is not set. Install detrex from source "
            f"({DETREX_INSTALL_URL}) or set {DETREX_ROOT_ENV}=/path/to/detrex"
        ) from exc
    package_dir = os.path.dirname(os.path.abspath(detrex.__file__ or ""))
    root = os.path.dirname(package_dir)
    if not _is_detrex_root(root):
        raise DetrexNotFoundError(
            f"detrex is installed at {package_dir}, but its source tree (with projects/) is not next to it: "
            f"a non-editable install does not ship detrex's project configs. Set "
            f"{DETREX_ROOT_ENV}=/path/to/your/detrex/clone; see {DETREX_INSTALL_URL}"
        )
    return root


def plugin_root() -> Optional[str]:
    """The root of this repository's source checkout (the folder holding ``projects/lite_dino`` ...).

    Our project configs are not installed by pip either; they are loaded by path.
    This is ``$LITE_DETR_ROOT`` when set, else the checkout the package was
    imported from (a source checkout or an editable install), else None.
    """
    env = os.environ.get("LITE_DETR_ROOT")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = os.path.dirname(package_dir)
    return root if os.path.isdir(os.path.join(root, "projects", "lite_dino")) else None


def add_to_sys_path(path: str, prepend: bool = False) -> None:
    """Puts ``path`` on ``sys.path`` once (appended: installed packages keep priority)."""
    path = os.path.abspath(path)
    if path in (os.path.abspath(p) for p in sys.path if p):
        return
    if prepend:
        sys.path.insert(0, path)
    else:
        sys.path.append(path)


def setup_projects_path(include_plugin: bool = True) -> str:
    """Makes ``projects.dino`` ... (detrex) and ``projects.lite_dino`` ... (ours) importable.

    Returns the detrex root.
    """
    root = detrex_root()
    add_to_sys_path(root)
    ours = plugin_root() if include_plugin else None
    if ours is not None:
        add_to_sys_path(ours)
    return root


def load_detrex_config(relative_path: str):
    """``LazyConfig.load`` of ``<detrex root>/<relative_path>``, e.g.
    ``"projects/dino/configs/dino-resnet/dino_r50_4scale_12ep.py"``.

    The detrex root is put on ``sys.path`` first, since detrex's project configs
    import their modeling code as ``projects.<name>.modeling``.
    """
    from detectron2.config import LazyConfig

    root = setup_projects_path()
    path = os.path.join(root, relative_path)
    if not os.path.isfile(path):
        raise DetrexNotFoundError(
            f"{relative_path} is not in the detrex tree at {root}; this plugin was written against "
            f"detrex v0.3.0+ (set {DETREX_ROOT_ENV} to a matching clone; see {DETREX_INSTALL_URL})"
        )
    return LazyConfig.load(path)


def get_detrex_config(relative_path: str):
    """detrex's ``get_config``: a config from detrex's ``configs/`` (e.g. ``"common/coco_schedule.py"``)."""
    from detectron2.config import LazyConfig

    root = setup_projects_path()
    path = os.path.join(root, "configs", relative_path)
    if os.path.isfile(path):
        return LazyConfig.load(path)
    from detrex.config import get_config

    return get_config(relative_path)
