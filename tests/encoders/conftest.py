"""Fixtures of this folder (the shared markers and seeding live in tests/conftest.py)."""
from ..helpers.fixtures import single_thread  # noqa: F401  (autouse: tiny inputs, one intra-op thread)
