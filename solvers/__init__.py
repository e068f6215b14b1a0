"""Defenses, each a complete Inspect solver (`--solver NAME` replaces a task's whole chain).

Task files import this package so every defense resolves by its bare name, e.g.
`inspect eval tasks/siuo.py --solver vlmguard`. Each registers its `DefenseInfo` (cost, roles, side
models, white-box or not) in `vlmguard_eval.defense.DEFENSES`. To add one, see the README.
"""

from .ecso import ecso
from .eta import eta
from .guard_filter import guard_filter
from .mllm_protector import mllm_protector
from .none import none
from .prompting import adashield_s, figstep_prompt, safety_prompt, self_reminder
from .vlmguard import vlmguard

__all__ = [
    "adashield_s",
    "ecso",
    "eta",
    "figstep_prompt",
    "guard_filter",
    "mllm_protector",
    "none",
    "safety_prompt",
    "self_reminder",
    "vlmguard",
]
