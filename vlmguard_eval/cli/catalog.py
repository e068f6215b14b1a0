"""The names the command line knows: benchmarks (task files in `tasks/`) and defenses (`solvers/`).

This is the one place above `tasks/` and `solvers/`: the library below never imports either. Every
name is checked against these lists before anything is imported or run, so a path given as a name
(`../x`) never executes a file.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from vlmguard_eval.cli.errors import UsageError
from vlmguard_eval.defense.registry import DEFENSES, DefenseInfo

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ("siuo", "mm_safetybench", "vlguard", "figstep")
TASKS = (*BENCHMARKS, "synthesize")


def check_names(kind: str, names: Iterable[str], valid: Iterable[str]) -> list[str]:
    """The names, or a one-line UsageError naming every unknown one (with a close match) and the valid ones."""
    names, valid = list(names), list(valid)
    unknown = [n for n in names if n not in valid]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, valid, n=1)
            hints.append(repr(name) + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UsageError(f"unknown {kind} {', '.join(hints)}; valid: {', '.join(valid)}")
    return names


def task_file(name: str) -> Path:
    """`tasks/<name>.py` of the repository this package is installed from (editable install)."""
    check_names("task", [name], TASKS)
    path = REPO_ROOT / "tasks" / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} not found: use an editable install of the repository")
    return path


def task_function(name: str) -> Callable[..., Any]:
    """The @task function of a known task file."""
    path = task_file(name)
    spec = importlib.util.spec_from_file_location(f"tasks.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def defenses() -> dict[str, DefenseInfo]:
    """Every declared defense, by name (importing `solvers` registers them)."""
    import solvers  # noqa: F401

    return DEFENSES


def defense_factory(name: str) -> Callable[..., Any]:
    """The solver factory of a declared defense (its signature says which args it takes)."""
    check_names("defense", [name], defenses())
    import solvers

    return getattr(solvers, name)


def defense_solver(name: str, args: dict[str, Any] | None = None) -> Any:
    """A configured solver of a declared defense."""
    return defense_factory(name)(**(args or {}))
