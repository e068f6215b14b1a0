"""The ledger of a defense's extra model calls, kept in the sample store.

A defense makes its extra calls through `extra_call` (or records a side-model pass with
`record_direct_call`); each call's role, model and tokens go into the store. The `defense_cost`
scorer turns those records into per-sample cost figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inspect_ai.log import transcript
from inspect_ai.model import (
    ChatMessage,
    GenerateConfig,
    ModelOutput,
    get_model,
)
from inspect_ai.solver import TaskState

from vlmguard_eval.core.messages import ContextOverflowError, context_overflow
from vlmguard_eval.core.messages import user_turn as user_turn  # re-exported: defenses build their extra calls with it
from vlmguard_eval.core.options import role_config
from vlmguard_eval.core.roles import role_model

# the sample store's ledger of extra calls; a defense that makes none writes nothing (the log's plan
# already names the defense that ran)
CALLS_KEY = "defense_calls"
FALLBACK_KEY = "defense_fallback"


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
    """Call the model bound to `role` (None: the target itself) for one defense step, and record it.

    A reply that is no reply fails the sample by name: no choices, or a context-window overflow (whose text
    is the server's error message, `core.messages.context_overflow`), never passed on as the step's output."""
    model = get_model() if role is None else role_model(role)
    output = await model.generate(input, config=role_config(model, config or GenerateConfig()))
    if not output.choices:
        raise RuntimeError(f"{role or 'target'} model {model} returned no choices for step {step!r}")
    overflow = context_overflow(output)
    if overflow is not None:
        raise ContextOverflowError(role or "target", step, str(model), overflow)
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
