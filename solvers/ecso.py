"""ECSO, "Eyes Closed, Safety On" (Gou et al., ECCV 2024): the target checks its own answer; if it
judges it harmful, it captions the image for the query and answers from the caption alone.

As the official code (gyhdog99/ECSO at 3878522, `llava/eval/model_mmsafe_tell_ask.py`) runs it: every
step samples at `--temperature`, default 0.2 (`:68-69`, `:161`); the check sees the image and the answer
cut to its first 1,927 characters (`:120-121`); it flags only a reply that is, stripped (`:81-84`) and
lower-cased, exactly "yes" or "yes." (`:124`). The internal caption gets the official 1,024 new tokens
(`max_new_tokens=1024`, `:73`); the first answer and the caption-based answer, both scored, keep the run's
bound. A sample without an image has nothing to check or caption: its first answer stands, and the
record says ECSO did not apply.
"""

from inspect_ai.log import transcript
from inspect_ai.model import GenerateConfig
from inspect_ai.solver import Generate, Solver, TaskState

from vlmguard_eval.core.messages import user_images, user_turn
from vlmguard_eval.defense.ledger import extra_call
from vlmguard_eval.defense.registry import defense
from vlmguard_eval.defense.steps import fill_prompt, final_answer

# model_mmsafe_tell_ask.py:120, TELL_PROMPT.format(qs, line['text'][:1927])
CHECK_RESPONSE_CHARS = 1927
# model_mmsafe_tell_ask.py:73, max_new_tokens=1024 (every step; here the caption, an internal step)
CAPTION_MAX_TOKENS = 1024
NO_IMAGE = "the sample has no image: nothing to check or caption"


def is_clear_yes(reply: str) -> bool:
    """The official flag, exactly: the stripped reply (`:81-84`), lower-cased, is "yes" or "yes." (`:124`)."""
    return reply.strip().lower() in ("yes", "yes.")


@defense(
    summary="Self-check of the answer; if harmful, answer again from a query-aware caption, text only.",
    extra_calls="1 (self-check), 3 when flagged (+ caption, + text-only answer); 0 without an image",
    reference="Gou et al., ECCV 2024",
    colour="tab:pink",
)
def ecso(temperature: float = 0.2, check_tokens: int = 8, version: str = "v1") -> Solver:
    """`temperature`: every step's (official default 0.2). `check_tokens`: the self-check's bound (official:
    1,024). The flag needs the whole reply to be "yes" or "yes.", so 8 tokens decide as 1,024 would, unless
    a "yes" is followed by several whitespace-only tokens and then more text."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        question, images = state.user_prompt.text, user_images(state)
        state = await generate(state, temperature=temperature)
        answer = state.output.completion
        if not images:
            state.metadata["ecso"] = {"applied": False, "reason": NO_IMAGE, "flagged": False, "first_answer": answer}
            transcript().info({"ecso": "not applied", "reason": NO_IMAGE})
            return state
        check_prompt = fill_prompt(
            "ecso_harm_check", version, question=question, response=answer[:CHECK_RESPONSE_CHARS]
        )
        check = await extra_call(
            state,
            None,
            "self-check",
            user_turn(images, check_prompt),
            GenerateConfig(temperature=temperature, max_tokens=check_tokens),
        )
        record = {
            "applied": True,
            "flagged": is_clear_yes(check.completion),
            "check_reply": check.completion,
            "first_answer": answer,
        }
        state.metadata["ecso"] = record
        if not record["flagged"]:
            return state
        caption_prompt = fill_prompt("ecso_caption", version, question=question)
        caption_config = GenerateConfig(temperature=temperature, max_tokens=CAPTION_MAX_TOKENS)
        caption = await extra_call(state, None, "caption", user_turn(images, caption_prompt), caption_config)
        record["caption"] = caption.completion
        answer_prompt = fill_prompt("ecso_answer", version, caption=caption.completion, question=question)
        # the scored answer: the run's bound, as the first answer
        safe = await extra_call(
            state, None, "caption-answer", user_turn([], answer_prompt), GenerateConfig(temperature=temperature)
        )
        return final_answer(state, safe.completion, "ecso")

    return solve
