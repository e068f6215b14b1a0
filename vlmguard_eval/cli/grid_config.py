"""A grid's YAML config (see examples/grid.yaml), checked whole before anything runs, and the tasks it names.

Every benchmark, defense and role name, every key (once: a duplicate key is refused), every option's type and
every benchmark and defense argument's type is checked on reading. A task is named by its benchmark, the argument
choosing what it asks and its defense, never its position, so eval-set resumes it from a reordered config.
A config that cannot run (a wrong name, key or type, a task or defense that cannot be built from its args) is a
`UsageError`, raised before any task runs.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlmguard_eval.cli.catalog import BENCHMARKS, check_names, defense_factory, defense_solver, defenses, task_function
from vlmguard_eval.cli.errors import RunError, UsageError
from vlmguard_eval.core.roles import JUDGE_ROLE

# each option with the types it accepts (bool is never taken for a number)
EVAL_OPTIONS: dict[str, tuple[type, ...]] = {
    "limit": (int,),
    "max_tokens": (int,),
    "max_connections": (int,),
    "max_samples": (int,),
    "max_tasks": (int,),
    "fail_on_error": (bool, float, int),
    "retry_attempts": (int,),
    "retry_wait": (int, float),
    "epochs": (int,),
    "temperature": (int, float),
    "seed": (int,),
    "display": (str,),
    "attempt_timeout": (int, float),
    "max_retries": (int,),
    "timeout": (int, float),
}
# Inspect's displays (inspect_ai.util.DisplayType); a worker process has no terminal input, which the
# interactive ones need (multiprocessing closes a child's stdin): `full` fails there with a closed-file error
DISPLAYS = ("full", "conversation", "rich", "plain", "log", "none")
TERMINAL_DISPLAYS = ("full", "conversation", "rich")
WORKER_DISPLAY = "plain"


def check_option(path: Path | str, key: str, value: Any) -> None:
    """A config value of the wrong type (a list for a number, text for a flag) is named with its key."""
    accepted = EVAL_OPTIONS[key]
    if value is None:
        return
    if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
        names = " or ".join(t.__name__ for t in accepted)
        raise UsageError(f"{path}: '{key}' must be {names}, got {type(value).__name__} {value!r}")


def known_roles() -> list[str]:
    """The model roles a grid can bind: the judge's and every defense's declared ones (a grid runs no synthesis)."""
    return list(dict.fromkeys([JUDGE_ROLE, *(role for info in defenses().values() for role in info.roles)]))


@dataclass
class GridConfig:
    benchmarks: list[dict[str, Any]]
    defenses: list[dict[str, Any]]
    models: list[str]
    roles: dict[str, Any] = field(default_factory=dict)
    log_dir: str = "logs/grid"
    report_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    workers: int = 1  # client processes, each an eval-set over its share of the tasks

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise UsageError(f"'workers' must be a whole number >= 1, got {self.workers!r}")
        check_names("benchmark", [b["task"] for b in self.benchmarks], BENCHMARKS)
        check_names("defense", [d["name"] for d in self.defenses], defenses())
        try:  # a misspelled role would leave the role it meant unbound (an optional one silently)
            check_names("role", list(self.roles), known_roles())
        except UsageError as ex:
            raise UsageError(f"'roles': {ex}") from None
        for key, value in self.options.items():
            check_option("options", key, value)
        display = self.options.get("display")
        if display is not None and display not in DISPLAYS:
            raise UsageError(f"'display' must be one of {', '.join(DISPLAYS)}, got {display!r}")
        if self.workers > 1:
            if display in TERMINAL_DISPLAYS:
                raise UsageError(
                    f"'display: {display}' cannot run with workers: {self.workers} (a worker process has no "
                    f"terminal input); use {WORKER_DISPLAY} (the default with workers), log or none"
                )
            if display is None:
                self.options = {**self.options, "display": WORKER_DISPLAY}


def _entries(path: Path, raw: dict[str, Any], key: str, name_key: str) -> list[dict[str, Any]]:
    """A list of names or {name_key: ..., args: {...}} mappings, each checked for shape."""
    value = raw[key]
    if not isinstance(value, list):
        raise UsageError(f"{path}: '{key}' must be a list, got {type(value).__name__}")
    entries = []
    for index, entry in enumerate(value):
        entry = {name_key: entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or not isinstance(entry.get(name_key), str):
            raise UsageError(f"{path}: {key}[{index}] needs '{name_key}' (a name)")
        extra = set(entry) - {name_key, "args"}
        if extra:
            raise UsageError(f"{path}: {key}[{index}] has unknown keys {sorted(extra)} (it takes {name_key}, args)")
        if not isinstance(entry.get("args") or {}, dict):
            raise UsageError(f"{path}: {key}[{index}].args must be a mapping")
        entries.append(entry)
    return entries


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice: plain YAML loaders keep the last silently, dropping the first."""

    def __init__(self, key: object, line: int, first: int) -> None:
        super().__init__(f"line {line}: duplicate key {key!r} (first at line {first}); YAML keeps only the last")


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (a merge key, `<<: *anchor`, is no key:
    the keys it brings may be overridden, as YAML means)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            with contextlib.suppress(TypeError):  # an unhashable key: SafeLoader's own error names it
                if key in first_lines:
                    raise DuplicateKeyError(key, key_node.start_mark.line + 1, first_lines[key])
                first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """The YAML file's content; a file that is missing, unreadable or not YAML is named in one line."""
    if not path.is_file():
        raise UsageError(f"grid config {path} not found" if not path.exists() else f"grid config {path} is not a file")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # a SafeLoader
    except (OSError, UnicodeDecodeError) as ex:
        raise UsageError(f"grid config {path}: cannot read: {ex}") from ex
    except DuplicateKeyError as ex:
        raise UsageError(f"{path}: {ex}") from ex
    except yaml.YAMLError as ex:
        raise UsageError(f"grid config {path}: not valid YAML: {ex}") from ex


def type_name(annotation: Any) -> str:
    """`int`, `str | None`, `str | list[str]`: an annotation as it is written."""
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def check_arguments(where: str, what: str, function: Any, args: dict[str, Any]) -> None:
    """Each argument a name `function` declares and of its annotated type (strict: text is never taken for a
    number or a flag, `"no"` is not false), so a wrong one is refused naming its entry before anything runs."""
    from pydantic import TypeAdapter, ValidationError

    parameters = {
        name: parameter
        for name, parameter in inspect.signature(function, eval_str=True).parameters.items()
        if parameter.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    }
    for key, value in args.items():
        if key not in parameters:
            close = difflib.get_close_matches(str(key), list(parameters), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            valid = ", ".join(parameters) or "none"
            raise UsageError(f"{where}.args: {what} has no argument '{key}'{hint}; valid: {valid}")
        annotation = parameters[key].annotation
        if annotation is inspect.Parameter.empty:
            continue
        try:
            TypeAdapter(annotation).validate_python(value, strict=True)
        except ValidationError:
            raise UsageError(f"{where}.args.{key} must be {type_name(annotation)}, got {value!r}") from None


def load_config(path: str | Path) -> GridConfig:
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a YAML mapping")
    for key in ("benchmarks", "defenses", "models"):
        if not raw.get(key):
            raise UsageError(f"{path}: '{key}' is required and must not be empty")
    known = {"benchmarks", "defenses", "models", "roles", "log_dir", "report_dir", "workers", *EVAL_OPTIONS}
    unknown = set(raw) - known
    if unknown:
        raise UsageError(f"{path}: unknown keys {sorted(unknown)}")
    if not isinstance(raw["models"], list) or not all(isinstance(m, str) for m in raw["models"]):
        raise UsageError(f"{path}: 'models' must be a list of model names, got {raw['models']!r}")
    roles = raw.get("roles") or {}
    if not isinstance(roles, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in roles.items()):
        raise UsageError(f"{path}: 'roles' must be a mapping of role -> model name, got {roles!r}")
    for key in ("log_dir", "report_dir"):
        if key in raw and not isinstance(raw[key], str):
            raise UsageError(f"{path}: '{key}' must be a folder path (text), got {type(raw[key]).__name__}")
    for key in EVAL_OPTIONS:
        if key in raw:
            check_option(path, key, raw[key])
    benchmarks = _entries(path, raw, "benchmarks", "task")
    defense_entries = _entries(path, raw, "defenses", "name")
    report_dir = raw.get("report_dir")
    try:
        config = GridConfig(
            benchmarks=benchmarks,
            defenses=defense_entries,
            models=list(raw["models"]),
            roles=dict(raw.get("roles") or {}),
            log_dir=os.path.expanduser(raw.get("log_dir", "logs/grid")),  # `~/x` is the home's, as in a shell
            report_dir=os.path.expanduser(report_dir) if report_dir is not None else None,
            options={k: raw[k] for k in EVAL_OPTIONS if k in raw},
            workers=raw.get("workers", 1),
        )
        # the names are known now: each entry's arguments against its task's or defense's signature
        for index, bench in enumerate(config.benchmarks):
            function = task_function(bench["task"])
            check_arguments(f"benchmarks[{index}]", f"benchmark {bench['task']}", function, bench.get("args") or {})
        for index, defense in enumerate(config.defenses):
            function = defense_factory(defense["name"])
            check_arguments(f"defenses[{index}]", f"defense {defense['name']}", function, defense.get("args") or {})
    except UsageError as ex:  # a name or value GridConfig refuses
        raise UsageError(f"{path}: {ex}") from None
    return config


VARIANT_ARGS = ("format", "image_type", "subset")  # the arguments that choose what a benchmark asks


def task_name(bench: dict[str, Any], defense: dict[str, Any]) -> str:
    """`siuo_mcqa__none`, `vlguard__none`: the benchmark with the argument choosing what it asks, and the defense.
    Never the entry's position, so a reordered or extended config keeps every name and eval-set resumes each task
    (entries of one name differ by their args, which Inspect's task identity tells apart)."""
    args = bench.get("args") or {}
    variant = next((args[key] for key in VARIANT_ARGS if args.get(key)), None)
    if variant is None:
        return f"{bench['task']}__{defense['name']}"
    variant = variant if isinstance(variant, str) else "-".join(map(str, variant))
    return f"{bench['task']}_{variant}__{defense['name']}"


def grid_entries(config: GridConfig) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(task name, benchmark entry, defense entry) for every pair, in the config's order."""
    return [(task_name(bench, defense), bench, defense) for bench in config.benchmarks for defense in config.defenses]


def build_tasks(config: GridConfig, names: Collection[str] | None = None) -> list[Any]:
    """One Task per (benchmark entry, defense), those named in `names` only (default all); eval_set crosses
    them with the models."""
    from inspect_ai import task_with

    tasks = []
    for name, bench, defense in grid_entries(config):
        if names is not None and name not in names:
            continue
        solver = build_solver(defense["name"], defense.get("args"))
        task = build_task(bench["task"], dict(bench.get("args") or {}))
        tasks.append(task_with(task, solver=solver, name=name))
    return tasks


def build_solver(name: str, args: dict[str, Any] | None) -> Any:
    """The defense's solver; args it refuses (a missing side model, an unknown name) are a UsageError."""
    try:
        return defense_solver(name, args)
    except (ValueError, TypeError) as ex:  # its own checks, or an argument it does not take
        raise UsageError(f"defense {name}: {ex}") from ex


def build_task(name: str, args: dict[str, Any]) -> Any:
    """The benchmark's task. Options it refuses (TaskOptionError: a wrong value, a missing folder or font) are
    a UsageError; data it cannot get (the loaders' RuntimeError: a hub download that failed) a RunError.
    Both keep the benchmark's name: `run` names its own flags in place of the message's -T options."""
    from vlmguard_eval.core.options import TaskOptionError

    try:
        return task_function(name)(**args)
    except TaskOptionError as ex:
        raise UsageError(str(ex), benchmark=name) from ex
    except RuntimeError as ex:
        raise RunError(f"task {name}: {ex}", benchmark=name) from ex


def task_option_hints(message: str, flags: dict[str, str]) -> str:
    """`message` with each `-T NAME=` it names spelled as the command's own flag (`--siuo-dir `) where it has one."""
    return re.sub(r"-T (\w+)=", lambda m: f"{flags[m.group(1)]} " if m.group(1) in flags else m.group(0), message)
