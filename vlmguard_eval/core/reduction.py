"""How per-response scores become per-item scores: one rule for the Inspect reducer and the report.

Verdict keys take the mode of their parsed values over epochs (a tie, or nothing parsed, gives None:
unparsed, never decided); cost and graded keys are averaged. "n/a" (not applicable) stays "n/a".
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .measures import MEAN_KEYS, NOT_APPLICABLE


def mode_of_parsed_values(values: list[Any]) -> Any:
    """The most common parsed value; None on a tie or if none parsed."""
    counts = Counter(v for v in values if v is not None).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def mean_of_parsed_values(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if v is not None and v != NOT_APPLICABLE]
    return sum(numbers) / len(numbers) if numbers else None


def reduce_key(key: str, values: list[Any], mean_keys: tuple[str, ...] = MEAN_KEYS) -> Any:
    if all(v == NOT_APPLICABLE for v in values):
        return NOT_APPLICABLE
    if key in mean_keys:
        return mean_of_parsed_values(values)
    # an epoch the measure does not apply to casts no vote (MCQA's accuracy of answered, where a reply gave no letter)
    return mode_of_parsed_values([v for v in values if v != NOT_APPLICABLE])
