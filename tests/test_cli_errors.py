"""README "Exit codes": `run` and `grid` exit 2 for a command line that cannot run and 1 when a task ends in
error; every error prints in one line, and a failed task is shown with its own error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from vlmguard_eval.cli.errors import one_line
from vlmguard_eval.cli.grid import GridResult, TaskFailure, task_failure
from vlmguard_eval.cli.main import finish, main

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEBUG_HINT = "(add --debug or set VLMGUARD_DEBUG=1 for the traceback)"


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VLMGUARD_DEBUG", raising=False)


def one_line_error(capsys: pytest.CaptureFixture, command: str) -> str:
    """The error the command printed, checked to be one line and the debug hint."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[1] == DEBUG_HINT, lines
    assert lines[0].startswith(f"vlmguard-eval {command}: error: ")
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--defenses", "none,vlmgaurd"], "unknown defense 'vlmgaurd' (did you mean 'vlmguard'?)"),
        (["--benchmarks", "siu"], "unknown benchmark 'siu' (did you mean 'siuo'?)"),
        (["--benchmarks", "figstep"], "--benchmarks figstep needs --figstep-dir PATH"),
        (["--defenses", "none,guard_filter"], "guard_filter (model role guard)"),
        (["--defenses", "mllm_protector"], "mllm_protector (side models -S detector=PATH, -S detoxifier_model=PATH"),
        (["--defenses", "eta"], "eta (side models -S reward_model=PATH, -S clip_model=PATH; a local hfvlm/ target)"),
    ],
)
def test_run_command_lines_that_cannot_run_exit_2_before_anything_runs(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["run", *args, "--out", str(tmp_path / "out")]) == 2
    assert message in one_line_error(capsys, "run")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # nothing built, nothing ran


def test_defenses_run_cannot_configure_point_to_grid(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--defenses", "guard_filter"]) == 2
    error = one_line_error(capsys, "run")
    assert "`vlmguard-eval grid CONFIG`" in error and "under the defense's `args:`" in error and "`roles:`" in error


def test_run_refuses_a_folder_of_user_files_with_exit_2(demo_dir: Path, tmp_path: Path, capsys) -> None:
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("user data")
    args = ["run", "--out", str(user), "--model", "scripted/echo", "--grader", "scripted/judge", "--defenses", "none"]
    assert main([*args, "--benchmarks", "siuo", "--siuo-dir", str(demo_dir)]) == 2
    assert "already holds files this tool did not write" in one_line_error(capsys, "run")
    assert [p.name for p in user.iterdir()] == ["notes.txt"]


def test_grid_config_that_cannot_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["grid", str(tmp_path / "missing.yaml")]) == 2
    assert f"grid config {tmp_path / 'missing.yaml'} not found" in one_line_error(capsys, "grid")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [\n")
    assert main(["grid", str(broken)]) == 2
    assert "not valid YAML" in one_line_error(capsys, "grid")
    # a defense that cannot be built from its args: named, before any task runs
    config = tmp_path / "grid.yaml"
    config.write_text(
        f"log_dir: {tmp_path / 'logs'}\nmodels: [scripted/echo]\nbenchmarks: [{{task: siuo, args: {{format: mcqa}}}}]\n"
        "defenses: [mllm_protector]\n"
    )
    assert main(["grid", str(config)]) == 2
    assert "defense mllm_protector: mllm_protector needs its harm detector" in one_line_error(capsys, "grid")
    assert not list((tmp_path / "logs").glob("*.eval"))


@pytest.mark.parametrize("make", [lambda d: d / "no" / "such" / "dir", lambda d: d])
def test_rejudge_of_a_dir_without_logs_exits_2_as_report_does(make, tmp_path: Path, capsys) -> None:
    log_dir = make(tmp_path)
    assert main(["rejudge", str(log_dir), "--grader", "scripted/judge"]) == 2
    rejudged = one_line_error(capsys, "rejudge").split("error: ", 1)[1]
    assert main(["report", str(log_dir), "--out", str(tmp_path / "report")]) == 2
    assert one_line_error(capsys, "report").split("error: ", 1)[1] == rejudged
    assert rejudged in (f"log dir {log_dir} does not exist", f"log dir {log_dir} holds no Inspect logs")


def test_rejudge_model_arg_without_a_value_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert main(["rejudge", str(tmp_path), "--grader", "scripted/judge", "-M", "temperature"]) == 2
    assert one_line_error(capsys, "rejudge").endswith("error: -M temperature: a judge model arg is KEY=VALUE")


# ---- errors in one line ---------------------------------------------------------------------------------


def test_rich_markup_is_stripped_and_brackets_kept() -> None:
    inspect_message = "ERROR: No [bold][blue]OPENAI_API_KEY[/blue][/bold] defined\n\nin the environment."
    assert one_line(inspect_message) == "ERROR: No OPENAI_API_KEY defined in the environment."
    assert one_line("unknown keys ['arg']; valid: [gen, mcqa] [95% CI] /data/[x]") == (
        "unknown keys ['arg']; valid: [gen, mcqa] [95% CI] /data/[x]"
    )


def test_an_inspect_prerequisite_error_prints_without_markup(
    demo_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    for key in ("OPENAI_API_KEY", "AZUREAI_OPENAI_API_KEY", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    args = ["run", "--model", "openai/gpt-4o", "--grader", "scripted/judge", "--defenses", "none", "--display", "none"]
    assert main([*args, "--benchmarks", "siuo", "--siuo-dir", str(demo_dir), "--out", str(tmp_path / "out")]) == 1
    error = one_line_error(capsys, "run")
    assert "OPENAI_API_KEY" in error and "[bold]" not in error and "[/" not in error


def test_train_errors_go_through_the_same_handler(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text('{not json\n{"prompt": "p"}\n')
    args = ["--data", str(data), "--model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path / "run")]
    assert main(["train", *args, "--use_cpu", "true", "--bf16", "false"]) == 1
    error = one_line_error(capsys, "train")
    assert "2 bad line(s) in the training data:" in error and f"{data}:1: not valid JSON" in error


def test_a_hub_download_that_fails_names_runs_flag(tmp_path: Path) -> None:
    """Offline (HF_HUB_OFFLINE, an empty hub cache) the loader's RuntimeError says `-T data_dir=PATH`, which `run`
    cannot pass: one line naming --siuo-dir instead, exit 1 (the command line is right; the download failed)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "VLMGUARD_CACHE": str(tmp_path)}
    env.pop("VLMGUARD_DEBUG", None)
    command = [str(BIN / "vlmguard-eval"), "run", "--benchmarks", "siuo", "--siuo-dir", "hub", "--defenses", "none"]
    command += ["--model", "scripted/echo", "--grader", "scripted/judge", "--out", str(tmp_path / "out")]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-2]
    assert error.startswith("vlmguard-eval run: error: task siuo: could not fetch sinwang/SIUO")
    assert "pass --siuo-dir PATH to use a local copy" in error and "-T " not in error


def test_figstep_font_is_a_run_flag_and_errors_name_it(shared_data: Path, tmp_path: Path, capsys) -> None:
    args = ["run", "--model", "scripted/echo", "--grader", "scripted/judge", "--defenses", "none", "--limit", "1"]
    args += ["--benchmarks", "figstep", "--figstep-dir", str(shared_data / "figstep"), "--display", "none"]
    missing = tmp_path / "no-font.ttf"
    assert main([*args, "--figstep-font", str(missing), "--out", str(tmp_path / "a")]) == 2
    error = one_line_error(capsys, "run")
    assert f"not found at --figstep-font {missing}" in error and "--figstep-font dejavu" in error
    assert "-T " not in error
    assert main([*args, "--figstep-font", "dejavu", "--out", str(tmp_path / "b")]) == 0


# ---- a task that ends in error ---------------------------------------------------------------------------


def test_a_failed_task_is_shown_with_its_error_and_no_futile_resume_hint(
    demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "grid.yaml"
    config.write_text(
        f"log_dir: {tmp_path / 'logs'}\nmodels: [scripted/echo]\nroles: {{grader: scripted/judge}}\n"
        f"benchmarks: [{{task: siuo, args: {{format: mcqa, data_dir: {demo_dir}}}}}]\n"
        "defenses: [none, guard_filter]\nlimit: 1\ndisplay: none\n"
    )
    assert main(["grid", str(config)]) == 1
    err = capsys.readouterr().err
    assert "FAILED siuo_mcqa__guard_filter on scripted/echo (error, configuration): Model role 'guard' is" in err
    assert "siuo_mcqa__none" not in err  # it succeeded
    assert "run the same command again to resume them" not in err and "fix what it names" in err


def log(traceback: str | None, message: str = "it failed", status: str = "error") -> SimpleNamespace:
    error = SimpleNamespace(message=message, traceback=traceback) if traceback is not None else None
    return SimpleNamespace(eval=SimpleNamespace(task="t", model="m"), status=status, error=error)


def test_only_prerequisite_errors_count_as_configuration_errors(capsys: pytest.CaptureFixture) -> None:
    prerequisite = (
        "Traceback:\n  File x\ninspect_ai._util.error.PrerequisiteError: [bold]ERROR[/bold]: x\n\n[bold]pip[/bold]"
    )
    assert task_failure(log(prerequisite, "[bold]ERROR[/bold]: x\n\n[bold]pip[/bold]")) == TaskFailure(
        "t", "m", "error", "ERROR: x pip", configuration=True
    )
    grouped = "  + Exception Group Traceback\n  | vlmguard_eval.core.options.TaskOptionError: task siuo: no copy"
    assert task_failure(log(grouped)).configuration
    chained = "PrerequisiteError: x\n\nThe above exception was the direct cause of:\n\nhttpx.ConnectError: down"
    assert not task_failure(log(chained)).configuration
    assert task_failure(log(None, status="cancelled")) == TaskFailure("t", "m", "cancelled", "")
    assert len(task_failure(log("ValueError: x", "x" * 1000)).error) == 400
    # a failure a rerun can fix: the resume hint, with the error shown
    result = GridResult(False, Path("logs"), [task_failure(log("httpx.ConnectError: down", "server down"))])
    assert finish(result) == 1
    assert capsys.readouterr().err.splitlines() == [
        "FAILED t on m (error): server down",
        "INCOMPLETE: some runs did not finish; run the same command again to resume them",
    ]
    assert finish(GridResult(True, Path("logs"))) == 0
