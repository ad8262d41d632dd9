"""Per-test example budgets: ``@budget(n)`` runs n examples under the "ci" profile, 10n under "explore"."""
import os

from hypothesis import settings

SCALE = 10 if os.environ.get("LITE_DETR_FUZZ", "ci") == "explore" else 1


def budget(max_examples: int) -> settings:
    return settings(max_examples=max_examples * SCALE)


def names_an_argument(message: str, names) -> bool:
    """Whether a refusal's message names one of ``names`` (the arguments it could be about)."""
    return any(name in message for name in names)
