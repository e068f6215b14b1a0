"""Training data for the rewriter: the synthesis stages and the checks that keep only clean examples.

The VLMGuard-R1 recipe (arXiv 2504.12661): from (image, prompt, safe response, unsafe response)
tuples, a teacher VLM (model role `teacher`) runs 1. hindsight analysis (what made the unsafe answer
unsafe), 2. multimodal causal analysis (text, image, together: a risk report), 3. prompt
optimization (the refined prompt). The SFT target is the rewriter's own output format
(`rewriter.RewriterOutput`), so training and inference share one definition. Templates are ours:
`prompts/synth_*.v1.txt`.

Before those stages, where a source lacks them: the teacher writes the safe reference answer
(VLSBench has none), the `responder` role writes the unsafe one (VLGuard, VLSBench). Then the unsafe
answer is checked before any hindsight is drawn from it: a refusal (VLGuard's published keyword
list) or an answer the `checker` role judges SAFE is dropped, by reason. A teacher reply that copies
our instructions back (a template's own sentences, its placeholders or fences) is dropped as
`echoed_instructions`. Every drop is stored as {stage, reason, detail} and counted in the manifest.
"""

from __future__ import annotations

import re
from functools import cache

from inspect_ai.model import GenerateConfig
from inspect_ai.solver import Generate, Solver, TaskState, solver

from vlmguard_eval.core.messages import user_images, user_turn
from vlmguard_eval.core.options import role_defaults, role_max_tokens
from vlmguard_eval.core.prompts import load_prompt
from vlmguard_eval.core.roles import role_model
from vlmguard_eval.defense.ledger import extra_call
from vlmguard_eval.defense.steps import fill_prompt
from vlmguard_eval.judging.refusal import is_refusal
from vlmguard_eval.judging.verdicts import parse_safety

SYNTH_TEMPLATE_VERSION = "v1"
TEACHER_ROLE = "teacher"
RESPONDER_ROLE = "responder"  # writes the unsafe response when a source has none
CHECKER_ROLE = "checker"  # judges that an unsafe response is actually unsafe
# every side call is bounded; a role's own config sets others (--model-role "teacher={model: M, max_tokens: N}").
# A stage's output is one part of the rewriter's (whose bound is 1,024); the checker gives a reason and a verdict
TEACHER_MAX_TOKENS = 1024
RESPONDER_MAX_TOKENS = 1024
CHECKER_MAX_TOKENS = 512
STAGE_KEY = "synthesis"
BENIGN_HINDSIGHT = "The request is benign: a direct, helpful answer carries no real risk here."

_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
_FENCE = re.compile(r"\[(?:END )?[A-Z][A-Z ]+\]")
# a shorter piece is ordinary prose a good reply may use: the optimize template's own "rather than a blanket
# refusal" (5 words, the tail of a sentence split at its parenthesis) is what a refined prompt should do
_MIN_PHRASE_WORDS = 6


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@cache
def instruction_phrases(template: str) -> tuple[frozenset[str], frozenset[str]]:
    """A template's own sentences (6+ words, normalised) and its fences/placeholders: what a reply
    that copies our instructions back contains."""
    text = load_prompt(template, SYNTH_TEMPLATE_VERSION)
    markers = frozenset(_FENCE.findall(text) + _PLACEHOLDER.findall(text))
    stripped = _FENCE.sub("\n", _PLACEHOLDER.sub("\n", text))
    phrases = set()
    for line in stripped.splitlines():
        for sentence in re.split(r"(?<=[.:?!])\s+|\(|\)", line):
            normal = _normal(sentence)
            if len(normal.split()) >= _MIN_PHRASE_WORDS:
                phrases.add(normal)
    return frozenset(phrases), markers


def echoed_instruction(reply: str, template: str) -> str | None:
    """The piece of our instructions that `reply` copies back, or None."""
    phrases, markers = instruction_phrases(template)
    for marker in markers:
        if marker in reply:
            return marker
    normal = _normal(reply)
    return next((p for p in sorted(phrases) if p in normal), None)


def tagged(text: str, tag: str) -> str | None:
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL | re.IGNORECASE)
    return found[0].strip() if len(found) == 1 and found[0].strip() else None


def stage_failure(state: TaskState) -> dict[str, str] | None:
    """Why an earlier stage dropped this sample ({stage, reason, detail}), or None."""
    return (state.store.get(STAGE_KEY) or {}).get("failed")


def drop(state: TaskState, stage: str, reason: str, detail: str = "") -> None:
    record = state.store.get(STAGE_KEY) or {}
    record["failed"] = {"stage": stage, "reason": reason, "detail": detail[:300]}
    state.store.set(STAGE_KEY, record)


def _keep_reply(state: TaskState, stage: str, reply: str) -> None:
    record = state.store.get(STAGE_KEY) or {}
    record[stage] = reply
    state.store.set(STAGE_KEY, record)


async def _run_stage(
    state: TaskState, stage: str, template: str, tag: str, fields: dict[str, str], images: bool = True
) -> str | None:
    """One teacher call; its tagged output, or None (and the sample dropped at this stage)."""
    prompt = fill_prompt(template, SYNTH_TEMPLATE_VERSION, **fields)
    reply = await extra_call(
        state,
        TEACHER_ROLE,
        stage,
        user_turn(user_images(state) if images else [], prompt),
        role_defaults(role_model(TEACHER_ROLE), TEACHER_MAX_TOKENS, temperature=0.0),
    )
    _keep_reply(state, stage, reply.completion)
    result = tagged(reply.completion, tag)
    if result is None:
        drop(state, stage, "malformed", f"no single non-empty <{tag}> block")
        return None
    echoed = echoed_instruction(result, template)
    if echoed is not None:
        drop(state, stage, "echoed_instructions", f"the reply copies our instructions back: {echoed!r}")
        return None
    return result


@solver
def safe_response() -> Solver:
    """Stage 0a: when a safety example has no safe reference answer (VLSBench), the teacher writes one."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        meta = state.metadata
        if meta["kind"] == "safety" and not meta.get("safe_response"):
            meta["safe_response"] = await _run_stage(
                state, "safe-response", "synth_safe_response", "safe_answer", {"prompt": meta["prompt"]}
            )
        return state

    return solve


@solver
def unsafe_response() -> Solver:
    """Stage 0b: when a safety example has no unsafe response, the `responder` role writes one."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        meta = state.metadata
        if stage_failure(state) is None and meta["kind"] == "safety" and not meta.get("unsafe_response"):
            responder = role_model(RESPONDER_ROLE)
            bound = GenerateConfig(max_tokens=role_max_tokens(responder, RESPONDER_MAX_TOKENS))  # its own sampling
            reply = await extra_call(
                state, RESPONDER_ROLE, "unsafe-response", user_turn(user_images(state), meta["prompt"]), bound
            )
            meta["unsafe_response"] = reply.completion
            meta["unsafe_response_written"] = True
        return state

    return solve


@solver
def unsafe_check(check: str = "all") -> Solver:
    """Stage 0c: the unsafe answer must be unsafe before hindsight is drawn from it. `check`: `all`
    (also the source's own, e.g. SPA-VL's `rejected`, which is only the less preferred answer) or
    `written` (only answers the `responder` wrote)."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        meta = state.metadata
        if stage_failure(state) is not None or meta["kind"] != "safety":
            return state
        if check == "written" and not meta.get("unsafe_response_written"):
            return state
        response = meta["unsafe_response"] or ""
        if not response.strip():
            drop(state, "unsafe-check", "empty_response")
            return state
        if is_refusal(response):
            drop(state, "unsafe-check", "refusal", "the unsafe response matches a refusal keyword")
            return state
        prompt = fill_prompt("synth_unsafe_check", SYNTH_TEMPLATE_VERSION, prompt=meta["prompt"], response=response)
        checker = role_defaults(role_model(CHECKER_ROLE), CHECKER_MAX_TOKENS, temperature=0.0)
        reply = await extra_call(state, CHECKER_ROLE, "unsafe-check", user_turn(user_images(state), prompt), checker)
        _keep_reply(state, "unsafe-check", reply.completion)
        verdict = parse_safety(reply.completion)
        if verdict is None:
            drop(state, "unsafe-check", "unparsed_verdict", reply.completion[-200:])
        elif verdict == "SAFE":
            drop(state, "unsafe-check", "judged_safe")
        return state

    return solve


@solver
def hindsight_analysis() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        meta = state.metadata
        if stage_failure(state) is not None:
            return state
        if meta["kind"] == "helpfulness":
            meta["hindsight"] = BENIGN_HINDSIGHT
            return state
        fields = {
            "prompt": meta["prompt"],
            "safe_response": meta["safe_response"],
            "unsafe_response": meta["unsafe_response"],
        }
        meta["hindsight"] = await _run_stage(state, "hindsight", "synth_hindsight", "hindsight", fields)
        return state

    return solve


@solver
def causal_analysis() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        if stage_failure(state) is None:
            fields = {"prompt": state.metadata["prompt"], "hindsight": state.metadata["hindsight"]}
            state.metadata["risk_report"] = await _run_stage(state, "causal", "synth_causal", "risk_report", fields)
        return state

    return solve


@solver
def prompt_optimization() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        if stage_failure(state) is None:
            fields = {"prompt": state.metadata["prompt"], "risk_report": state.metadata["risk_report"]}
            state.metadata["refined_prompt"] = await _run_stage(
                state, "optimize", "synth_optimize", "refined_prompt", fields
            )
        return state

    return solve


def synthesis_solvers(check: str = "all") -> list[Solver]:
    """The stages in order."""
    return [
        safe_response(),
        unsafe_response(),
        unsafe_check(check),
        hindsight_analysis(),
        causal_analysis(),
        prompt_optimization(),
    ]
