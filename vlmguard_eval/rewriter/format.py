"""The VLMGuard-R1 rewriter's prompt and output format: one definition for inference and training.

The rewriter (arXiv 2504.12661) reads the image and the user's text, reasons about how the two
together could lead to harm, and writes a refined text prompt. The paper's templates are not
public; ours are versioned data (`prompts/rewriter.<version>.txt`). Training targets are built with
`RewriterOutput.render` and inference parses with `parse_rewriter_output`, so the two cannot drift.

The parser accepts exactly one well-formed reply: at most one `<analysis>` block, then exactly one
`<refined_prompt>` block, neither nested nor repeated nor holding the other's tags. Anything else is
a counted failure (`malformed`; `empty` for content that is blank or only invisible or control characters;
`overlong` beyond MAX_REFINED_PROMPT_CHARS), and the defense takes its documented fallback.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

MAX_REFINED_PROMPT_CHARS = 4000

_TAG = re.compile(r"</?\s*(analysis|refined_prompt)\s*>", re.IGNORECASE)

ParseFailure = Literal["empty", "malformed", "overlong"]


@dataclass(frozen=True)
class RewriterOutput:
    """The rewriter's reasoning and its refined prompt."""

    analysis: str
    refined_prompt: str

    def render(self) -> str:
        """The exact text the rewriter is trained to emit and `parse_rewriter_output` reads."""
        return (
            f"<analysis>\n{self.analysis.strip()}\n</analysis>\n"
            f"<refined_prompt>\n{self.refined_prompt.strip()}\n</refined_prompt>"
        )


@dataclass(frozen=True)
class ParseResult:
    output: RewriterOutput | None
    failure: ParseFailure | None = None
    detail: str = ""


def visible(text: str) -> str:
    """The text without what shows nothing: whitespace, format characters (zero-width space, joiners, BOM) and
    control characters (NUL, ESC, DEL: `<refined_prompt>\x00</refined_prompt>` gives the target no prompt)."""
    return "".join(c for c in text if not c.isspace() and unicodedata.category(c) not in ("Cc", "Cf"))


def _blocks(text: str) -> tuple[dict[str, str], str]:
    """The content of each tag block, or a reason the tags are not one flat sequence of blocks."""
    blocks: dict[str, str] = {}
    open_name, open_end = None, 0
    for match in _TAG.finditer(text):
        name, closing = match.group(1).lower(), match.group(0)[1] == "/"
        if not closing:
            if open_name is not None:
                return {}, f"<{name}> opened inside <{open_name}>"
            if name in blocks:
                return {}, f"more than one <{name}> block"
            open_name, open_end = name, match.end()
        else:
            if open_name != name:
                return {}, f"</{name}> without a matching <{name}>"
            blocks[name] = text[open_end : match.start()]
            open_name = None
    if open_name is not None:
        return {}, f"<{open_name}> is never closed"
    return blocks, ""


def parse_rewriter_output(text: str) -> ParseResult:
    """Parse a rewriter completion; anything but one well-formed, non-empty, bounded refined prompt fails."""
    if not text or not visible(text):
        return ParseResult(None, "empty", "the rewriter returned no text")
    blocks, problem = _blocks(text)
    if problem:
        return ParseResult(None, "malformed", problem)
    if "refined_prompt" not in blocks:
        return ParseResult(None, "malformed", "expected one <refined_prompt> block, found 0")
    prompt = blocks["refined_prompt"].strip()
    if not visible(prompt):
        return ParseResult(None, "empty", "the <refined_prompt> block is blank or holds only invisible characters")
    if len(prompt) > MAX_REFINED_PROMPT_CHARS:
        return ParseResult(
            None, "overlong", f"refined prompt has {len(prompt)} chars (limit {MAX_REFINED_PROMPT_CHARS})"
        )
    return ParseResult(RewriterOutput(blocks.get("analysis", "").strip(), prompt))
