"""A grid in several client processes: each an eval-set over a fixed share of the tasks, one log dir."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlmguard_eval.cli.grid import run_grid, shard_plan
from vlmguard_eval.cli.grid_config import GridConfig, build_tasks
from vlmguard_eval.cli.main import main
from vlmguard_eval.report.runs import load_report_runs


def config(demo_dir: Path, log_dir: Path, workers: int) -> GridConfig:
    """Each worker runs its tasks at once, with more samples in flight than connections (as bench/served_grid.py)."""
    return GridConfig(
        benchmarks=[{"task": "siuo", "args": {"format": "mcqa", "data_dir": str(demo_dir)}}],
        defenses=[{"name": "none"}, {"name": "self_reminder"}, {"name": "safety_prompt"}],
        models=["scripted/refuse"],
        roles={"grader": "scripted/judge"},
        log_dir=str(log_dir),
        options={"limit": 2, "display": "none", "max_tasks": 2, "max_connections": 1, "max_samples": 2},
        workers=workers,
    )


def test_shards_split_the_tasks_without_overlap(demo_dir: Path, tmp_path: Path) -> None:
    grid = config(demo_dir, tmp_path, 2)
    names = shard_plan(grid, tmp_path)
    assert sorted(names[0] + names[1]) == sorted(t.name for t in build_tasks(grid))
    assert not set(names[0]) & set(names[1]) and all(names)


def test_two_workers_run_every_task_once_and_resume(demo_dir: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    success, _ = run_grid(config(demo_dir, logs, 2))
    assert success
    files = sorted(p.relative_to(logs).as_posix() for p in logs.rglob("*.eval"))
    assert {f.split("/")[0] for f in files} == {"worker-0", "worker-1"} and len(files) == 3
    runs, skipped = load_report_runs(logs)
    assert sorted(r.defense for r in runs) == ["none", "safety_prompt", "self_reminder"] and not skipped
    success, _ = run_grid(config(demo_dir, logs, 2))  # the same command again: nothing re-runs
    assert success and sorted(p.relative_to(logs).as_posix() for p in logs.rglob("*.eval")) == files


def test_workers_must_be_a_positive_whole_number(demo_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        config(demo_dir, tmp_path, 0)


# ---- a grid of workers as a command: a terminal, signals, a worker that dies --------------------------------

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# a grid command whose target never answers in time, and (GRID_TEST_DIE_SHARD=k) whose worker k dies at once;
# a file, not `python -c`: a spawned worker runs it again (as __mp_main__) before it starts, so it is patched too
LAUNCHER = """
import asyncio, os, sys
import vlmguard_eval.cli.grid as grid
import vlmguard_eval.models.scripted as scripted

async def slow(messages, config):
    await asyncio.sleep(600)
    return "A"

scripted.BEHAVIOURS["slow"] = slow
if "GRID_TEST_DIE_SHARD" in os.environ:
    run_shard = grid.run_shard

    def dying(config, shard, names):
        if shard == int(os.environ["GRID_TEST_DIE_SHARD"]):
            os._exit(1)
        return run_shard(config, shard, names)

    grid.run_shard = dying

if __name__ == "__main__":
    from vlmguard_eval.cli.main import main

    sys.exit(main(["grid", sys.argv[1]]))
"""


def write_config(tmp_path: Path, demo_dir: Path, **extra: object) -> Path:
    config = {
        "log_dir": str(tmp_path / "logs"),
        "models": ["scripted/refuse"],
        "roles": {"grader": "scripted/judge"},
        "benchmarks": [{"task": "siuo", "args": {"format": "mcqa", "data_dir": str(demo_dir)}}],
        "defenses": ["none", "self_reminder", "safety_prompt"],
        "limit": 1,
        "workers": 2,
        **extra,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def env() -> dict[str, str]:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop("VLMGUARD_DEBUG", None)
    return environment


def logs_in(log_dir: Path) -> dict[str, float]:
    """Each log under the dir (worker folders included), with its modification time."""
    return {p.relative_to(log_dir).as_posix(): p.stat().st_mtime for p in log_dir.rglob("*.eval")}


def test_workers_in_a_terminal_default_to_plain_display(demo_dir: Path, tmp_path: Path) -> None:
    """Under a terminal Inspect's default display is `full`, which a worker (no terminal input) cannot draw."""
    config = write_config(tmp_path, demo_dir)  # no display key
    main_fd, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(BIN / "vlmguard-eval"), "grid", str(config)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=REPO,
        env={**env(), "TERM": "xterm", "COLUMNS": "120", "LINES": "40"},
        start_new_session=True,
    )
    os.close(terminal)
    output = b""
    while True:  # read the terminal until it closes (the grid and its workers have ended)
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # EIO: no process holds the terminal any more
            break
        if not chunk:
            break
        output += chunk
    os.close(main_fd)
    text = output.decode("utf-8", "replace")
    assert process.wait(timeout=60) == 0, text
    assert "I/O operation on closed file" not in text and "Traceback" not in text, text
    assert len(logs_in(tmp_path / "logs")) == 3


def descendants(pid: int) -> set[int]:
    """The live processes below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent to read its status)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_stopped_grid_leaves_no_worker_running(demo_dir: Path, tmp_path: Path, stop: signal.Signals) -> None:
    config = write_config(tmp_path, demo_dir, models=["scripted/slow"], display="none")
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    process = subprocess.Popen(
        [sys.executable, str(launcher), str(config)],
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    workers: set[int] = set()
    try:
        # both workers are generating: each has started its first log
        assert wait_until(lambda: len({p.parent for p in (tmp_path / "logs").rglob("*.eval")}) == 2, 240)
        workers = descendants(process.pid)
        assert workers
        process.send_signal(stop)
        output, _ = process.communicate(timeout=120)
        assert process.returncode != 0
        if stop == signal.SIGTERM:  # the grid stopped its workers before it ended, and said so
            assert "INTERRUPTED" in output, output
        assert wait_until(lambda: not any(alive(pid) for pid in workers), 40), output
    finally:
        process.kill()
        for pid in workers | descendants(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_appending_a_defense_keeps_each_finished_task_in_its_worker_folder(
    demo_dir: Path, demo_vlguard_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A task's worker is fixed by its name (and by the folder holding its log), never by its position."""
    benchmarks = [
        {"task": "siuo", "args": {"format": "mcqa", "data_dir": str(demo_dir)}},
        {"task": "vlguard", "args": {"data_dir": str(demo_vlguard_dir)}},
    ]
    config = write_config(tmp_path, demo_dir, benchmarks=benchmarks, defenses=["none", "self_reminder"], display="none")
    assert main(["grid", str(config)]) == 0
    before = logs_in(tmp_path / "logs")
    assert len(before) == 4
    config = write_config(
        tmp_path, demo_dir, benchmarks=benchmarks, defenses=["none", "self_reminder", "safety_prompt"], display="none"
    )
    assert main(["grid", str(config)]) == 0, capsys.readouterr().err
    after = logs_in(tmp_path / "logs")
    assert len(after) == 6 and {name: after[name] for name in before} == before  # the finished ones untouched
    # another worker count would look for each task's log in another folder: refused before anything runs
    config = write_config(tmp_path, demo_dir, benchmarks=benchmarks, defenses=["none"], display="none", workers=3)
    assert main(["grid", str(config)]) == 2
    assert "was run with workers: 2; resume it with workers: 2" in capsys.readouterr().err
    assert logs_in(tmp_path / "logs") == after


def test_a_defense_that_cannot_be_built_stops_the_grid_before_any_worker_runs(
    demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = write_config(tmp_path, demo_dir, defenses=["none", "self_reminder", "mllm_protector"], display="none")
    assert main(["grid", str(config)]) == 2
    assert "defense mllm_protector: mllm_protector needs its harm detector" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.eval"))


def test_a_worker_that_dies_is_named_and_the_other_keeps_its_results(demo_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, demo_dir, display="none")
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    result = subprocess.run(
        [sys.executable, str(launcher), str(config)],
        cwd=REPO,
        env={**env(), "GRID_TEST_DIE_SHARD": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "BrokenProcessPool" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("FAILED worker-1 ended without a result (exit code 1); its tasks: ") for line in lines)
    assert lines[-1].startswith("INCOMPLETE: ")
    assert {Path(name).parent.name for name in logs_in(tmp_path / "logs")} == {"worker-0"}  # its shard ran
