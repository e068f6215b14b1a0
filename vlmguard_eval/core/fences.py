"""The rewriter's request fence: lines around a user's text that the text cannot forge.

Written by `rewriter.prompts` and read back by the offline scripted rewriter (`models.scripted`), so
both sit on this one definition, below either.
"""

from __future__ import annotations

import hashlib
import re

# a fenced request at the end of a text: its opening line, the request, its closing line
_FENCED = re.compile(r"\n<<<(REQUEST-[0-9a-f]{16})>>>\n(.*)\n<<<END-\1>>>\Z", re.DOTALL)


def request_fence(user_text: str) -> str:
    """A fence name the text cannot close from inside: it is derived from the text's own hash, so
    writing the closing line would need the text to contain its own SHA-256 (and a text that does,
    by chance, gets the next salt)."""
    salt = 0
    while True:
        fence = "REQUEST-" + hashlib.sha256(f"{salt}\x00{user_text}".encode("utf-8", "surrogatepass")).hexdigest()[:16]
        if fence not in user_text:
            return fence
        salt += 1


def fenced(user_text: str, fence: str) -> str:
    """The text between its fence lines."""
    return f"<<<{fence}>>>\n{user_text}\n<<<END-{fence}>>>"


def fenced_request(text: str) -> str | None:
    """The user's request fenced at the end of `text`; None if there is none.

    The fence must be the request's own (`request_fence`): a request cannot pose as the fence, and
    what precedes the fence never leaks into the result."""
    match = _FENCED.search(text)
    if match is None or request_fence(match.group(2)) != match.group(1):
        return None
    return match.group(2)
