"""A grid's log dir: used only if it is new, empty or one of ours (marked), and held by one grid at a time (an
flock on a lock file naming the holder's pid); each `worker-<k>` folder is held so by its worker.

The mark records the worker count the dir was run with, and a changed count is refused: each worker resumes
only the logs in its own folder. A folder of someone else's files is a `UsageError`, raised before any task runs.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from vlmguard_eval.cli.errors import RunError, UsageError, one_line

LOG_DIR_MARK = ".vlmguard-grid"
LOCK_FILE = ".vlmguard-grid.lock"
WORKER_LOCK_FILE = ".vlmguard-worker.lock"
WORKER_DIR = re.compile(r"^worker-(\d+)$")
WORKERS_LINE = re.compile(r"^workers: (\d+)$", re.MULTILINE)


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
    ours = (LOG_DIR_MARK, LOCK_FILE)  # the lock (and its pid-named spare) is taken before the dir is claimed
    others = [entry for entry in log_dir.iterdir() if not entry.name.startswith(ours)] if log_dir.is_dir() else []
    if others and not (log_dir / LOG_DIR_MARK).is_file():
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
