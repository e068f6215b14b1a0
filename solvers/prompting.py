"""Prompt-only baselines: zero extra calls, black-box. All wording is ours (prompts/*.v1.txt)."""

from inspect_ai.solver import Generate, Solver, TaskState, solver

from vlmguard_eval.defense import (
    DefenseInfo,
    fill_prompt,
    register_defense,
    replace_user_text,
    set_system_message,
)

SELF_REMINDER = register_defense(
    DefenseInfo(
        name="self_reminder",
        summary="System prompt and suffix reminding the target to be responsible.",
        extra_calls="0",
        reference="Xie et al., self-reminders against jailbreaks, Nature Machine Intelligence 2023",
    )
)
SAFETY_PROMPT = register_defense(
    DefenseInfo(
        name="safety_prompt",
        summary="Prefix asking the target to decline unsafe requests (MM-SafetyBench style).",
        extra_calls="0",
        reference="Liu et al., MM-SafetyBench (its safety-prompt baseline)",
    )
)
FIGSTEP_PROMPT = register_defense(
    DefenseInfo(
        name="figstep_prompt",
        summary="System prompt to read and vet text inside the image (our wording; the official "
        "text is not published).",
        extra_calls="0",
        reference="Gong et al., FigStep (its defensive system prompt)",
    )
)
ADASHIELD_S = register_defense(
    DefenseInfo(
        name="adashield_s",
        summary="Static shield prompt sandwiched between two copies of the query.",
        extra_calls="0",
        reference="Wang et al., AdaShield (static variant AdaShield-S)",
    )
)


@solver
def self_reminder(version: str = "v1") -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        set_system_message(state, fill_prompt("self_reminder_system", version))
        replace_user_text(state, state.user_prompt.text + fill_prompt("self_reminder_suffix", version))
        return await generate(state)

    return solve


@solver
def safety_prompt(version: str = "v1") -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        replace_user_text(state, fill_prompt("safety_prompt_prefix", version) + state.user_prompt.text)
        return await generate(state)

    return solve


@solver
def figstep_prompt(version: str = "v1") -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        set_system_message(state, fill_prompt("figstep_system", version))
        return await generate(state)

    return solve


@solver
def adashield_s(version: str = "v1") -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        query = state.user_prompt.text
        replace_user_text(state, f"{query}\n\n{fill_prompt('adashield_shield', version)}\n\n{query}")
        return await generate(state)

    return solve
