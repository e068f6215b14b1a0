"""Where the project keeps what it builds (`VLMGUARD_CACHE`, else ~/.cache/vlmguard-eval) and its task files."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("VLMGUARD_CACHE", Path.home() / ".cache" / "vlmguard-eval"))


REPO_ROOT = Path(__file__).resolve().parents[1]


def task_file(name: str) -> Path:
    """`tasks/<name>.py` of the repository this package is installed from (editable install)."""
    path = REPO_ROOT / "tasks" / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} not found: use an editable install of the repository")
    return path
