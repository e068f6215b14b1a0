"""`vlmguard-eval grid CONFIG` (and `run`, a preset grid): benchmarks x defenses x target models as one
Inspect eval-set.

Inspect's `eval_set` does the scheduling: one log dir, failed tasks retried, finished work skipped
when the same command runs again; nothing here deletes a log. The config (YAML) names everything;
see examples/grid.yaml. Every benchmark and defense name, and every option's type, is checked before
any task is built. A log dir is used only if it is new, empty or one of ours (marked), and one grid at
a time holds it (a lock file with the holder's pid). `attempt_timeout` bounds every model call,
the roles' included (Inspect applies it to the target only).

One Inspect process tops out near 40-50 served calls/s on a small machine (bench/client_profile.py:
the client CPU is Inspect's log recorder and HTTP stack, not ours). `workers: N` runs the grid's tasks
in N processes, each its own eval-set over a fixed share of the (benchmark, defense) tasks in
`LOG_DIR/worker-<k>`; the report reads them all. Keep N the same to resume.

A config that cannot run (a wrong name, key or type, a task or defense that cannot be built from its
args, a folder of someone else's files) is a `UsageError`, raised before any task runs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlmguard_eval.cli.catalog import BENCHMARKS, check_names, defense_solver, defenses, task_function
from vlmguard_eval.cli.errors import RunError, UsageError, one_line

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
LOG_DIR_MARK = ".vlmguard-grid"
LOCK_FILE = ".vlmguard-grid.lock"


def check_option(path: Path | str, key: str, value: Any) -> None:
    """A config value of the wrong type (a list for a number, text for a flag) is named with its key."""
    accepted = EVAL_OPTIONS[key]
    if value is None:
        return
    if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
        names = " or ".join(t.__name__ for t in accepted)
        raise UsageError(f"{path}: '{key}' must be {names}, got {type(value).__name__} {value!r}")


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
        for key, value in self.options.items():
            check_option("options", key, value)


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


def read_yaml(path: Path) -> Any:
    """The YAML file's content; a file that is missing, unreadable or not YAML is named in one line."""
    if not path.is_file():
        raise UsageError(f"grid config {path} not found" if not path.exists() else f"grid config {path} is not a file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as ex:
        raise UsageError(f"grid config {path}: cannot read: {ex}") from ex
    except yaml.YAMLError as ex:
        raise UsageError(f"grid config {path}: not valid YAML: {ex}") from ex


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
    try:
        return GridConfig(
            benchmarks=benchmarks,
            defenses=defense_entries,
            models=list(raw["models"]),
            roles=dict(raw.get("roles") or {}),
            log_dir=str(raw.get("log_dir", "logs/grid")),
            report_dir=raw.get("report_dir"),
            options={k: raw[k] for k in EVAL_OPTIONS if k in raw},
            workers=raw.get("workers", 1),
        )
    except UsageError as ex:  # a name or value GridConfig refuses
        raise UsageError(f"{path}: {ex}") from None


def build_tasks(config: GridConfig, shard: int = 0, shards: int = 1) -> list[Any]:
    """One Task per (benchmark entry, defense), those of this shard only; eval_set crosses them with the models."""
    from inspect_ai import task_with

    tasks = []
    pairs = [(i, bench, defense) for i, bench in enumerate(config.benchmarks) for defense in config.defenses]
    for position, (index, bench, defense) in enumerate(pairs):
        if position % shards != shard:
            continue
        args = dict(bench.get("args") or {})
        variant = args.get("format") or args.get("image_type") or args.get("subset") or str(index)
        variant = variant if isinstance(variant, str) else "-".join(map(str, variant))
        solver = build_solver(defense["name"], defense.get("args"))
        task = build_task(bench["task"], args)
        tasks.append(task_with(task, solver=solver, name=f"{bench['task']}_{variant}__{defense['name']}"))
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


def claim_log_dir(log_dir: Path) -> None:
    """Use a log dir only if it is new, empty or one of ours: eval-set removes older logs of its tasks,
    so a folder of someone else's logs must never be given to it."""
    if log_dir.exists() and not log_dir.is_dir():
        raise UsageError(f"log dir {log_dir} is a file")
    if log_dir.is_dir() and any(log_dir.iterdir()) and not (log_dir / LOG_DIR_MARK).is_file():
        raise UsageError(f"log dir {log_dir} already holds files this tool did not write; choose a new or empty folder")
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / LOG_DIR_MARK).write_text("written by vlmguard-eval grid\n", encoding="utf-8")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def grid_lock(log_dir: Path) -> Iterator[None]:
    """Hold the log dir for one grid at a time; a lock left by a killed process is taken over."""
    lock = log_dir / LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            text = lock.read_text(encoding="utf-8").strip()
            holder = int(text) if text.isdigit() else 0
            if holder and holder != os.getpid() and _alive(holder):
                raise RunError(f"log dir {log_dir} is in use by another grid (pid {holder}); {lock}") from None
            lock.unlink(missing_ok=True)  # stale: its holder is gone
    else:
        raise RunError(f"could not take the lock {lock}")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


@dataclass(frozen=True)
class TaskFailure:
    """A task whose log does not end in success, as the log tells it."""

    task: str
    model: str  # the target model
    status: str  # the log's status: error, cancelled, started
    error: str  # the log's error message in one line ("" when it has none, e.g. cancelled)
    # the error is a PrerequisiteError (a role not bound, a package or API key missing, a task option): the same
    # command fails the same way until the setup changes, so running it again does not help
    configuration: bool = False


@dataclass(frozen=True)
class GridResult:
    success: bool  # every task ran and succeeded
    log_dir: Path
    failures: list[TaskFailure] = field(default_factory=list)


# the exception line of a traceback, `module.Class: message` (in an exception group, after `|`)
EXCEPTION_LINE = re.compile(r"^[ |]*([A-Za-z_][\w.]*): ", re.MULTILINE)
CONFIGURATION_ERRORS = ("PrerequisiteError", "TaskOptionError")
ERROR_CHARS = 400  # a failure's error as printed; the log holds all of it


def task_failure(log: Any) -> TaskFailure:
    """A log that did not succeed, with its error in one line and whether it is a configuration error."""
    if log.error is None:
        return TaskFailure(log.eval.task, log.eval.model, log.status, "")
    message = one_line(log.error.message)
    message = message if len(message) <= ERROR_CHARS else message[: ERROR_CHARS - 3] + "..."
    raised = EXCEPTION_LINE.findall(log.error.traceback or "")
    configuration = bool(raised) and raised[-1].rsplit(".", 1)[-1] in CONFIGURATION_ERRORS
    return TaskFailure(log.eval.task, log.eval.model, log.status, message, configuration)


def run_shard(config: GridConfig, shard: int = 0, shards: int = 1) -> tuple[bool, list[TaskFailure]]:
    """One eval-set over this shard's tasks (all of them with one shard), in its own log folder: whether every
    task succeeded, and the tasks that did not."""
    from inspect_ai import eval_set

    tasks = build_tasks(config, shard, shards)
    if not tasks:
        return True, []
    log_dir = Path(config.log_dir) / f"worker-{shard}" if shards > 1 else Path(config.log_dir)
    success, logs = eval_set(
        tasks, log_dir=str(log_dir), model=config.models, model_roles=config.roles or None, **config.options
    )
    failures = [task_failure(log) for log in logs if log.status != "success"]
    # an interrupt (SIGINT) leaves cancelled logs behind yet may not raise: only all-success is success
    return (success and bool(logs) and not failures), failures


def execute_grid(config: GridConfig) -> GridResult:
    """Every task of the grid, in one eval-set or one per worker; the tasks that did not succeed, and why."""
    if config.workers > 1 and not all(isinstance(model, str) for model in config.roles.values()):
        raise UsageError("workers > 1 needs every role named by a model string (each worker builds its own)")
    log_dir = Path(config.log_dir)
    claim_log_dir(log_dir)
    with grid_lock(log_dir):
        if config.workers == 1:
            success, failures = run_shard(config)
            return GridResult(success, log_dir, failures)
        count = config.workers
        with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(run_shard, [config] * count, range(count), [count] * count))
    return GridResult(all(ok for ok, _ in results), log_dir, [f for _, shard in results for f in shard])


def run_grid(config: GridConfig) -> tuple[bool, Path]:
    """(whether every task succeeded, the log dir); `execute_grid` also says which tasks failed and why."""
    result = execute_grid(config)
    return result.success, result.log_dir
