"""A grid in several client processes: each an eval-set over a fixed share of the tasks, one log dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlmguard_eval.cli.grid import GridConfig, build_tasks, run_grid
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
    names = [[t.name for t in build_tasks(grid, shard, 2)] for shard in range(2)]
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
