"""Judge calls: the `grader` role, a prompt (ours or the user's), the sample's images, and a strict parse."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from inspect_ai.log import transcript
from inspect_ai.model import ContentImage, Model, ModelOutput
from inspect_ai.solver import TaskState

from vlmguard_eval.core.messages import context_overflow, user_turn
from vlmguard_eval.core.options import role_config, role_defaults
from vlmguard_eval.core.roles import JUDGE_ROLE, role_model

from .prompts import JudgePrompt
from .verdicts import Verdict

JUDGE_PROMPT_VERSION = "v2"

# every judge call is bounded (room for a few sentences of reasoning and the final label line(s)) and
# greedy. A role config sets others: --model-role "grader={model: M, max_tokens: N, temperature: T}"
JUDGE_MAX_TOKENS = 512
# what a verdict's raw reply reads when the judge's request overflowed its context window (no reply to parse)
JUDGE_OVERFLOW = "(no verdict: the judge's request exceeded its context window)"


def judge_model() -> Model:
    """The one judge bound to the `grader` role; required, so it never falls back to the target, and a
    panel bound to the role is an error naming it, never cut to its first judge."""
    return role_model(JUDGE_ROLE)


async def ask_judge(
    prompt: JudgePrompt,
    fields: dict[str, Any],
    images: list[ContentImage],
    parse: Callable[[str], Any],
    trusted: Iterable[str] = (),
) -> Verdict:
    """Fill the template (untrusted fields fenced), show the images (none for a text-only protocol), parse.

    A request that overflowed the judge's context window has no reply: its verdict is unparsed (counted
    as every unparsed verdict is), its raw text says why and quotes the server, and the parser never
    reads the server's error message as if the judge had written it."""
    text = prompt.fill(fields, trusted)
    judge = judge_model()
    config = role_config(judge, role_defaults(judge, JUDGE_MAX_TOKENS, temperature=0.0))
    output = await judge.generate(user_turn(images, text), config=config)
    overflow = context_overflow(output)
    if overflow is not None:
        transcript().info({"judge_overflow": str(judge), "server_message": overflow[:300]})
        return Verdict(raw=f"{JUDGE_OVERFLOW}: {overflow}", label=None)
    raw = output.completion
    return Verdict(raw=raw, label=parse(raw))


def target_generation(state: TaskState) -> dict[str, Any]:
    """The generation settings of the target call that produced this sample's answer (from the
    transcript), for the log.

    A task sets its benchmark's official settings; a global `--max-tokens` or `--temperature` replaces
    them. Recording what the answer's request carried makes such an override visible per sample. A
    defense may call the target again after its answer (ECSO's 8-token self-check), so the last target
    call is not always the answer's: the answer's call is the one whose output message is the answer;
    else (a defense wrote a target reply in as the answer) the last target call that returned the
    answer's text; else (the answer is a defense's own text, a guard's refusal) the last target call.
    The scorer's own state names the answer, so re-scoring a log (`rejudge`) records the same call.
    """
    from inspect_ai.event import ModelEvent

    model = str(state.model)
    calls = [e for e in transcript().events if isinstance(e, ModelEvent) and e.role is None and e.model == model]
    if not calls:
        return {}
    answer: ModelOutput | None = state.output if state.output.choices else None
    chosen = calls[-1]
    if answer is not None:
        answer_id = answer.message.id
        by_id = [e for e in calls if answer_id and e.output.choices and e.output.message.id == answer_id]
        by_text = [e for e in calls if e.output.choices and e.output.completion == answer.completion]
        chosen = (by_id or by_text or calls)[-1]
    config = chosen.config
    return {"temperature": config.temperature, "max_tokens": config.max_tokens, "top_p": config.top_p}
