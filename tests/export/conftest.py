"""The export tests share the detrex tests' ``detrex_root`` fixture (skips without detectron2/detrex)."""
from ..detrex.conftest import detrex_root  # noqa: F401  (a fixture, registered by import)
