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
from inspect_ai.model import ChatMessage, ContentImage, ContentText, GenerateConfig, ModelOutput, get_model
from inspect_ai.solver import TaskState

CALLS_KEY = "defense_calls"
NAME_KEY = "defense"
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


DEFENSES: dict[str, DefenseInfo] = {}


def register_defense(info: DefenseInfo) -> DefenseInfo:
    if info.name in DEFENSES and DEFENSES[info.name] != info:
        raise ValueError(f"defense {info.name!r} is registered twice with different metadata")
    DEFENSES[info.name] = info
    return info


def begin(state: TaskState, info: DefenseInfo) -> None:
    """Mark the sample with the defense that handles it and start its call ledger."""
    state.store.set(NAME_KEY, info.name)
    state.store.set(CALLS_KEY, [])


def record_fallback(state: TaskState, reason: str, detail: str = "") -> None:
    """Record (and show in the transcript) that a defense took its documented fallback."""
    state.store.set(FALLBACK_KEY, {"reason": reason, "detail": detail})
    transcript().info({"defense_fallback": reason, "detail": detail})


async def extra_call(
    state: TaskState,
    role: str,
    step: str,
    input: list[ChatMessage],
    config: GenerateConfig | None = None,
) -> ModelOutput:
    """Call the model bound to `role` for one step of a defense, and record its cost."""
    model = get_model(role=role, required=True)
    output = await model.generate(input, config=config or GenerateConfig())
    usage = output.usage
    entry: dict[str, Any] = {
        "step": step,
        "role": role,
        "model": str(model),
        "input_tokens": usage.input_tokens if usage else 0,
        "output_tokens": usage.output_tokens if usage else 0,
    }
    state.store.set(CALLS_KEY, [*state.store.get(CALLS_KEY, []), entry])
    return output


@dataclass
class CallLedger:
    """Totals of a sample's recorded extra calls."""

    calls: int = 0
    tokens: int = 0
    steps: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, state: TaskState) -> "CallLedger":
        entries = state.store.get(CALLS_KEY, [])
        return cls(
            calls=len(entries),
            tokens=sum(e["input_tokens"] + e["output_tokens"] for e in entries),
            steps=[e["step"] for e in entries],
        )


def user_images(state: TaskState) -> list[ContentImage]:
    """The images of the user's turn, in order (data URIs once the sample has started)."""
    content = state.user_prompt.content
    return [] if isinstance(content, str) else [c for c in content if isinstance(c, ContentImage)]


def replace_user_text(state: TaskState, text: str) -> None:
    """Give the user's turn new text and keep its images, images first."""
    state.user_prompt.content = [*user_images(state), ContentText(text=text)]
