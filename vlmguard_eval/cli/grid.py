"""`vlmguard-eval grid CONFIG` (and `run`, a preset grid): benchmarks x defenses x target models as one
Inspect eval-set.

Inspect's `eval_set` does the scheduling: one log dir, failed tasks retried, finished work skipped
when the same command runs again; nothing here deletes a log. The config (YAML, checked in grid_config.py)
names everything, and every task is built before anything runs; the log dir is claimed and held as
log_dir.py says. `attempt_timeout` bounds every model call, the roles' included (Inspect applies it to the
target only).

One Inspect process tops out near 40-50 served calls/s on a small machine (bench/client_profile.py:
the client CPU is Inspect's log recorder and HTTP stack, not ours). `workers: N` runs the grid's tasks
in N processes, each its own eval-set over its share of the tasks in `LOG_DIR/worker-<k>`; the report
reads them all. A task's share is fixed by a hash of its name (a task that already has a log stays in
the folder holding it), so adding a benchmark or defense moves no finished task; N is recorded in the
log dir and a changed N is refused. Workers draw `plain` progress (the default with workers: a child
process has no terminal input for Inspect's full display). Ctrl-C, SIGTERM or SIGHUP to the grid stop
every worker (each writes its cancelled logs, or is killed after `WORKER_STOP_S`); a worker whose grid
process dies (even by SIGKILL) stops itself.
"""

from __future__ import annotations

import contextlib
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

from vlmguard_eval.cli.errors import RunError, UsageError, one_line
from vlmguard_eval.cli.grid_config import GridConfig, build_tasks, grid_entries
from vlmguard_eval.cli.log_dir import claim_log_dir, grid_lock, logged_tasks, worker_lock

WORKER_STOP_S = 20.0  # a stopped worker's time to write its cancelled logs before it is killed


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
    from inspect_ai.model import GenerateConfig, get_model

    # each model resolved with a config of its own: Inspect gives every name of a model list one shared config
    # object, and a provider may set it (hfvlm takes Inspect's static concurrency path), which must not change
    # how a served model beside it is driven; the eval's options still apply to each as its active config
    models = [get_model(name, config=GenerateConfig()) for name in config.models]
    success, logs = eval_set(
        tasks, log_dir=str(log_dir), model=models, model_roles=config.roles or None, **config.options
    )
    failures = [task_failure(log) for log in logs if log.status != "success"]
    # an interrupt (SIGINT) leaves cancelled logs behind yet may not raise: only all-success is success
    return (success and bool(logs) and not failures), failures


def run_shard(config: GridConfig, shard: int, names: Collection[str]) -> tuple[bool, list[TaskFailure]]:
    """One worker's eval-set: the tasks named, in `LOG_DIR/worker-<shard>`."""
    return run_tasks(config, build_tasks(config, names), Path(config.log_dir) / f"worker-{shard}")


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
    if log_dir.exists() and not log_dir.is_dir():
        raise UsageError(f"log dir {log_dir} is a file")
    log_dir.mkdir(parents=True, exist_ok=True)
    with grid_lock(log_dir):  # held before the dir is claimed: a second grid never rewrites the first's mark
        claim_log_dir(log_dir, config.workers)
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
