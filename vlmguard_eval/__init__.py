"""vlmguard-eval: does a defense make a vision-language model safer, and what does it cost?"""

__version__ = "0.1.0"
