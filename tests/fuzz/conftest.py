"""Hypothesis profiles for the fuzz tests.

"ci" (the default): derandomized (the same examples on every run), no deadline,
no example database, and each test's own ``max_examples`` (tests/fuzz/budget.py):
about 30 s for the whole folder on a 2-core CPU. "explore": random examples,
ten times as many (``LITE_DETR_FUZZ=explore python -m pytest tests/fuzz``).
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "explore", derandomize=False, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("LITE_DETR_FUZZ", "ci"))
