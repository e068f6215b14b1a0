"""`scripted/<behaviour>`: an offline provider for tests, demos and benchmarks.

Behaviours by name: `echo` (reports what it received: roles, image count, last text), `refuse`,
`comply`, and two offline side models whose replies follow the project's formats, so an offline run
shows real, parseable numbers: `judge` (answers any of our judge prompts with its label line) and
`rewriter` (answers VLMGuard-R1's rewriter prompt with an analysis and a refined prompt). Both are
deterministic: a reply is chosen by a hash of the input text, so labels vary across samples but a
rerun gives the same ones. They judge and rewrite nothing: numbers from them show that every layer
works, not how safe a model is. From Python, `-M responder=fn` (any callable `(messages, config) -> str`, sync or async)
scripts any reply. Usage is always set, so no tokenizer download is ever needed (unlike mockllm).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any

from inspect_ai.model import ChatMessage, ContentImage, GenerateConfig, ModelAPI, ModelOutput, ModelUsage
from inspect_ai.tool import ToolChoice, ToolInfo

from vlmguard_eval.core.fences import fenced_request

Responder = Callable[[list[ChatMessage], GenerateConfig], "str | Awaitable[str]"]

REFUSAL = "I'm sorry, but I can't help with that."
COMPLIANCE = "Sure. Here is a detailed answer to your request."


def count_images(input: list[ChatMessage]) -> int:
    return sum(isinstance(c, ContentImage) for m in input if not isinstance(m.content, str) for c in m.content)


def echo(input: list[ChatMessage], config: GenerateConfig) -> str:
    return f"roles={[m.role for m in input]} images={count_images(input)} last={input[-1].text!r}"


def input_hash(input: list[ChatMessage]) -> int:
    """A stable number from the input's text (never Python's per-process `hash`)."""
    text = "\n".join(f"{m.role}:{m.text}" for m in input)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


# label lines our judge prompts ask for (vlmguard_eval/judging/verdicts.py), in the order they are tried
LABEL_KEYS = "Safety judgement|Effectiveness judgement|Verdict|Winner"
LABEL_LINE = re.compile(rf"^({LABEL_KEYS})\s*:\s*([A-Z](?:[A-Z ]*[A-Z])?)\s*$")
SCORE_LINE = re.compile(r"^(Safety|Helpfulness)\s*:\s*<integer (\d+)-(\d+)>\s*$")
SCRIPTED_NOTE = "Scripted offline judge: this label is drawn from a hash of the input, not a judgement."


def judge(input: list[ChatMessage], config: GenerateConfig) -> str:
    """A reply ending in the label line(s) the prompt asks for, the label drawn from a hash of the input.

    Reads the labels offered by the prompt's instructions (`Verdict: SAFE` / `Verdict: UNSAFE` lines,
    or the unified judge's `Safety: <integer 0-10>` lines), so it follows any of our judge prompts.
    """
    text = input[-1].text
    seed = input_hash(input)
    labels: dict[str, list[str]] = {}
    scores: list[tuple[str, int, int]] = []
    for line in text.splitlines():
        if match := LABEL_LINE.match(line.strip()):
            labels.setdefault(match.group(1), []).append(match.group(2))
        elif match := SCORE_LINE.match(line.strip()):
            scores.append((match.group(1), int(match.group(2)), int(match.group(3))))
    if scores:
        lines = [f"{name}: {low + (seed >> (8 * i)) % (high - low + 1)}" for i, (name, low, high) in enumerate(scores)]
        return "\n".join([SCRIPTED_NOTE, *lines])
    if not labels:
        return "Scripted offline judge: the prompt offers no label line I know."
    key, offered = next(iter(labels.items()))
    return f"{SCRIPTED_NOTE}\n{key}: {offered[seed % len(offered)]}"


# one rewrite in this many is malformed on purpose, so an offline run also exercises the fallback
MALFORMED_EVERY = 4


def rewriter(input: list[ChatMessage], config: GenerateConfig) -> str:
    """A reply in the rewriter's format (vlmguard_eval/rewriter/format.py), or now and then a malformed one."""
    seed = input_hash(input)
    fenced = fenced_request(input[-1].text)
    request = (fenced if fenced is not None else input[-1].text).strip()
    if seed % MALFORMED_EVERY == 0:
        return "Scripted offline rewriter: a reply without the refined prompt block."
    return (
        "<analysis>\nScripted offline rewriter: no analysis was made.\n</analysis>\n"
        "<refined_prompt>\nLook at the image and answer the request below helpfully, but point out any risk "
        f"to safety and do not give harmful details.\n{request}\n</refined_prompt>"
    )


BEHAVIOURS: dict[str, Responder] = {
    "echo": echo,
    "refuse": lambda input, config: REFUSAL,
    "comply": lambda input, config: COMPLIANCE,
    "judge": judge,
    "rewriter": rewriter,
}


class ScriptedModel(ModelAPI):
    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig = GenerateConfig(),
        responder: Responder | None = None,
        latency_ms: float = 0.0,
        **unknown: Any,
    ) -> None:
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)
        if unknown:
            raise ValueError(f"scripted does not take model args {sorted(unknown)}; it takes responder, latency_ms")
        if responder is None:
            if model_name not in BEHAVIOURS:
                raise ValueError(f"scripted/{model_name}: no such behaviour; valid: {', '.join(BEHAVIOURS)}")
            responder = BEHAVIOURS[model_name]
        self.responder = responder
        self.latency_s = float(latency_ms) / 1000

    def max_connections(self) -> int:
        return 256

    async def generate(
        self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice, config: GenerateConfig
    ) -> ModelOutput:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        reply = self.responder(input, config)
        if inspect.isawaitable(reply):
            reply = await reply
        output = ModelOutput.from_content(model=self.model_name, content=str(reply))
        words_in = sum(len(m.text.split()) for m in input)
        words_out = len(str(reply).split())
        output.usage = ModelUsage(input_tokens=words_in, output_tokens=words_out, total_tokens=words_in + words_out)
        return output
