"""Steps defenses share: setting the system message, replacing the user's text, writing the answer."""

from __future__ import annotations

from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ContentText, ModelOutput, model_roles
from inspect_ai.solver import TaskState

from vlmguard_eval.core.messages import user_images
from vlmguard_eval.core.prompts import load_prompt

# the fixed answer of the guard filters when they block (MLLM-Protector without a detoxifier gives its own
# published answer, FIXED_REFUSAL in solvers/mllm_protector.py)
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."


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


def fill_prompt(name: str, version: str, **fields: str) -> str:
    """A versioned defense prompt from `prompts/`, with its fields filled in."""
    return load_prompt(name, version).format(**fields) if fields else load_prompt(name, version)


def replace_user_text(state: TaskState, text: str) -> None:
    """Give the user's turn new text and keep its images, images first."""
    state.user_prompt.content = [*user_images(state), ContentText(text=text)]
