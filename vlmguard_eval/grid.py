"""`vlmguard-eval grid CONFIG`: benchmarks x defenses x target models as one Inspect eval-set.

Inspect's `eval_set` does the scheduling: one log dir, failed tasks retried, finished work skipped
when the same command runs again. The config (YAML) names everything; see examples/grid.yaml.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .paths import task_file

EVAL_OPTIONS = (
    "limit",
    "max_tokens",
    "max_connections",
    "max_samples",
    "fail_on_error",
    "retry_attempts",
    "retry_wait",
    "epochs",
    "temperature",
    "seed",
    "display",
)


@dataclass
class GridConfig:
    benchmarks: list[dict[str, Any]]
    defenses: list[dict[str, Any]]
    models: list[str]
    roles: dict[str, Any] = field(default_factory=dict)
    log_dir: str = "logs/grid"
    report_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def load_config(path: str | Path) -> GridConfig:
    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a YAML mapping")
    for key in ("benchmarks", "defenses", "models"):
        if not raw.get(key):
            raise ValueError(f"{path}: '{key}' is required and must not be empty")
    unknown = set(raw) - {"benchmarks", "defenses", "models", "roles", "log_dir", "report_dir", *EVAL_OPTIONS}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    benchmarks = [b if isinstance(b, dict) else {"task": b} for b in raw["benchmarks"]]
    defenses = [d if isinstance(d, dict) else {"name": d} for d in raw["defenses"]]
    for index, entry in enumerate(benchmarks):
        if "task" not in entry:
            raise ValueError(f"{path}: benchmarks[{index}] needs 'task' (siuo, mm_safetybench or vlguard)")
    return GridConfig(
        benchmarks=benchmarks,
        defenses=defenses,
        models=list(raw["models"]),
        roles=dict(raw.get("roles") or {}),
        log_dir=str(raw.get("log_dir", "logs/grid")),
        report_dir=raw.get("report_dir"),
        options={k: raw[k] for k in EVAL_OPTIONS if k in raw},
    )


def _task_function(name: str) -> Any:
    path = task_file(name)
    spec = importlib.util.spec_from_file_location(f"tasks.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def build_tasks(config: GridConfig) -> list[Any]:
    """One Task per (benchmark entry, defense); eval_set crosses them with the models."""
    from inspect_ai import task_with

    import solvers

    tasks = []
    for index, bench in enumerate(config.benchmarks):
        args = dict(bench.get("args") or {})
        variant = args.get("format") or args.get("image_type") or args.get("subset") or str(index)
        variant = variant if isinstance(variant, str) else "-".join(map(str, variant))
        for defense in config.defenses:
            name = defense["name"]
            if not hasattr(solvers, name):
                raise ValueError(f"unknown defense {name!r}; exported by solvers/: {', '.join(solvers.__all__)}")
            solver = getattr(solvers, name)(**(defense.get("args") or {}))
            task = _task_function(bench["task"])(**args)
            tasks.append(task_with(task, solver=solver, name=f"{bench['task']}_{variant}__{name}"))
    return tasks


def run_grid(config: GridConfig) -> tuple[bool, Path]:
    from inspect_ai import eval_set

    options = dict(config.options)
    success, _ = eval_set(
        build_tasks(config), log_dir=config.log_dir, model=config.models, model_roles=config.roles or None, **options
    )
    return success, Path(config.log_dir)
