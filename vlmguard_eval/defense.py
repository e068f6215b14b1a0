"""What every defense shares: its declared metadata and the accounting of its extra model calls.

A defense is an Inspect solver (see `solvers/`). It registers a `DefenseInfo` here so reports and
the conformance tests can read what it costs, and it makes its extra calls through `extra_call`,
which records each one (role, model, tokens) in the sample store. The `defense_cost` scorer turns
those records into per-sample cost figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inspect_ai.log import transcript
from inspect_ai.model import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ContentImage,
    ContentText,
    GenerateConfig,
    ModelOutput,
    get_model,
    model_roles,
)
from inspect_ai.solver import TaskState

from .data.common import user_turn as user_turn  # re-exported: defenses build their extra calls with it
from .prompt_files import load_prompt

# the fixed answer of defenses that block (guard filters; MLLM-Protector without a detoxifier)
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."

# the sample store's ledger of extra calls; a defense that makes none writes nothing (the log's plan
# already names the defense that ran)
CALLS_KEY = "defense_calls"
FALLBACK_KEY = "defense_fallback"
# score keys of the `defense_cost` scorer; they are averaged (not voted) over epochs
COST_KEYS = ("defense_extra_calls", "defense_extra_tokens", "defense_fallback")


@dataclass(frozen=True)
class DefenseInfo:
    """What a defense declares about itself."""

    name: str
    summary: str
    extra_calls: str  # e.g. "1 (rewriter)"; a string because some depend on the sample
    roles: tuple[str, ...] = ()  # model roles it calls besides the target
    side_models: tuple[str, ...] = ()  # classifiers, CLIP, reward models loaded locally
    white_box: bool = False  # needs logits/prefix control of a local target
    reference: str = ""
    # solver parameters that name a side model, with its kind: "sequence-classifier" or "clip"
    side_model_args: tuple[tuple[str, str], ...] = ()


DEFENSES: dict[str, DefenseInfo] = {}


def register_defense(info: DefenseInfo) -> DefenseInfo:
    if info.name in DEFENSES and DEFENSES[info.name] != info:
        raise ValueError(f"defense {info.name!r} is registered twice with different metadata")
    DEFENSES[info.name] = info
    return info


def record_fallback(state: TaskState, reason: str, detail: str = "") -> None:
    """Record (and show in the transcript) that a defense took its documented fallback."""
    state.store.set(FALLBACK_KEY, {"reason": reason, "detail": detail})
    transcript().info({"defense_fallback": reason, "detail": detail})


def _record(state: TaskState, entry: dict[str, Any]) -> None:
    state.store.set(CALLS_KEY, [*(state.store.get(CALLS_KEY) or []), entry])


async def extra_call(
    state: TaskState,
    role: str | None,
    step: str,
    input: list[ChatMessage],
    config: GenerateConfig | None = None,
) -> ModelOutput:
    """Call the model bound to `role` (None: the target itself) for one defense step, and record it."""
    model = get_model() if role is None else get_model(role=role, required=True)
    output = await model.generate(input, config=config or GenerateConfig())
    usage = output.usage
    _record(
        state,
        {
            "step": step,
            "role": role or "target",
            "model": str(model),
            "input_tokens": usage.input_tokens if usage else 0,
            "output_tokens": usage.output_tokens if usage else 0,
        },
    )
    return output


def record_direct_call(
    state: TaskState, step: str, model: str, result: Any, input_tokens: int = 0, output_tokens: int = 0
) -> None:
    """Record a call that bypasses Inspect's model API (a side model, or white-box decoding) in the
    ledger and the transcript, so it is counted like any other extra call."""
    entry = {
        "step": step,
        "role": "direct",
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
    }
    _record(state, entry)
    transcript().info({"defense_step": step, "model": model, "result": result})


def role_bound(role: str) -> bool:
    """Whether the user bound `role` (get_model would otherwise silently use the target)."""
    return role in model_roles()


def set_system_message(state: TaskState, text: str) -> None:
    """Put `text` as the conversation's system message (replacing one already there)."""
    if state.messages and isinstance(state.messages[0], ChatMessageSystem):
        state.messages[0] = ChatMessageSystem(content=text)
    else:
        state.messages.insert(0, ChatMessageSystem(content=text))


def final_answer(state: TaskState, text: str, source: str) -> TaskState:
    """Make `text` the sample's answer, replacing the target's last answer if there is one."""
    message = ChatMessageAssistant(content=text, source="generate", metadata={"written_by": source})
    if state.messages and isinstance(state.messages[-1], ChatMessageAssistant):
        state.messages[-1] = message
    else:
        state.messages.append(message)
    state.output = ModelOutput.from_content(model=source, content=text)
    return state


@dataclass
class CallLedger:
    """Totals of a sample's recorded extra calls."""

    calls: int = 0
    tokens: int = 0
    steps: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, state: TaskState) -> "CallLedger":
        entries = state.store.get(CALLS_KEY) or []  # a default would be written into the store
        return cls(
            calls=len(entries),
            tokens=sum(e["input_tokens"] + e["output_tokens"] for e in entries),
            steps=[e["step"] for e in entries],
        )


def fill_prompt(name: str, version: str, **fields: str) -> str:
    """A versioned defense prompt from `prompts/`, with its fields filled in."""
    return load_prompt(name, version).format(**fields) if fields else load_prompt(name, version)


def user_images(state: TaskState) -> list[ContentImage]:
    """The images of the user's turn, in order (data URIs once the sample has started)."""
    content = state.user_prompt.content
    return [] if isinstance(content, str) else [c for c in content if isinstance(c, ContentImage)]


def replace_user_text(state: TaskState, text: str) -> None:
    """Give the user's turn new text and keep its images, images first."""
    state.user_prompt.content = [*user_images(state), ContentText(text=text)]
