"""Prompt-only baselines: zero extra calls, black-box. A prompt defense IS its prompt.

By default each runs OUR wording (`vlmguard_eval/prompts/*.txt`, named by version), asking the same
thing as the published defense and no more. The published texts are in the papers (FigStep: Gong et
al., arXiv 2311.05608, its defensive system prompt; AdaShield-S: Wang et al., arXiv 2403.09513, and
`prompts/static_defense_prompt.txt` in SaFoLab-WISC/AdaShield; self-reminder: Xie et al., Nature
Machine Intelligence 2023, and yjw1029/Self-Reminder `src/pia_defense.py:87-95`; MM-SafetyBench's
safety prompt: Liu et al., arXiv 2311.17600). To run one exactly, put its published text in a file
and pass `-S prompt_file=PATH` (or `prompt_file:` in `--solver-config`): the file's text is used as
is (one final newline dropped), and its path and sha256 are recorded in each sample's metadata
(`defense_prompt`) and transcript. `multimodal=true` (self_reminder, safety_prompt) selects our
variant with an extra clause about the image, which the originals do not have.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from inspect_ai.log import transcript
from inspect_ai.solver import Generate, Solver, TaskState

from vlmguard_eval.defense.registry import defense
from vlmguard_eval.defense.steps import fill_prompt, replace_user_text, set_system_message

QUERY_FIELD = "{query}"
# Self-Reminder's own templates mark the query with a bare `{}` and are filled by `defense_template.format(message)`
# (yjw1029/Self-Reminder `src/pia_defense.py:25-29`, templates `:87-95`)
POSITIONAL_FIELD = "{}"


def query_slot(text: str, prompt_file: str) -> str:
    """Where a self_reminder template takes the query: `{query}` (ours) or one bare `{}` (the published form).

    The published code fills its template with `str.format`, which has one positional slot; here only that
    slot is replaced, so other braced text stays as written. Anything else is ambiguous and stops the run."""
    named, positional = text.count(QUERY_FIELD), text.count(POSITIONAL_FIELD)
    if named and not positional:
        return QUERY_FIELD
    if positional == 1 and not named:
        return POSITIONAL_FIELD
    raise ValueError(
        f"self_reminder prompt_file {prompt_file!r} must mark where the query goes with {QUERY_FIELD} or with "
        f"exactly one {POSITIONAL_FIELD} (Self-Reminder's form); found {named} {QUERY_FIELD} and "
        f"{positional} {POSITIONAL_FIELD}"
    )


class DefensePrompt:
    """The text a prompt defense uses: ours (a named prompt version) or a user file, with its provenance."""

    def __init__(self, prompt_file: str, name: str, version: str) -> None:
        if prompt_file:
            path = Path(prompt_file)
            if not path.is_file():
                raise FileNotFoundError(f"prompt_file {prompt_file!r} not found")
            data = path.read_bytes()
            text = data.decode("utf-8")
            self.text = text[:-1] if text.endswith("\n") else text
            self.provenance: dict[str, Any] = {
                "source": "file",
                "path": str(path.resolve()),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        else:
            self.text = fill_prompt(name, version)
            self.provenance = {"source": "ours", "prompt": name, "version": version}
        self.from_file = bool(prompt_file)

    def record(self, state: TaskState) -> None:
        state.metadata["defense_prompt"] = self.provenance
        transcript().info({"defense_prompt": self.provenance})


@defense(
    summary="System prompt and suffix reminding the target to be responsible (our wording; a published text by file).",
    extra_calls="0",
    reference="Xie et al., self-reminders against jailbreaks, Nature Machine Intelligence 2023",
    colour="tab:green",
)
def self_reminder(version: str = "", prompt_file: str = "", multimodal: bool = False) -> Solver:
    """Ours: a system message plus a reminder after the query. A `prompt_file` is a template wrapping the
    query, in the user turn, as Self-Reminder's are (`src/pia_defense.py:87-95`): its published `{}` slot
    or our `{query}` (`query_slot`), so a published template runs unedited."""
    name, default = ("self_reminder_system_multimodal", "v1") if multimodal else ("self_reminder_system", "v2")
    system = DefensePrompt(prompt_file, name, version or default)
    slot = query_slot(system.text, prompt_file) if system.from_file else QUERY_FIELD
    suffix = fill_prompt("self_reminder_suffix", "v1")

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        system.record(state)
        if system.from_file:
            replace_user_text(state, system.text.replace(slot, state.user_prompt.text))
        else:
            set_system_message(state, system.text)
            replace_user_text(state, state.user_prompt.text + suffix)
        return await generate(state)

    return solve


@defense(
    summary="Prefix asking the target to decline unsafe requests (MM-SafetyBench's safety prompt; our wording).",
    extra_calls="0",
    reference="Liu et al., MM-SafetyBench (its safety-prompt baseline)",
    colour="tab:red",
)
def safety_prompt(version: str = "", prompt_file: str = "", multimodal: bool = False) -> Solver:
    """The prompt goes before the query; a `prompt_file` with `{query}` is a template for the whole text."""
    name, default = ("safety_prompt_prefix_multimodal", "v1") if multimodal else ("safety_prompt_prefix", "v2")
    prompt = DefensePrompt(prompt_file, name, version or default)

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        prompt.record(state)
        query = state.user_prompt.text
        text = prompt.text.replace(QUERY_FIELD, query) if QUERY_FIELD in prompt.text else prompt.text + query
        replace_user_text(state, text)
        return await generate(state)

    return solve


@defense(
    summary="System prompt to read and vet text inside the image (FigStep's defensive prompt; our wording).",
    extra_calls="0",
    reference="Gong et al., FigStep, arXiv 2311.05608 (its defensive system prompt, given in the paper)",
    colour="tab:purple",
)
def figstep_prompt(version: str = "v1", prompt_file: str = "") -> Solver:
    """FigStep's paper gives its defensive system prompt; ours asks the same in our words, the paper's
    text runs from a `prompt_file`."""
    prompt = DefensePrompt(prompt_file, "figstep_system", version)

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        prompt.record(state)
        set_system_message(state, prompt.text)
        return await generate(state)

    return solve


@defense(
    summary="Static shield prompt sandwiched between two copies of the query (our wording by default).",
    extra_calls="0",
    reference="Wang et al., AdaShield (static variant AdaShield-S)",
    colour="tab:brown",
)
def adashield_s(version: str = "v1", prompt_file: str = "") -> Solver:
    """As AdaShield's `MyLlava.get_response` (conversers.py): query + shield + query, concatenated with
    no separator. Our shield is set off by blank lines; a `prompt_file` is used byte for byte."""
    shield = DefensePrompt(prompt_file, "adashield_shield", version)
    text = shield.text if shield.from_file else f"\n\n{shield.text.strip()}\n\n"

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        shield.record(state)
        query = state.user_prompt.text
        replace_user_text(state, query + text + query)
        return await generate(state)

    return solve
