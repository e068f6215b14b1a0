"""Runs, logs and reports under faults: kill -9 and resume, SIGINT, two grids on one log dir, bad
report inputs, runs on different data, folders the tool did not write, hanging roles, bad grid configs."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from inspect_ai import Task
from inspect_ai import eval as inspect_eval
from inspect_ai.dataset import Sample
from inspect_ai.log import list_eval_logs, read_eval_log
from inspect_ai.model import get_model
from inspect_ai.scorer import match

from solvers import none, vlmguard
from tasks.siuo import siuo
from tests.helpers import scripted
from vlmguard_eval.cli.errors import UsageError
from vlmguard_eval.cli.grid import run_grid
from vlmguard_eval.cli.grid_config import GridConfig, load_config
from vlmguard_eval.cli.log_dir import LOCK_FILE, claim_log_dir, grid_lock
from vlmguard_eval.cli.main import main, make_report
from vlmguard_eval.report.runs import load_report_runs

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def mcqa(data_dir: Path, **kwargs):
    return siuo(format="mcqa", data_dir=str(data_dir), **kwargs)


def answers_b(messages, config) -> str:
    return "B"  # a parseable option letter, so MCQA accuracy has values to pair


def run_mcqa(data_dir: Path, log_dir: Path, solver=None, model=None, **kwargs):
    (log,) = inspect_eval(
        mcqa(data_dir),
        solver=solver or none(),
        model=model or get_model("scripted/custom", responder=answers_b, memoize=False),
        model_roles={"rewriter": "scripted/echo"},
        log_dir=str(log_dir),
        display="none",
        **kwargs,
    )
    return log


# --- report inputs ------------------------------------------------------------------------------------


def test_bad_logs_are_skipped_and_named_the_rest_reported(demo_dir: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    good = run_mcqa(demo_dir, logs)
    (logs / "truncated.eval").write_bytes(Path(good.location).read_bytes()[:300])
    (logs / "empty.eval").write_bytes(b"")
    foreign = Task(dataset=[Sample(input="1+1?", target="2")], scorer=match(), name="arithmetic")
    inspect_eval(foreign, model="scripted/echo", log_dir=str(logs), display="none")
    runs, skipped = load_report_runs(logs)
    assert [r.log for r in runs] == [Path(good.location).name]
    assert set(skipped) >= {"truncated.eval", "empty.eval"} and len(skipped) == 3
    assert any("not one of" in reason for reason in skipped.values())
    board = make_report(logs, tmp_path / "report", "t", bundle=False).read_text()
    assert "## Logs not used" in board and "truncated.eval" in board and "| none |" in board


def test_missing_or_empty_log_dir_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for log_dir in (tmp_path / "empty", tmp_path / "missing"):
        assert main(["report", str(log_dir), "--out", str(tmp_path / "out")]) == 2


def test_runs_on_different_data_are_never_paired(demo_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(demo_dir, other)
    logs = tmp_path / "logs"
    run_mcqa(demo_dir, logs)  # baseline on the demo data
    run_mcqa(other, logs)  # baseline on another copy (another data_dir)
    run_mcqa(demo_dir, logs, solver=vlmguard())
    records = json.loads((other / "siuo_mcqa.json").read_text())
    records[0]["question"] = "a different question under the same id"
    (other / "siuo_mcqa.json").write_text(json.dumps(records))
    run_mcqa(other, logs, solver=vlmguard())  # same location and ids as the second baseline, other content
    runs, _ = load_report_runs(logs)
    defended = {r.dataset.split("@")[1]: r for r in runs if r.defense.startswith("vlmguard")}
    assert len(defended) == 2
    assert defended[str(demo_dir / "siuo_mcqa.json")].stats["mcqa_correct"].delta is not None
    assert defended[str(other / "siuo_mcqa.json")].stats["mcqa_correct"].delta is None  # inputs differ: no pair
    assert all(r.stats["mcqa_correct"].delta is None for r in runs if r.defense == "none")  # never against itself


def test_defense_arguments_tell_variants_apart(demo_dir: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    rewriter = scripted(lambda m, c: "no block")
    for fallback in ("original", "caution"):
        (log,) = inspect_eval(
            mcqa(demo_dir),
            solver=vlmguard(fallback=fallback),
            model="scripted/echo",
            model_roles={"rewriter": rewriter},
            log_dir=str(logs),
            display="none",
        )
    runs, _ = load_report_runs(logs)
    labels = sorted(r.defense for r in runs)
    assert len(set(labels)) == 2 and 'fallback="caution"' in labels[0] + labels[1]


def test_partial_runs_are_marked_in_the_markdown(demo_dir: Path, tmp_path: Path) -> None:
    def flaky(messages, config):
        if "wallet" in messages[-1].text:
            raise RuntimeError("target exploded")
        return "A"

    run_mcqa(demo_dir, tmp_path / "logs", model=scripted(flaky), fail_on_error=0.5)
    board = make_report(tmp_path / "logs", tmp_path / "report", "t", bundle=False).read_text()
    assert "| none (PARTIAL: success, 5/6 samples) |" in board


# --- kill -9, SIGINT and two grids --------------------------------------------------------------------

SLOW_GRID = """
import asyncio, sys
import vlmguard_eval.models.scripted as scripted

async def slow(messages, config):
    await asyncio.sleep(float(sys.argv[2]))
    return "A"

scripted.BEHAVIOURS["echo"] = slow
from vlmguard_eval.cli.main import main
sys.exit(main(["grid", sys.argv[1]]))
"""


def write_grid(tmp_path: Path, demo_dir: Path, **extra) -> Path:
    config = {
        "log_dir": str(tmp_path / "grid-logs"),
        "models": ["scripted/echo"],
        "roles": {"grader": "scripted/echo", "rewriter": "scripted/echo"},
        "benchmarks": [{"task": "siuo", "args": {"format": "mcqa", "data_dir": str(demo_dir)}}],
        "defenses": ["none"],
        "display": "none",
        "retry_attempts": 0,
        **extra,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def start_grid(config: Path, delay: float) -> subprocess.Popen:
    # the grid starts with SIGINT at its default, as from an interactive shell: a test run started in the
    # background by a non-interactive shell (`make test &`) ignores SIGINT, as POSIX shells do without job
    # control, and an ignored SIGINT is inherited through exec and kept ignored by Python
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_GRID, str(config), str(delay)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.2)


def test_kill_9_mid_grid_then_rerun_counts_every_sample_once(demo_dir: Path, tmp_path: Path) -> None:
    config = write_grid(tmp_path, demo_dir)
    logs = tmp_path / "grid-logs"
    process = start_grid(config, 30)
    wait_for(lambda: any(logs.glob("*.eval")))
    process.kill()  # SIGKILL: no clean-up at all; the lock file stays behind
    process.wait()
    assert (logs / LOCK_FILE).is_file()
    rerun = subprocess.run(
        [sys.executable, "-c", SLOW_GRID, str(config), "0"], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr  # the stale lock was taken over
    runs, skipped = load_report_runs(logs)
    assert len(runs) == 1 and not runs[0].partial
    assert runs[0].completed == 6 and sorted(runs[0].values["mcqa_correct"]) == sorted(map(str, range(9001, 9007)))
    # the killed attempt's log is not counted beside the one that replaced it
    assert all("superseded" in reason or "status started" in reason for reason in skipped.values())


def test_sigint_on_a_grid_exits_non_zero_and_the_report_flags_it(demo_dir: Path, tmp_path: Path) -> None:
    config = write_grid(tmp_path, demo_dir)
    logs = tmp_path / "grid-logs"
    process = start_grid(config, 30)
    wait_for(lambda: any(logs.glob("*.eval")))
    time.sleep(1)
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0 and "completed successfully" not in output.lower(), output
    board = make_report(logs, tmp_path / "report", "t", bundle=False).read_text()
    assert "PARTIAL" in board


def test_a_second_grid_on_the_same_log_dir_refuses(demo_dir: Path, tmp_path: Path) -> None:
    config = write_grid(tmp_path, demo_dir)
    logs = tmp_path / "grid-logs"
    first = start_grid(config, 30)
    try:
        wait_for(lambda: (logs / LOCK_FILE).is_file())
        with pytest.raises(RuntimeError, match=f"in use by another grid \\(pid {first.pid}\\)"):
            run_grid(load_config(config))
    finally:
        first.kill()
        first.wait()


def test_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_FILE).write_text(dead.stdout.strip())
    with grid_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == str(os.getpid())
    assert not (tmp_path / LOCK_FILE).exists()


# --- nothing deletes what it did not write -----------------------------------------------------------


def test_user_folders_are_refused_never_deleted(demo_dir: Path, tmp_path: Path) -> None:
    user_logs = tmp_path / "mine" / "logs"
    user_logs.mkdir(parents=True)
    (user_logs / "precious.eval").write_text("user data")
    assert main(["run", "--out", str(tmp_path / "mine"), "--model", "scripted/echo", "--rewriter", "scripted/echo",
                 "--grader", "scripted/echo", "--benchmarks", "siuo", "--siuo-dir", str(demo_dir)]) == 2  # fmt: skip
    with pytest.raises(ValueError, match="did not write"):
        claim_log_dir(user_logs)
    logs = tmp_path / "ours"
    run_mcqa(demo_dir, logs)
    viewer = tmp_path / "report" / "viewer"
    viewer.mkdir(parents=True)
    (viewer / "notes.txt").write_text("user data")
    (tmp_path / "report" / ".vlmguard-report").write_text("")
    with pytest.raises(UsageError, match="did not write"):
        make_report(logs, tmp_path / "report", "t", bundle=True)
    assert (user_logs / "precious.eval").read_text() == "user data" and (viewer / "notes.txt").is_file()
    make_report(logs, tmp_path / "fresh", "t", bundle=True)  # ours: written, then rewritten in place
    make_report(logs, tmp_path / "fresh", "t", bundle=True)
    assert (tmp_path / "fresh" / "viewer" / ".vlmguard-viewer").is_file()


# --- time bounds for every role -----------------------------------------------------------------------


def hanging_roles(role: str, grader_reply: str) -> dict:
    """Grader and rewriter roles where `role` never answers (the other replies at once)."""

    async def hang(messages, config):
        await asyncio.sleep(120)
        return "never"

    roles = {"grader": scripted(lambda m, c: grader_reply), "rewriter": scripted(lambda m, c: "x")}
    roles[role] = scripted(hang)
    return roles


def assert_each_hang_ended(samples: list, role: str) -> None:
    """Each hanging call ended: a timed-out sample, or the defense's recorded fallback."""
    for sample in samples:
        timed_out = sample.error is not None and "AttemptTimeout" in sample.error.message
        assert timed_out or (role == "rewriter" and sample.store.get("defense_fallback"))


@pytest.mark.parametrize("role", ["grader", "rewriter"])
def test_attempt_timeout_bounds_a_hanging_role(demo_dir: Path, tmp_path: Path, role: str) -> None:
    roles = hanging_roles(role, "Verdict: SAFE")
    config = GridConfig(
        benchmarks=[{"task": "siuo", "args": {"format": "gen", "data_dir": str(demo_dir), "epochs": 1}}],
        defenses=[{"name": "vlmguard"}],
        models=["scripted/echo"],
        roles=roles,
        log_dir=str(tmp_path / "logs"),
        options={
            "attempt_timeout": 1,
            "max_retries": 1,
            "fail_on_error": False,
            "retry_attempts": 0,
            "display": "none",
            "limit": 2,
        },
    )
    started = time.monotonic()
    run_grid(config)
    assert time.monotonic() - started < 100
    (log,) = [read_eval_log(i.name) for i in list_eval_logs(str(tmp_path / "logs"))]
    assert_each_hang_ended(log.samples, role)


@pytest.mark.parametrize("role", ["grader", "rewriter"])
def test_inspect_evals_attempt_timeout_bounds_a_hanging_role(demo_dir: Path, tmp_path: Path, role: str) -> None:
    """The plain `inspect eval --attempt-timeout` path: the library gives the eval's bound to every side call."""
    from tasks.siuo import siuo

    roles = hanging_roles(role, "Safety judgement: TRUE")
    started = time.monotonic()
    (log,) = inspect_eval(
        siuo(format="gen", data_dir=str(demo_dir), epochs=1),
        solver=vlmguard(),
        model="scripted/echo",
        model_roles=roles,
        attempt_timeout=1,
        max_retries=1,
        fail_on_error=False,
        limit=2,
        log_dir=str(tmp_path / "logs"),
        display="none",
    )
    assert time.monotonic() - started < 100
    assert_each_hang_ended(log.samples, role)


# --- grid config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"benchmarks": [{"task": "../x"}]}, "unknown benchmark '../x'"),
        ({"benchmarks": ["/etc/passwd"]}, "unknown benchmark '/etc/passwd'"),
        ({"defenses": ["../../solvers/none"]}, "unknown defense"),
        ({"defenses": "none"}, "'defenses' must be a list"),
        ({"models": "scripted/echo"}, "'models' must be a list"),
        ({"limit": [1, 2]}, "'limit' must be int, got list"),
        ({"limit": True}, "'limit' must be int, got bool"),
        ({"epochs": "3"}, "'epochs' must be int, got str"),
        ({"fail_on_error": "yes"}, "'fail_on_error' must be bool or float or int"),
        ({"roles": ["grader"]}, "'roles' must be a mapping"),
        ({"roles": {"grader": ["a", "b"]}}, "'roles' must be a mapping of role -> model name"),
        ({"log_dir": ["a"]}, "'log_dir' must be a folder path"),
        ({"defenses": [{"name": "none", "arg": {}}]}, "unknown keys \\['arg'\\]"),
        ({"benchmarks": [{"task": "siuo", "args": ["format", "gen"]}]}, "args must be a mapping"),
    ],
)
def test_bad_grid_configs_name_the_key_and_run_nothing(
    demo_dir: Path, tmp_path: Path, change: dict, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vlmguard_eval.cli.catalog as catalog

    def never(*args, **kwargs):
        raise AssertionError("a file was imported or run")

    monkeypatch.setattr(catalog.importlib.util, "spec_from_file_location", never)
    config = write_grid(tmp_path, demo_dir, **change)
    with pytest.raises(ValueError, match=message):
        load_config(config)
    assert not (tmp_path / "grid-logs").exists()


def test_a_path_like_task_name_never_executes_a_file(tmp_path: Path) -> None:
    from vlmguard_eval.cli.catalog import task_function

    trap = tmp_path / "x.py"
    trap.write_text("raise SystemExit('executed')")
    for name in ("../x", str(trap), str(trap.with_suffix(""))):
        with pytest.raises(ValueError, match="unknown task"):
            task_function(name)


def test_script_runs_are_valid_python() -> None:
    compile(textwrap.dedent(SLOW_GRID), "slow_grid", "exec")


def test_a_target_returning_no_choices_fails_only_that_sample(demo_dir: Path, tmp_path: Path) -> None:
    from inspect_ai.model import ModelAPI, ModelOutput, modelapi

    @modelapi(name="nochoices")
    class NoChoices(ModelAPI):
        async def generate(self, input, tools, tool_choice, config):
            text = input[-1].text
            if "wallet" in text:
                return ModelOutput(model="nochoices", choices=[])
            return ModelOutput.from_content(model="nochoices", content="A")

    log = run_mcqa(demo_dir, tmp_path / "logs", model=get_model("nochoices/x"), fail_on_error=0.5)
    errors = {s.id: s.error for s in log.samples if s.error}
    assert len(errors) == 1 and sum(s.error is None for s in log.samples) == 5
