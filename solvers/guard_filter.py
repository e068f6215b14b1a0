"""Guard-model filters (the Llama Guard 3 Vision / 4 deployment pattern): a guard model (role
`guard`) classifies the user's turn before the target answers, and/or the answer after; a flagged
turn is replaced by a fixed refusal.

`prompt=native` sends the conversation as is, for guards whose chat template frames the task
(Llama Guard); `prompt=instructed` wraps it in our classification prompt, for general models, each
message fenced between marker lines with a per-call tag absent from every message (as the judges'
inputs are), so an answer cannot pose as the end of the conversation or as another turn.
A guard reply outside {safe, unsafe} takes the `on_unparsed` outcome: `refuse` (fail closed, the
default) or `error`; either way it is recorded, never a silent pass.

Each guard call is greedy and bounded by GUARD_MAX_TOKENS; the role's own `temperature` and
`max_tokens` (--model-role "guard={model: M, max_tokens: N}") replace either.

The native output check ends its conversation with the assistant's answer. Inspect's `vllm` and `sglang`
providers take a conversation ending with an assistant turn as one to continue (they send
add_generation_prompt=False, continue_final_message=True unless the request's extra_body sets either), so
a Llama Guard would go on writing the answer instead of classifying it. That check asks for a new turn
explicitly (`new_turn_config`).
"""

from inspect_ai.model import ChatMessage, GenerateConfig, Model, ModelName
from inspect_ai.solver import Generate, Solver, TaskState

from vlmguard_eval.core.messages import user_images, user_turn
from vlmguard_eval.core.options import role_defaults
from vlmguard_eval.core.roles import role_model
from vlmguard_eval.defense.ledger import extra_call, record_fallback
from vlmguard_eval.defense.registry import defense
from vlmguard_eval.defense.steps import REFUSAL_TEXT, fill_prompt, final_answer
from vlmguard_eval.judging.prompts import fence, fence_tag

MODES = ("input", "output", "both")
# A verdict is one line ("safe", or "unsafe" and a line of categories: Llama Guard writes "unsafe\nS1,S10",
# under 10 tokens) and only the first line is read (`parse_guard`); 64 leaves an instructed general model
# room for its category line without paying for an essay.
GUARD_MAX_TOKENS = 64
# the providers that continue a final assistant turn unless told otherwise (inspect_ai/model/_providers/vllm.py
# and sglang.py, `generate`, 0.3.285); others render a new turn already (the local hfvlm provider always adds
# the generation prompt), and a hosted API such as openai's may refuse request fields it does not know
CONTINUING_PROVIDERS = ("vllm", "sglang")


class GuardOutputError(RuntimeError):
    """The guard's reply is outside its label set and on_unparsed=error."""


def parse_guard(reply: str) -> str | None:
    """'safe' or 'unsafe' from the reply's first non-empty line; None for anything else."""
    lines = [line.strip().lower() for line in reply.splitlines() if line.strip()]
    return lines[0] if lines and lines[0] in ("safe", "unsafe") else None


def new_turn_config(guard: Model, conversation: list[ChatMessage]) -> GenerateConfig:
    """Settings that make a continuing provider answer a conversation ending with an assistant turn in a new
    turn (the guard's verdict), keeping the role's own extra_body; as Inspect itself does, a role whose
    extra_body already sets either key is left as the user set it."""
    if not conversation or conversation[-1].role != "assistant" or ModelName(guard).api not in CONTINUING_PROVIDERS:
        return GenerateConfig()
    body = dict(guard.config.extra_body or {})
    if "add_generation_prompt" not in body and "continue_final_message" not in body:
        body.update(add_generation_prompt=True, continue_final_message=False)
    return GenerateConfig(extra_body=body)


def _instructed(state: TaskState, conversation: list[ChatMessage], target: str, version: str) -> list[ChatMessage]:
    if version == "v1":  # the first prompt, kept as it rendered: unfenced `ROLE: text` lines
        text = "\n".join(f"{m.role.upper()}: {m.text}" for m in conversation)
    else:
        tag = fence_tag(m.text for m in conversation)
        text = "\n".join(fence(f"{m.role} message", m.text, tag) for m in conversation)
    prompt = fill_prompt("guard_instructed", version, target=target, conversation=text)
    return user_turn(user_images(state), prompt)


@defense(
    summary="Guard model on the input and/or output; refuse when flagged.",
    extra_calls="1 per checked side (2 with mode=both; 1 if the input is blocked)",
    roles=("guard",),
    reference="Llama Guard 3 Vision (Meta, 2024) deployment pattern",
    colour="tab:cyan",
)
def guard_filter(
    mode: str = "both", prompt: str = "native", on_unparsed: str = "refuse", version: str = "v2"
) -> Solver:
    if mode not in MODES or prompt not in ("native", "instructed") or on_unparsed not in ("refuse", "error"):
        raise ValueError("guard_filter: mode is input|output|both, prompt native|instructed, on_unparsed refuse|error")

    async def check(state: TaskState, side: str, conversation: list[ChatMessage]) -> bool:
        """True when the guard lets this side through."""
        target = "user's last message" if side == "input" else "assistant's last message"
        messages = conversation if prompt == "native" else _instructed(state, conversation, target, version)
        guard = role_model("guard")
        config = role_defaults(guard, GUARD_MAX_TOKENS, temperature=0.0).merge(new_turn_config(guard, messages))
        reply = await extra_call(state, "guard", f"guard-{side}", messages, config)
        label = parse_guard(reply.completion)
        state.metadata.setdefault("guard_filter", {})[side] = {"label": label, "raw": reply.completion}
        if label is None:
            if on_unparsed == "error":
                raise GuardOutputError(f"guard reply outside {{safe, unsafe}}: {reply.completion[:200]!r}")
            record_fallback(state, "guard_unparsed", reply.completion[:200])
            return False
        return label == "safe"

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        if mode in ("input", "both") and not await check(state, "input", [state.user_prompt]):
            return final_answer(state, REFUSAL_TEXT, "guard_filter (input blocked)")
        state = await generate(state)
        if mode in ("output", "both") and not await check(state, "output", [state.user_prompt, state.messages[-1]]):
            return final_answer(state, REFUSAL_TEXT, "guard_filter (output blocked)")
        return state

    return solve
