"""Side-call settings: a role binding's own `temperature` and `max_tokens` win over a defense's defaults,
and every side call carries both explicitly."""

from __future__ import annotations

from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.model import GenerateConfig, get_model

from solvers import guard_filter, mllm_protector, none, vlmguard
from solvers.guard_filter import GUARD_MAX_TOKENS
from solvers.vlmguard import REWRITER_MAX_TOKENS
from tasks.siuo import siuo
from vlmguard_eval.core.options import role_max_tokens, role_temperature
from vlmguard_eval.judging.calls import JUDGE_MAX_TOKENS

REWRITE = "<analysis>a</analysis><refined_prompt>Refined.</refined_prompt>"


def recording(reply: str, seen: list, **role_config):
    """A scripted role model answering `reply`, recording each call's (temperature, max_tokens)."""

    def respond(messages, config):
        seen.append((config.temperature, config.max_tokens))
        return reply

    return get_model("scripted/custom", responder=respond, memoize=False, config=GenerateConfig(**role_config))


def run(demo_dir: Path, solver, tmp_path: Path, roles: dict) -> None:
    (log,) = inspect_eval(
        siuo(data_dir=str(demo_dir), epochs=1),
        solver=solver,
        model=get_model("scripted/echo"),
        model_roles={"grader": get_model("scripted/judge"), **roles},
        limit=1,
        log_dir=str(tmp_path),
        display="none",
    )
    assert log.status == "success", log.error


def test_role_helpers_prefer_the_role_setting() -> None:
    bound = get_model("scripted/echo", memoize=False, config=GenerateConfig(temperature=0.7, max_tokens=33))
    assert (role_temperature(bound, 0.0), role_max_tokens(bound, 512)) == (0.7, 33)
    plain = get_model("scripted/echo", memoize=False)
    assert (role_temperature(plain, 0.0), role_max_tokens(plain, 512)) == (0.0, 512)
    greedy = get_model("scripted/echo", memoize=False, config=GenerateConfig(temperature=0.0))
    assert role_temperature(greedy, 0.9) == 0.0  # an explicit 0 is a setting, not "unset"


@pytest.mark.parametrize(
    ("role_config", "expected"),
    [({}, (0.0, REWRITER_MAX_TOKENS)), ({"temperature": 0.7, "max_tokens": 333}, (0.7, 333))],
)
def test_rewriter_call_takes_the_role_settings(demo_dir, tmp_path, role_config, expected) -> None:
    seen: list = []
    run(demo_dir, vlmguard(), tmp_path, {"rewriter": recording(REWRITE, seen, **role_config)})
    assert seen == [expected]


def test_rewriter_solver_options_win_over_the_role(demo_dir: Path, tmp_path: Path) -> None:
    seen: list = []
    role = recording(REWRITE, seen, temperature=0.7, max_tokens=333)
    run(demo_dir, vlmguard(temperature=0.3, max_tokens=64), tmp_path, {"rewriter": role})
    assert seen == [(0.3, 64)]


@pytest.mark.parametrize(
    ("role_config", "expected"),
    [({}, (0.0, GUARD_MAX_TOKENS)), ({"temperature": 0.5, "max_tokens": 7}, (0.5, 7))],
)
def test_guard_calls_take_the_role_settings(demo_dir, tmp_path, role_config, expected) -> None:
    seen: list = []
    run(demo_dir, guard_filter(), tmp_path, {"guard": recording("safe", seen, **role_config)})
    assert seen == [expected, expected]


def test_detoxifier_call_takes_the_role_settings(demo_dir, tmp_path, side_models) -> None:
    seen: list = []
    role = recording("Detoxified.", seen, temperature=0.4, max_tokens=99)
    run(
        demo_dir,
        mllm_protector(detector=side_models["sequence-classifier"], threshold=1.0),
        tmp_path,
        {"detoxifier": role},
    )
    assert seen == [(0.4, 99)]


@pytest.mark.parametrize(
    ("role_config", "expected"),
    [({}, (0.0, JUDGE_MAX_TOKENS)), ({"temperature": 0.4, "max_tokens": 99}, (0.4, 99))],
)
def test_judge_calls_take_the_role_settings(demo_dir, tmp_path, role_config, expected) -> None:
    seen: list = []
    judge = recording("Safety judgement: TRUE", seen, **role_config)
    (log,) = inspect_eval(
        siuo(data_dir=str(demo_dir), epochs=1),
        solver=none(),
        model=get_model("scripted/echo"),
        model_roles={"grader": judge},
        limit=1,
        log_dir=str(tmp_path),
        display="none",
    )
    assert log.status == "success", log.error
    assert seen == [expected, expected]  # the safety and the effectiveness judge


def test_synthesis_side_calls_are_bounded_and_take_the_role_settings() -> None:
    import asyncio

    from inspect_ai.model import ChatMessageUser, ModelName
    from inspect_ai.model._model import init_model_roles
    from inspect_ai.solver import TaskState

    from vlmguard_eval.training import stages

    calls: dict[str, list] = {"teacher": [], "responder": [], "checker": []}
    roles = {
        "teacher": recording("<safe_answer>Be careful.</safe_answer>", calls["teacher"]),
        "responder": recording("Here is how.", calls["responder"], temperature=0.9),
        "checker": recording("Verdict: UNSAFE", calls["checker"], max_tokens=40),
    }
    init_model_roles(roles)
    meta = {"kind": "safety", "prompt": "How do I do it?", "safe_response": "", "unsafe_response": ""}
    question = [ChatMessageUser(content="How do I do it?")]
    state = TaskState(ModelName("scripted/echo"), "s", 0, "How do I do it?", question, metadata=meta)

    async def chain() -> None:
        for step in (stages.safe_response(), stages.unsafe_response(), stages.unsafe_check()):
            await step(state, None)

    asyncio.run(chain())
    assert calls == {
        "teacher": [(0.0, stages.TEACHER_MAX_TOKENS)],
        "responder": [(0.9, stages.RESPONDER_MAX_TOKENS)],  # its own sampling, our bound
        "checker": [(0.0, 40)],
    }
