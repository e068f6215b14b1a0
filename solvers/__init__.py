"""Defenses, each a complete Inspect solver (`--solver NAME` replaces a task's whole chain).

Task files import this package so every defense resolves by its bare name, e.g.
`inspect eval tasks/siuo.py --solver vlmguard`. To add one, see "Adding a defense" in the README.
"""

from .none import none
from .vlmguard import vlmguard

__all__ = ["none", "vlmguard"]
