"""`vlmguard-eval grid CONFIG` (and `run`, a preset grid): benchmarks x defenses x target models as one
Inspect eval-set.

Inspect's `eval_set` does the scheduling: one log dir, failed tasks retried, finished work skipped
when the same command runs again; nothing here deletes a log. The config (YAML) names everything;
see examples/grid.yaml. Every benchmark, defense and role name, every key (once: a duplicate key is
refused), every option's type and every benchmark and defense argument's type is checked, and every
task is built, before anything runs. A log dir is used only if it is new, empty or one of ours
(marked), and one grid at a time holds it (an flock on a lock file naming the holder's pid).
`attempt_timeout` bounds every model call, the roles' included (Inspect applies it to the target only).

One Inspect process tops out near 40-50 served calls/s on a small machine (bench/client_profile.py:
the client CPU is Inspect's log recorder and HTTP stack, not ours). `workers: N` runs the grid's tasks
in N processes, each its own eval-set over its share of the tasks in `LOG_DIR/worker-<k>`; the report
reads them all. A task's share is fixed by a hash of its name (a task that already has a log stays in
the folder holding it), so adding a benchmark or defense moves no finished task; N is recorded in the
log dir and a changed N is refused. Workers draw `plain` progress (the default with workers: a child
process has no terminal input for Inspect's full display). Ctrl-C, SIGTERM or SIGHUP to the grid stop
every worker (each writes its cancelled logs, or is killed after `WORKER_STOP_S`); a worker whose grid
process dies (even by SIGKILL) stops itself.

A config that cannot run (a wrong name, key or type, a task or defense that cannot be built from its
args, a folder of someone else's files) is a `UsageError`, raised before any task runs.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import multiprocessing
import os
import pickle
import re
import signal
import sys
import threading
import time
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlmguard_eval.cli.catalog import BENCHMARKS, check_names, defense_factory, defense_solver, defenses, task_function
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
# Inspect's displays (inspect_ai.util.DisplayType); a worker process has no terminal input, which the
# interactive ones need (multiprocessing closes a child's stdin): `full` fails there with a closed-file error
DISPLAYS = ("full", "conversation", "rich", "plain", "log", "none")
TERMINAL_DISPLAYS = ("full", "conversation", "rich")
WORKER_DISPLAY = "plain"
GRADER_ROLE = "grader"  # every benchmark's judge (vlmguard_eval/judging/calls.py JUDGE_ROLE)
LOG_DIR_MARK = ".vlmguard-grid"
LOCK_FILE = ".vlmguard-grid.lock"
WORKER_LOCK_FILE = ".vlmguard-worker.lock"
WORKER_DIR = re.compile(r"^worker-(\d+)$")
WORKERS_LINE = re.compile(r"^workers: (\d+)$", re.MULTILINE)
WORKER_STOP_S = 20.0  # a stopped worker's time to write its cancelled logs before it is killed


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
    return list(dict.fromkeys([GRADER_ROLE, *(role for info in defenses().values() for role in info.roles)]))


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
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
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


def worker_dirs(log_dir: Path) -> dict[int, Path]:
    """The `worker-<k>` folders of a log dir, by k."""
    if not log_dir.is_dir():
        return {}
    found = {int(m.group(1)): p for p in log_dir.iterdir() if p.is_dir() and (m := WORKER_DIR.match(p.name))}
    return dict(sorted(found.items()))


def has_logs(folder: Path) -> bool:
    return any(folder.glob("*.eval")) or any(folder.glob("*.json"))


def recorded_workers(log_dir: Path) -> int | None:
    """The worker count a log dir was run with: recorded in its mark, or for an older mark told by where its logs
    are (1 when they are in the dir itself); None when nothing tells."""
    mark = log_dir / LOG_DIR_MARK
    if not mark.is_file():
        return None
    recorded = WORKERS_LINE.search(mark.read_text(encoding="utf-8"))
    if recorded:
        return int(recorded.group(1))
    return 1 if has_logs(log_dir) else None


def claim_log_dir(log_dir: Path, workers: int | None = None) -> None:
    """Use a log dir only if it is new, empty or one of ours: eval-set removes older logs of its tasks,
    so a folder of someone else's logs must never be given to it. With `workers`, the count it was run
    with must be the same: each worker resumes only the logs in its own folder."""
    if log_dir.exists() and not log_dir.is_dir():
        raise UsageError(f"log dir {log_dir} is a file")
    if log_dir.is_dir() and any(log_dir.iterdir()) and not (log_dir / LOG_DIR_MARK).is_file():
        raise UsageError(f"log dir {log_dir} already holds files this tool did not write; choose a new or empty folder")
    text = "written by vlmguard-eval grid\n"
    if workers is not None:
        before = recorded_workers(log_dir)
        if before is None and workers == 1 and any(has_logs(d) for d in worker_dirs(log_dir).values()):
            before = len(worker_dirs(log_dir))  # an older mark: logs in worker folders, so several workers
        if before is not None and before != workers:
            raise UsageError(
                f"log dir {log_dir} was run with workers: {before}; resume it with workers: {before} "
                "(each worker resumes the logs in its own folder), or use a new log_dir"
            )
        text += f"workers: {workers}\n"
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / LOG_DIR_MARK).write_text(text, encoding="utf-8")


class LockHeld(Exception):
    """The lock is held by a live process (its pid, if it wrote one)."""

    def __init__(self, pid: str) -> None:
        super().__init__(pid)
        self.pid = pid


def _take_lock(lock: Path) -> int:
    """An fd holding an flock on `lock`, a file naming this process's pid from the moment it exists (it is written
    aside, locked, then linked into place). The kernel drops an flock when its holder dies, however it dies, so a
    lock file left behind is stale exactly when no one holds it. LockHeld when a live process holds it."""
    import fcntl

    pending = lock.with_name(f"{lock.name}.{os.getpid()}")
    fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    taken = False
    try:
        os.write(fd, str(os.getpid()).encode())
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a file only this process has named: never contended
        for _ in range(20):
            try:
                os.link(pending, lock)
                taken = True
                return fd
            except FileExistsError:
                pass
            try:
                other = os.open(lock, os.O_RDONLY)
            except FileNotFoundError:
                continue  # its holder just released it
            try:
                try:
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise LockHeld(os.read(other, 32).decode("ascii", "replace").strip() or "?") from None
                with contextlib.suppress(FileNotFoundError):  # stale: removed while held, so by one taker only
                    if os.stat(lock).st_ino == os.fstat(other).st_ino:
                        lock.unlink()
            finally:
                os.close(other)
        raise RunError(f"could not take the lock {lock}")
    finally:
        pending.unlink(missing_ok=True)
        if not taken:
            os.close(fd)


@contextlib.contextmanager
def _held(lock: Path) -> Iterator[None]:
    """Hold `lock` for the block (see `_take_lock`); the file is removed before the flock is let go."""
    fd = _take_lock(lock)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                lock.unlink()
        os.close(fd)


@contextlib.contextmanager
def grid_lock(log_dir: Path) -> Iterator[None]:
    """Hold the log dir for one grid at a time; a lock left by a killed process is taken over."""
    lock = log_dir / LOCK_FILE
    try:
        with _held(lock):
            yield
    except LockHeld as ex:
        raise RunError(f"log dir {log_dir} is in use by another grid (pid {ex.pid}); {lock}") from None


@contextlib.contextmanager
def worker_lock(folder: Path) -> Iterator[None]:
    """Hold a worker's folder: a worker of an earlier grid still running there (its grid was killed a moment ago
    and it is stopping) must not write the same tasks as a new one."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with _held(folder / WORKER_LOCK_FILE):
            yield
    except LockHeld as ex:
        raise RunError(
            f"{folder} is in use by a worker of another grid (pid {ex.pid}); wait for it to stop, then run again"
        ) from None


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
    # workers that ended without a result (killed, crashed, an error outside any task), one line each
    errors: list[str] = field(default_factory=list)


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


def run_tasks(config: GridConfig, tasks: list[Any], log_dir: Path) -> tuple[bool, list[TaskFailure]]:
    """One eval-set over `tasks` in `log_dir`: whether every task succeeded, and the tasks that did not."""
    from inspect_ai import eval_set

    if not tasks:
        return True, []
    success, logs = eval_set(
        tasks, log_dir=str(log_dir), model=config.models, model_roles=config.roles or None, **config.options
    )
    failures = [task_failure(log) for log in logs if log.status != "success"]
    # an interrupt (SIGINT) leaves cancelled logs behind yet may not raise: only all-success is success
    return (success and bool(logs) and not failures), failures


def run_shard(config: GridConfig, shard: int, names: Collection[str]) -> tuple[bool, list[TaskFailure]]:
    """One worker's eval-set: the tasks named, in `LOG_DIR/worker-<shard>`."""
    return run_tasks(config, build_tasks(config, names), Path(config.log_dir) / f"worker-{shard}")


def logged_tasks(log_dir: Path) -> dict[str, int]:
    """Each task with a log in a worker folder, and that folder's k (the lowest, should two hold it)."""
    from inspect_ai.log import list_eval_logs, read_eval_log

    held: dict[str, int] = {}
    for index, folder in worker_dirs(log_dir).items():
        for info in list_eval_logs(str(folder), recursive=False):
            try:
                header = read_eval_log(info, header_only=True)
            except Exception as ex:  # eval-set could not resume that folder either
                raise RunError(f"cannot read the log {info.name}: {one_line(ex)}; move it out of {folder}") from ex
            held.setdefault(header.eval.task, index)
    return held


def shard_plan(config: GridConfig, log_dir: Path) -> list[list[str]]:
    """Each worker's task names. A task stays with the folder that holds its log (eval-set resumes it there);
    a new one goes by a stable hash of its name (never its position: adding an entry moves nothing)."""
    count = config.workers
    held = logged_tasks(log_dir)
    shards: list[list[str]] = [[] for _ in range(count)]
    for name in dict.fromkeys(name for name, _, _ in grid_entries(config)):
        shard = held.get(name, zlib.crc32(name.encode("utf-8")) % count)
        if shard >= count:
            raise UsageError(
                f"log dir {log_dir}: worker-{shard} holds a log of task {name} but workers is {count}; resume it "
                "with the workers it was run with, or use a new log_dir"
            )
        shards[shard].append(name)
    return shards


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def watch_parent(parent_pid: int) -> None:
    """Stop this worker when its grid process is gone (even by SIGKILL, which leaves it no time to stop its
    workers): Linux's PR_SET_PDEATHSIG sends SIGINT at once; a thread watching the parent pid does it elsewhere,
    and kills the worker if it has not ended `WORKER_STOP_S` later."""
    notified = False
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            notified = libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0) == 0
    if os.getppid() != parent_pid:  # gone before the notice was asked for: none will come
        notified = False

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        if not notified:
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(WORKER_STOP_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="vlmguard-grid-parent-watch", daemon=True).start()


def _portable(ex: BaseException) -> BaseException:
    """The exception itself if it crosses to the parent (pickles), else a RunError with its message."""
    try:
        pickle.loads(pickle.dumps(ex))
        return ex
    except Exception:
        return RunError(f"{type(ex).__name__}: {one_line(ex)}")


def worker_main(config: GridConfig, shard: int, names: list[str], parent_pid: int, results: Any) -> None:
    """A worker process: its shard's eval-set, the outcome sent back to the grid. It is stopped only by its grid
    (SIGINT, sent once): it leaves the terminal's process group, so Ctrl-C reaches the grid alone, and it takes
    SIGINT even where the grid was started with SIGINT ignored (a background job)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    watch_parent(parent_pid)
    outcome: tuple[Any, ...]
    try:
        with worker_lock(Path(config.log_dir) / f"worker-{shard}"):
            outcome = ("done", *run_shard(config, shard, names))
    except KeyboardInterrupt:
        outcome = ("interrupted",)
    except BaseException as ex:  # the grid reports it beside the other workers' results
        outcome = ("error", _portable(ex))
    with contextlib.suppress(OSError):  # the grid may be gone
        results.send(outcome)
    results.close()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the grid process as Ctrl-C does (KeyboardInterrupt), so it stops its workers
    instead of dying and leaving them running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_workers(processes: list[Any]) -> None:
    """SIGINT to each live worker (Inspect then cancels its tasks and writes their logs), at most `WORKER_STOP_S`
    to end, then SIGKILL; a second interrupt meanwhile kills them at once."""
    for process in processes:
        if process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)
    deadline = time.monotonic() + WORKER_STOP_S
    try:
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()


def run_workers(config: GridConfig, shards: list[list[str]], log_dir: Path) -> GridResult:
    """Each non-empty shard in its own process; every worker's outcome, a worker that died among them."""
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")  # never fork a process that may hold threads and event loops
    started: dict[Any, tuple[int, Any]] = {}  # result pipe -> (shard, process)
    outcomes: dict[int, tuple[Any, ...] | None] = {}
    try:
        with terminate_as_interrupt():
            for shard, names in enumerate(shards):
                if not names:
                    continue
                (log_dir / f"worker-{shard}").mkdir(exist_ok=True)
                with worker_lock(log_dir / f"worker-{shard}"):  # refused here, before any worker starts
                    pass
            for shard, names in enumerate(shards):
                if not names:
                    continue
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(
                    target=worker_main,
                    args=(config, shard, names, os.getpid(), writer),
                    name=f"vlmguard-grid-worker-{shard}",
                )
                started[reader] = (shard, process)
                process.start()
                writer.close()
            pending = dict(started)
            while pending:
                for reader in wait(list(pending)):
                    shard, process = pending.pop(reader)
                    try:
                        outcomes[shard] = reader.recv()
                    except EOFError:  # it ended without a word: killed, or crashed outside Python
                        outcomes[shard] = None
                    process.join()
    except KeyboardInterrupt:
        stop_workers([process for _, process in started.values()])
        raise
    finally:
        for reader in started:
            reader.close()
    failures: list[TaskFailure] = []
    errors: list[str] = []
    success = True
    for shard, process in sorted(started.values(), key=lambda item: item[0]):
        outcome = outcomes[shard]
        tasks = ", ".join(shards[shard])
        if outcome is not None and outcome[0] == "done":
            success = success and outcome[1]
            failures += outcome[2]
            continue
        success = False
        if outcome is None:
            errors.append(f"worker-{shard} ended without a result (exit code {process.exitcode}); its tasks: {tasks}")
        elif outcome[0] == "interrupted":
            errors.append(f"worker-{shard} was interrupted; its tasks: {tasks}")
        else:
            errors.append(f"worker-{shard}: {one_line(outcome[1])}; its tasks: {tasks}")
    return GridResult(success, log_dir, failures, errors)


def execute_grid(config: GridConfig) -> GridResult:
    """Every task of the grid, in one eval-set or one per worker; the tasks that did not succeed, and why.
    Every task is built here first, so a task or defense that cannot be built stops the grid before any runs."""
    if config.workers > 1 and not all(isinstance(model, str) for model in config.roles.values()):
        raise UsageError("workers > 1 needs every role named by a model string (each worker builds its own)")
    log_dir = Path(config.log_dir)
    claim_log_dir(log_dir, config.workers)
    with grid_lock(log_dir):
        tasks = build_tasks(config)
        if config.workers == 1:
            success, failures = run_tasks(config, tasks, log_dir)
            return GridResult(success, log_dir, failures)
        del tasks  # each worker builds its own share again (a Task does not cross processes)
        return run_workers(config, shard_plan(config, log_dir), log_dir)


def run_grid(config: GridConfig) -> tuple[bool, Path]:
    """(whether every task succeeded, the log dir); `execute_grid` also says which tasks failed and why."""
    result = execute_grid(config)
    return result.success, result.log_dir
