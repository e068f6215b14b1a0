"""Every registered defense, on every task, with the tiny local VLM and tiny side models.

A new defense gets these checks by registering its DefenseInfo: it must finish, keep its ledger,
declare its metadata, work as `--solver NAME` (replacing the task's own chain), and let the target
answer within the run's max tokens (the task's own, or `--max-tokens`), as the benchmark prescribes.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.event import ModelEvent
from inspect_ai.model import GenerateConfig, Model, get_model
from inspect_ai.solver import SolverSpec

import solvers  # noqa: F401  (registers every defense)
from vlmguard_eval.defense.registry import DEFENSES

REPO = Path(__file__).resolve().parents[1]
JUDGE_ROLE = "grader"  # every task's judge
CLI_MAX_TOKENS = 6  # `--max-tokens` of the runs below, short for the tiny VLM
# tasks run on their own bound instead (no --max-tokens): SIUO MCQA's official 5 new tokens
TASK_MAX_TOKENS = {"siuo_mcqa": 5}
TASKS = ["siuo", "siuo_mcqa", "mm_safetybench", "vlguard", "figstep"]
# a role binding's own max_tokens replaces each role's default (vlmguard_eval.core.options.role_max_tokens); it
# differs from both bounds above, so a role's call can never pass for the target's
ROLE_CONFIG = GenerateConfig(max_tokens=4)


@pytest.fixture(scope="module")
def task_specs(demo_dir: Path, demo_mmsb_dir: Path, demo_vlguard_dir: Path) -> dict[str, tuple[str, dict]]:
    return {
        "siuo": (f"{REPO}/tasks/siuo.py@siuo", {"data_dir": str(demo_dir), "epochs": 1}),
        "siuo_mcqa": (f"{REPO}/tasks/siuo.py@siuo", {"data_dir": str(demo_dir), "format": "mcqa"}),
        "mm_safetybench": (
            f"{REPO}/tasks/mm_safetybench.py@mm_safetybench",
            {"data_dir": str(demo_mmsb_dir), "scenario": ["01-Illegal_Activitiy"], "image_type": "TYPO"},
        ),
        "vlguard": (f"{REPO}/tasks/vlguard.py@vlguard", {"data_dir": str(demo_vlguard_dir)}),
    }


def figstep_spec(shared_data: Path) -> tuple[str, dict]:
    """FigStep on the shared SafeBench-Tiny, images rendered in the stand-in font (FreeMonoBold is not shipped)."""
    return f"{REPO}/tasks/figstep.py@figstep", {
        "data_dir": str(shared_data / "figstep"),
        "subset": "tiny",
        "font": "dejavu",
    }


def test_every_defense_declares_its_metadata() -> None:
    assert {
        "none",
        "self_reminder",
        "safety_prompt",
        "figstep_prompt",
        "adashield_s",
        "ecso",
        "mllm_protector",
        "eta",
        "guard_filter",
        "vlmguard",
    } <= set(DEFENSES)
    for info in DEFENSES.values():
        assert info.summary and info.extra_calls, info.name
        assert all(kind in ("sequence-classifier", "armorm", "clip", "causal-lm") for _, kind in info.side_model_args)


def roles_for(defense: str, side_model_args: dict[str, str]) -> tuple[str, ...]:
    """The judge and every role the defense declares (a local detoxifier LM replaces the detoxifier role)."""
    roles = {JUDGE_ROLE, *DEFENSES[defense].roles}
    if "detoxifier_model" in side_model_args:  # a local detoxifier LM and a detoxifier role are exclusive
        roles.discard("detoxifier")
    return tuple(sorted(roles))


def role_models(defense: str, args: dict[str, str], model: str) -> dict[str, Model]:
    """The roles on the tiny VLM, bounded short (their calls are not what is checked here, and their defaults
    are long); a guard that passes everything, since the tiny VLM's guard reply never parses and would block
    every input before the target answers."""
    roles = {role: get_model(model, config=ROLE_CONFIG) for role in roles_for(defense, args)}
    if "guard" in roles:
        roles["guard"] = get_model("scripted/custom", responder=lambda messages, config: "safe", memoize=False)
    return roles


def check_defense(
    defense: str,
    spec: str,
    task_args: dict,
    model: str,
    side_models: dict,
    log_dir: Path,
    task_max_tokens: int | None = None,
) -> None:
    """The conformance checks: finishes, replaces the task's chain, keeps its ledger, shows its calls, and
    answers within the run's bound: the task's `task_max_tokens` where given, else `--max-tokens`."""
    info = DEFENSES[defense]
    args = {param: side_models[kind] for param, kind in info.side_model_args}
    (log,) = inspect_eval(
        spec,
        task_args=task_args,
        solver=SolverSpec(defense, args, args),
        model=model,
        model_roles=role_models(defense, args, model),
        limit=2,
        log_dir=str(log_dir),
        display="none",
        **({} if task_max_tokens else {"max_tokens": CLI_MAX_TOKENS}),
    )
    assert log.status == "success", log.error
    assert log.eval.solver == defense
    # --solver replaced the task's chain: only the setup check and the defense ran
    assert [step.solver.split("/")[-1] for step in log.plan.steps] == ["check_sample", defense]
    for sample in log.samples:
        assert sample.error is None
        ledger = sample.store.get("defense_calls", [])
        model_calls = [e for e in sample.events if isinstance(e, ModelEvent)]
        for entry in ledger:  # each recorded call is in the transcript too
            if entry["role"] != "direct":
                assert any(entry["model"].endswith(e.model) or e.model in entry["model"] for e in model_calls)
        assert sample.scores["defense_cost"].value["defense_extra_calls"] == len(ledger)
        assert sample.output.completion is not None
        # the target's first call (role None; the roles' calls carry their role) keeps the run's bound
        target_calls = [e for e in model_calls if e.role is None]
        assert target_calls, f"{defense}: the target never answered"
        assert target_calls[0].config.max_tokens == (task_max_tokens or CLI_MAX_TOKENS), defense


@pytest.mark.parametrize("defense", sorted(DEFENSES))
@pytest.mark.parametrize("task", TASKS)
def test_defense_runs_as_solver_on_task(defense, task, task_specs, tiny_vlm, side_models, tmp_path, request) -> None:
    # FigStep's questions come from the shared data only: that task alone skips without it
    spec, task_args = figstep_spec(request.getfixturevalue("shared_data")) if task == "figstep" else task_specs[task]
    check_defense(defense, spec, task_args, f"hfvlm/{tiny_vlm}", side_models, tmp_path, TASK_MAX_TOKENS.get(task))


def readme_block(start: str) -> str:
    """The README's fenced python block whose first line is `start`."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    (block,) = [b for b in blocks if b.startswith(start)]
    return block


@pytest.fixture
def readme_defense():
    """The README's example defense (section "Adding a defense"), registered as written, then removed."""
    source = readme_block("# solvers/my_defense.py")
    module = types.ModuleType("my_defense")
    exec(compile(source, "README.md#my_defense", "exec"), module.__dict__)
    assert "from .my_defense import my_defense" in readme_block("# solvers/__init__.py")
    yield module
    DEFENSES.pop("my_defense", None)


def test_readme_example_defense_passes_the_suite(readme_defense, task_specs, tiny_vlm, side_models, tmp_path) -> None:
    assert DEFENSES["my_defense"].roles == ("checker",)
    spec, task_args = task_specs["siuo"]
    check_defense("my_defense", spec, task_args, f"hfvlm/{tiny_vlm}", side_models, tmp_path)
