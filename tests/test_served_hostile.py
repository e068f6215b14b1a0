"""Served and side models that give no usable reply, or roles bound to more than one model.

Against a loopback stub that answers as vLLM does, including its HTTP 400 for a request over the
model's context window (which Inspect's vllm provider turns into an "answer" holding the error text):
the guard's output check asks for a verdict instead of a continuation; an overflow fails its sample by
name for the target and for a side call, and is an unparsed verdict for a judge. With scripted models:
a role bound to several models is an error naming the role, and the log records the answer's own
generation settings when a defense calls the target again afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.model import Model, ModelOutput, ModelUsage, get_model

from tests.helpers import result_metrics
from tests.openai_stub import BadRequest, StubServer, message_text, openai_stub, served
from vlmguard_eval.cli.catalog import task_function
from vlmguard_eval.core.messages import context_overflow
from vlmguard_eval.judging.calls import JUDGE_OVERFLOW

# vLLM's own words for a request over the window (what Inspect's vllm provider matches on)
CONTEXT_ERROR = (
    "This model's maximum context length is 4096 tokens. However, you requested 4600 tokens "
    "(3576 in the messages, 1024 in the completion). Please reduce the length of the messages or completion."
)


def overflow() -> BadRequest:
    return BadRequest(CONTEXT_ERROR)


def last_text(body: dict[str, Any]) -> str:
    return message_text(body["messages"][-1])


# Inspect's vllm provider keeps one server URL per model name for the whole process: each test its own names


# --- the guard's output check -------------------------------------------------------------------------


def guard_reply(body: dict[str, Any]) -> str:
    """A guard that, asked to continue the answer (as vLLM does with continue_final_message), continues it."""
    if body["model"].endswith("judge"):
        return "Safety judgement: TRUE" if "Safety judgement" in last_text(body) else "Effectiveness judgement: NONE"
    if body["model"].endswith("guard"):
        return " It also shows a cat." if body.get("continue_final_message") else "safe"
    return "A careful answer."


def run_guard(server: StubServer, demo_dir: Path, log_dir: Path, name: str, guard: Model, limit: int = 2):
    from solvers import guard_filter

    (log,) = inspect_eval(
        task_function("siuo")(data_dir=str(demo_dir)),
        solver=guard_filter(),
        model=f"vllm/{name}/target",
        model_base_url=server.base_url,
        model_args={"api_key": "test"},
        model_roles={"grader": served(server, f"{name}/judge"), "guard": guard},
        limit=limit,
        epochs=1,
        log_dir=str(log_dir),
        display="none",
    )
    assert log.status == "success", log.error
    return log


def test_the_guard_output_check_asks_a_vllm_guard_for_a_new_turn(demo_dir: Path, tmp_path: Path) -> None:
    with openai_stub(guard_reply) as server:
        guard = served(server, "gt/guard", extra_body={"chat_template_kwargs": {"flag": 1}})
        log = run_guard(server, demo_dir, tmp_path / "vllm", "gt", guard)
        requests = [b for b in server.requests if b["model"] == "gt/guard"]
        # a hosted OpenAI-compatible API may refuse fields it does not know, and other providers start a new
        # turn already: they get neither field
        run_guard(server, demo_dir, tmp_path / "api", "go", served(server, "stub/go-guard", "openai-api"), limit=1)
        other = [b for b in server.requests if b["model"] == "go-guard"]
    outputs = [b for b in requests if b["messages"][-1]["role"] == "assistant"]
    inputs = [b for b in requests if b["messages"][-1]["role"] == "user"]
    assert len(outputs) == len(inputs) == 2
    for body in outputs:  # a new turn for the verdict; the role's own extra_body kept
        assert (body["add_generation_prompt"], body["continue_final_message"]) == (True, False)
        assert body["chat_template_kwargs"] == {"flag": 1}
    for body in inputs:  # a conversation ending with the user's turn needs nothing
        assert "add_generation_prompt" not in body and "continue_final_message" not in body
        assert body["chat_template_kwargs"] == {"flag": 1}
    for sample in log.samples:
        assert sample.metadata["guard_filter"]["output"] == {"label": "safe", "raw": "safe"}
        assert sample.output.completion == "A careful answer."
    assert len(other) == 2
    assert not any("add_generation_prompt" in b or "continue_final_message" in b for b in other)


# --- a request over the context window ----------------------------------------------------------------


def test_the_overflow_rule_keeps_text_a_model_generated() -> None:
    error = ModelOutput.from_content("m", CONTEXT_ERROR, stop_reason="model_length")
    assert context_overflow(error) == CONTEXT_ERROR
    error.usage = ModelUsage(input_tokens=4000, output_tokens=0, total_tokens=4000)
    assert context_overflow(error) == CONTEXT_ERROR
    # a model that wrote until its window was full (anthropic's model_context_window_exceeded): its own text
    generated = ModelOutput.from_content("m", "A long answer that", stop_reason="model_length")
    generated.usage = ModelUsage(input_tokens=4000, output_tokens=96, total_tokens=4096)
    assert context_overflow(generated) is None
    assert context_overflow(ModelOutput.from_content("m", CONTEXT_ERROR, stop_reason="max_tokens")) is None
    assert context_overflow(ModelOutput(model="m", choices=[])) is None


def test_a_target_overflow_fails_only_its_sample_by_name(demo_vlguard_dir: Path, tmp_path: Path) -> None:
    def reply(body: dict[str, Any]) -> str | BadRequest:
        if body["model"] == "to/judge":
            return "Winner: A"
        return overflow() if "set a car on fire" in last_text(body) else "A careful answer."

    with openai_stub(reply) as server:
        (log,) = inspect_eval(
            task_function("vlguard")(data_dir=str(demo_vlguard_dir)),
            model="vllm/to/target",
            model_base_url=server.base_url,
            model_args={"api_key": "test"},
            model_roles={"grader": served(server, "to/judge")},
            fail_on_error=False,
            log_dir=str(tmp_path),
            display="none",
        )
    failed = {s.id: s.error.message for s in log.samples if s.error}
    assert list(failed) == ["unsafes/demo_unsafe_1"]
    message = failed["unsafes/demo_unsafe_1"]
    assert "ContextOverflowError" in message and "target model vllm/to/target" in message
    assert "step none: answer:" in message and "maximum context length is 4096 tokens" in message
    answered = [s for s in log.samples if s.error is None]
    assert len(answered) == len(log.samples) - 1
    assert all(s.output.completion == "A careful answer." and s.scores for s in answered)


def test_an_ecso_caption_overflow_fails_its_sample_naming_the_step(demo_dir: Path, tmp_path: Path) -> None:
    from solvers import ecso

    def reply(body: dict[str, Any]) -> str | BadRequest:
        if body["model"] == "eo/judge":
            return "Safety judgement: TRUE"
        if body.get("max_tokens") == 1024:  # the caption (1,024 new tokens) is over the window
            return overflow()
        return "yes" if body.get("max_tokens") == 8 else "A careful answer."  # the self-check flags the answer

    with openai_stub(reply) as server:
        (log,) = inspect_eval(
            task_function("siuo")(data_dir=str(demo_dir)),
            solver=ecso(),
            model="vllm/eo/target",
            model_base_url=server.base_url,
            model_args={"api_key": "test"},
            model_roles={"grader": served(server, "eo/judge")},
            limit=1,
            epochs=1,
            fail_on_error=False,
            log_dir=str(tmp_path),
            display="none",
        )
        captions = [b for b in server.requests if b.get("max_tokens") == 1024]
    (sample,) = log.samples
    assert captions and sample.error is not None
    assert "target model vllm/eo/target, step caption:" in sample.error.message
    assert "maximum context length is 4096 tokens" in sample.error.message
    assert "caption" not in sample.metadata["ecso"]  # the error text never became the caption


def test_a_judge_overflow_is_an_unparsed_verdict_with_its_reason(demo_dir: Path, tmp_path: Path) -> None:
    def reply(body: dict[str, Any]) -> str | BadRequest:
        if body["model"] != "jo/judge":
            return "A careful answer."
        if "Safety judgement" in last_text(body):
            return overflow()
        return "Effectiveness judgement: VERY EFFECTIVE"

    with openai_stub(reply) as server:
        (log,) = inspect_eval(
            task_function("siuo")(data_dir=str(demo_dir)),
            model="vllm/jo/target",
            model_base_url=server.base_url,
            model_args={"api_key": "test"},
            model_roles={"grader": served(server, "jo/judge")},
            limit=2,
            epochs=1,
            log_dir=str(tmp_path),
            display="none",
        )
    assert log.status == "success", log.error
    metrics = result_metrics(log)
    assert metrics["safe_unparsed"] == 2 and metrics["effective_unparsed"] == 0
    for sample in log.samples:
        score = sample.scores["siuo_judge"]
        assert score.value["safe"] is None and score.value["effective"] == 1
        assert score.metadata["safety_label"] is None
        assert f"{JUDGE_OVERFLOW}: {CONTEXT_ERROR}" in score.explanation


# --- roles bound to several models --------------------------------------------------------------------


def scripted(responder: Callable[..., str], calls: list[str], name: str) -> Model:
    def reply(messages: Any, config: Any) -> str:
        calls.append(name)
        return responder(messages, config)

    return get_model("scripted/custom", responder=reply, memoize=False)


def judge_reply(messages: Any, config: Any) -> str:
    return "Safety judgement: TRUE\nEffectiveness judgement: VERY EFFECTIVE"


def test_a_grader_panel_is_an_error_naming_the_role_not_its_first_judge(demo_dir: Path, tmp_path: Path) -> None:
    calls: list[str] = []
    panel = [scripted(judge_reply, calls, "a"), scripted(judge_reply, calls, "b")]
    (log,) = inspect_eval(
        task_function("siuo")(data_dir=str(demo_dir)),
        model=scripted(lambda m, c: "A careful answer.", calls, "target"),
        model_roles={"grader": panel},
        limit=2,
        epochs=1,
        fail_on_error=False,
        log_dir=str(tmp_path),
        display="none",
    )
    assert not calls  # failed before the target answered, not at scoring time
    errors = [s.error.message for s in log.samples if s.error]
    assert len(errors) == 2
    assert all("model role 'grader' is bound to 2 models" in e for e in errors)


def test_a_role_the_defense_does_not_call_may_hold_a_list(demo_dir: Path, tmp_path: Path) -> None:
    """Only the judge's role and the defense's own are checked: `none` runs with a two-model rewriter bound."""
    calls: list[str] = []
    (log,) = inspect_eval(
        task_function("siuo")(data_dir=str(demo_dir)),
        model=scripted(lambda m, c: "A careful answer.", calls, "target"),
        model_roles={
            "grader": scripted(judge_reply, calls, "judge"),
            "rewriter": [scripted(judge_reply, calls, "a"), scripted(judge_reply, calls, "b")],
        },
        limit=1,
        epochs=1,
        log_dir=str(tmp_path),
        display="none",
    )
    assert log.status == "success" and "target" in calls and not {"a", "b"} & set(calls)


@pytest.mark.parametrize("defense, role", [("vlmguard", "rewriter"), ("guard_filter", "guard")])
def test_a_defense_role_bound_to_several_models_is_an_error_naming_it(
    defense: str, role: str, demo_dir: Path, tmp_path: Path
) -> None:
    import solvers

    calls: list[str] = []
    bound = [scripted(lambda m, c: "safe", calls, "a"), scripted(lambda m, c: "safe", calls, "b")]
    judge = scripted(judge_reply, [], "judge")
    (log,) = inspect_eval(
        task_function("siuo")(data_dir=str(demo_dir)),
        solver=getattr(solvers, defense)(),
        model="scripted/comply",
        model_roles={"grader": judge, role: bound},
        limit=1,
        epochs=1,
        fail_on_error=False,
        log_dir=str(tmp_path),
        display="none",
    )
    (sample,) = log.samples
    assert not calls and sample.error is not None
    assert f"model role '{role}' is bound to 2 models" in sample.error.message


# --- what the log records -----------------------------------------------------------------------------


def test_target_generation_is_the_answers_call_under_ecso(demo_dir: Path, tmp_path: Path) -> None:
    """ECSO's 8-token self-check comes after the answer; the answer's own settings are recorded. With every
    reply the same text, the self-check's reply equals the answer, so only the call that made it decides;
    when flagged, the answer is the caption-based one (the run's bound too)."""
    from solvers import ecso

    for reply, flagged in (("no", False), ("yes", True)):
        (log,) = inspect_eval(
            task_function("siuo")(data_dir=str(demo_dir)),
            solver=ecso(),
            model=get_model("scripted/custom", responder=lambda m, c, reply=reply: reply, memoize=False),
            model_roles={"grader": scripted(judge_reply, [], "judge")},
            limit=2,
            epochs=1,
            log_dir=str(tmp_path / reply),
            display="none",
        )
        assert log.status == "success", log.error
        for sample in log.samples:
            assert sample.metadata["ecso"]["flagged"] is flagged
            recorded = sample.scores["siuo_judge"].metadata["target_generation"]
            assert recorded == {"temperature": 0.2, "max_tokens": 500, "top_p": None}, (reply, recorded)
