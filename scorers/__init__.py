"""Scorers: judge-model verdicts and rule-based checks, each storing its raw evidence in the log."""

from .cost import defense_cost
from .mcqa import mcqa_letter
from .refusal import refusal_keywords
from .siuo import siuo_judge

__all__ = ["defense_cost", "mcqa_letter", "refusal_keywords", "siuo_judge"]
