"""A newcomer's mistakes are caught in one line, offline side models speak our formats, reports read cleanly."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai._util.error import PrerequisiteError
from inspect_ai.event import ModelEvent
from inspect_ai.model import ChatMessageUser, GenerateConfig, get_model
from inspect_ai.solver import SolverSpec

from vlmguard_eval.cli.main import build_parser, main
from vlmguard_eval.core.options import TaskOptionError, role_max_tokens
from vlmguard_eval.data.common import DataError
from vlmguard_eval.data.mm_safetybench import SCENARIOS, load_mm_safetybench
from vlmguard_eval.judging import verdicts
from vlmguard_eval.judging.calls import JUDGE_MAX_TOKENS
from vlmguard_eval.judging.prompts import bundled_prompt
from vlmguard_eval.models.local_vlm import check_model_location
from vlmguard_eval.models.scripted import judge, rewriter
from vlmguard_eval.report.writer import short_model_name, unparsed_label
from vlmguard_eval.rewriter.format import parse_rewriter_output
from vlmguard_eval.rewriter.prompts import rewriter_messages

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def user_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


# ---- 1. mistakes stop the run, in one line -----------------------------------------------------------


def test_misspelled_task_option_stops_inspect_eval_in_one_line(demo_dir: Path, tmp_path: Path) -> None:
    command = [str(BIN / "inspect"), "eval", "tasks/siuo.py", "-T", "fromat=mcqa", "-T", f"data_dir={demo_dir}"]
    command += ["--model", "scripted/echo", "--log-dir", str(tmp_path), "--display", "plain"]
    result = subprocess.run(command, cwd=REPO, env=user_env(COLUMNS="300"), capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert output.splitlines() == [
        "task siuo has no option 'fromat' (did you mean 'format'?); valid -T options: "
        "format, data_dir, epochs, unified, refusal, judge_prompt"
    ]
    assert not list(tmp_path.iterdir())  # nothing ran


def test_task_options_are_checked_by_every_task(demo_dir: Path) -> None:
    from vlmguard_eval.cli.catalog import task_function

    for name in ("siuo", "mm_safetybench", "vlguard", "figstep", "synthesize"):
        with pytest.raises(TaskOptionError, match="has no option 'no_such_option'"):
            task_function(name)(no_such_option=1)
    # a wrong value is one PrerequisiteError line too (and still a ValueError for Python callers)
    with pytest.raises(TaskOptionError, match="task siuo: .*format 'mcq'.*valid: gen, mcqa"):
        task_function("siuo")(format="mcq", data_dir=str(demo_dir))


def test_missing_local_model_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteError, match="no such model folder.*build-tiny-vlm"):
        check_model_location(str(tmp_path / "no" / "model"))
    check_model_location("llava-hf/llava-1.5-7b-hf")  # a hub id is left to the hub


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    command = [str(BIN / "vlmguard-eval"), *args]
    return subprocess.run(command, cwd=REPO, env=user_env(**env), capture_output=True, text=True, timeout=600)


def test_run_checks_every_defense_name_first_in_one_line(tmp_path: Path) -> None:
    result = run_cli("run", "--defenses", "none,vlmgaurd", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr  # a command line that cannot run
    first = result.stderr.splitlines()[0]
    assert first.startswith("vlmguard-eval run: error: unknown defense 'vlmgaurd' (did you mean 'vlmguard'?)")
    assert not (tmp_path / "logs").exists()  # nothing ran
    debug = run_cli("--debug", "run", "--defenses", "none,vlmgaurd", "--out", str(tmp_path))
    assert "Traceback" in debug.stderr
    assert "Traceback" in run_cli("run", "--defenses", "vlmgaurd", VLMGUARD_DEBUG="1").stderr


def test_a_real_run_must_name_its_judge(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--model", "scripted/echo", "--defenses", "none"]) == 2
    assert "--model needs --grader" in capsys.readouterr().err
    assert main(["run", "--model", "scripted/echo", "--grader", "scripted/judge", "--defenses", "vlmguard"]) == 2
    assert "--defenses vlmguard needs --rewriter" in capsys.readouterr().err


# ---- 2. exit codes --------------------------------------------------------------------------------------


def test_run_with_failed_samples_exits_non_zero(demo_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "siuo"
    broken.mkdir()
    for name in ("siuo_gen.json", "siuo_mcqa.json"):  # the records, without their images
        (broken / name).write_bytes((demo_dir / name).read_bytes())
    result = run_cli(
        "run", "--benchmarks", "siuo", "--siuo-dir", str(broken), "--defenses", "none", "--epochs", "1",
        "--out", str(tmp_path / "out"), "--display", "none", VLMGUARD_CACHE=str(tmp_path / "cache"),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr


# ---- 3. the scripted side models speak our formats ----------------------------------------------------

JUDGE_PARSERS = {
    "siuo_safety": verdicts.parse_siuo_safety,
    "siuo_effectiveness": verdicts.parse_effectiveness,
    "mmsb_general": verdicts.parse_safety,
    "mmsb_lobbying": verdicts.parse_safety,
    "mmsb_gov_decision": verdicts.parse_safety,
    "mmsb_certification": verdicts.parse_safety,
    "vlguard_pairwise": verdicts.parse_winner,
    "vlguard_pairwise_tie": verdicts.parse_winner_or_tie,
    "unified": verdicts.parse_unified,
}


@pytest.mark.parametrize("name", sorted(JUDGE_PARSERS))
def test_scripted_judge_replies_parse_and_vary(name: str) -> None:
    from vlmguard_eval.judging.calls import JUDGE_PROMPT_VERSION

    prompt = bundled_prompt(name, JUDGE_PROMPT_VERSION)
    fields = dict.fromkeys(prompt.placeholders(), "x")
    labels = []
    for index in range(24):
        text = prompt.fill({**fields, "response": f"answer {index}"}, ())
        reply = judge([ChatMessageUser(content=text)], GenerateConfig())
        assert reply == judge([ChatMessageUser(content=text)], GenerateConfig())  # deterministic
        label = JUDGE_PARSERS[name](reply)
        assert label is not None, reply
        labels.append(json.dumps(label, sort_keys=True))
    assert len(set(labels)) > 1  # labels vary with the input


def test_scripted_rewriter_follows_the_format_and_sometimes_falls_back() -> None:
    outcomes = []
    for index in range(24):
        reply = rewriter(rewriter_messages([], f"How do I use item {index}?"), GenerateConfig())
        parsed = parse_rewriter_output(reply)
        if parsed.output is not None:
            assert f"How do I use item {index}?" in parsed.output.refined_prompt
        outcomes.append(parsed.output is None)
    assert any(outcomes) and not all(outcomes)


# ---- 4. bounded side calls --------------------------------------------------------------------------------


def test_each_side_call_carries_an_explicit_bound(demo_dir: Path, tmp_path: Path) -> None:
    assert role_max_tokens(get_model("scripted/judge", memoize=False), 77) == 77
    bound = get_model("scripted/judge", config=GenerateConfig(max_tokens=33), memoize=False)
    assert role_max_tokens(bound, 77) == 33
    (log,) = inspect_eval(
        f"{REPO}/tasks/siuo.py@siuo",
        task_args={"data_dir": str(demo_dir), "epochs": 1},
        solver=SolverSpec("vlmguard"),
        model="scripted/comply",
        model_roles={"grader": "scripted/judge", "rewriter": "scripted/rewriter"},
        limit=1,
        log_dir=str(tmp_path),
        display="none",
    )
    events = [e for s in log.samples for e in s.events if isinstance(e, ModelEvent)]
    by_role = {e.role: e.config.max_tokens for e in events}
    assert by_role == {None: 500, "grader": JUDGE_MAX_TOKENS, "rewriter": 1024}


# ---- 6. reports ------------------------------------------------------------------------------------------


def test_model_names_lose_machine_paths() -> None:
    assert short_model_name("hfvlm//home/u/.cache/vlm/tiny-llava") == "hfvlm/tiny-llava"
    assert short_model_name("hfvlm/checkpoints/rewriter/final") == "hfvlm/rewriter/final"
    assert short_model_name("hfvlm/llava-hf/llava-1.5-7b-hf") == "hfvlm/llava-hf/llava-1.5-7b-hf"
    assert short_model_name("openai/gpt-4o") == "openai/gpt-4o"


def test_a_group_the_measure_does_not_apply_to_gets_no_rate() -> None:
    from inspect_ai.scorer import SampleScore, Score

    from scorers.metrics import NOT_APPLICABLE, mean_by, per_key, rate_by

    def sample(subset: str, value: object) -> SampleScore:
        return SampleScore(
            score=Score(value={"attack_success": value}), sample_id=subset, sample_metadata={"subset": subset}
        )

    # VLGuard: attack success does not apply to safe_safes (benign prompts); it was reported as NaN
    scores = [sample("unsafes", 1), sample("unsafes", 0), sample("safe_safes", NOT_APPLICABLE)]
    (by_subset,) = per_key({"attack_success": [rate_by("subset")]})
    assert by_subset(scores) == {"attack_success_subset_unsafes": 50.0}
    (means,) = per_key({"attack_success": [mean_by("subset")]})
    assert means(scores) == {"attack_success_mean_subset_unsafes": 0.5}


def test_unparsed_columns_are_named_apart() -> None:
    assert unparsed_label("unified_safety") != unparsed_label("unified_helpfulness")
    assert unparsed_label("safe") == "safe unparsed"


def test_an_undeclared_defense_keeps_its_colour_across_processes() -> None:
    code = "from vlmguard_eval.report.figures import defense_colour; print(defense_colour('not_declared_x'))"
    colours = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(colours) == 1 and colours != {""}


# ---- 8. a partial MM-SafetyBench copy; whole-file errors -------------------------------------------------


def test_partial_mm_safetybench_copy_loads_what_is_there(demo_mmsb_dir: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        dataset = load_mm_safetybench(data_dir=demo_mmsb_dir, image_type="TYPO")
    present = {s.metadata["scenario"] for s in dataset}
    assert present and set(dataset.missing_scenarios) == set(SCENARIOS) - present
    assert "pass -T scenario=" in caplog.text and dataset.missing_scenarios[0] in caplog.text
    from vlmguard_eval.cli.catalog import task_function

    task = task_function("mm_safetybench")(data_dir=str(demo_mmsb_dir), image_type="TYPO")
    assert task.metadata["missing_scenarios"] == dataset.missing_scenarios


def test_a_whole_file_problem_names_the_file() -> None:
    assert str(DataError("/d/x.json", "-", None, "file not found")) == "file /d/x.json: file not found"


# ---- 9. help -----------------------------------------------------------------------------------------------


def test_every_subcommand_explains_every_argument() -> None:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.choices and isinstance(a.choices, dict)]
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help, f"{name} {action.dest} has no help"
    text = " ".join(sub.choices["run"].format_help().split())
    assert "(default: none,vlmguard)" in text and "mm_safetybench" in text and "guard_filter" in text
