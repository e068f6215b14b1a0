"""Judge calls: the `grader` role, a prompt (ours or the user's), the sample's images, and a strict parse."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from inspect_ai.model import ContentImage, Model, get_model

from vlmguard_eval.core.messages import user_turn
from vlmguard_eval.core.options import role_config, role_defaults

from .prompts import JudgePrompt
from .verdicts import Verdict

JUDGE_ROLE = "grader"


JUDGE_PROMPT_VERSION = "v2"

# every judge call is bounded (room for a few sentences of reasoning and the final label line(s)) and
# greedy. A role config sets others: --model-role "grader={model: M, max_tokens: N, temperature: T}"
JUDGE_MAX_TOKENS = 512


def judge_model() -> Model:
    """The judge bound to the `grader` role; required, so it never falls back to the target."""
    return get_model(role=JUDGE_ROLE, required=True)


async def ask_judge(
    prompt: JudgePrompt,
    fields: dict[str, Any],
    images: list[ContentImage],
    parse: Callable[[str], Any],
    trusted: Iterable[str] = (),
) -> Verdict:
    """Fill the template (untrusted fields fenced), show the images (none for a text-only protocol), parse."""
    text = prompt.fill(fields, trusted)
    judge = judge_model()
    config = role_config(judge, role_defaults(judge, JUDGE_MAX_TOKENS, temperature=0.0))
    output = await judge.generate(user_turn(images, text), config=config)
    raw = output.completion
    return Verdict(raw=raw, label=parse(raw))


def target_generation(model: str) -> dict[str, Any]:
    """The generation settings of the target's calls in this sample (from the transcript), for the log.

    A task sets its benchmark's official settings; a global `--max-tokens` or `--temperature` replaces
    them. Recording what the target's requests carried makes such an override visible per sample.
    """
    from inspect_ai.event import ModelEvent
    from inspect_ai.log import transcript

    used = [
        {"temperature": e.config.temperature, "max_tokens": e.config.max_tokens, "top_p": e.config.top_p}
        for e in transcript().events
        if isinstance(e, ModelEvent) and e.role is None and e.model == model
    ]
    return used[-1] if used else {}
