"""Options: task options checked by name, and the bound on each side call.

Task options are checked by name: a misspelled `-T` option stops the run, listing the valid ones.

Inspect passes a task only the `-T` options its function declares and merely logs a warning for the
rest, so `-T fromat=mcqa` would quietly evaluate the default format. `@strict_options`, placed under
`@task`, gives the task function a `**` catch-all (Inspect then passes every option) and refuses any
name the function does not declare. That refusal, and a bad option value or data folder found while
the task is built (a `ValueError` or a missing file), become a `TaskOptionError`: an Inspect
`PrerequisiteError`, which `inspect eval` prints as one line without a traceback. With
`VLMGUARD_DEBUG=1` the original exception propagates, traceback and all.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
from collections.abc import Callable
from typing import Any, TypeVar

from inspect_ai._util.error import PrerequisiteError
from inspect_ai.model import GenerateConfig, Model

F = TypeVar("F", bound=Callable[..., Any])

# Inspect passes `model` to every task (a task may ignore it)
ALWAYS_PASSED = frozenset({"model"})


class TaskOptionError(PrerequisiteError, ValueError):
    """A task cannot be built from the options given; the message says which and what is valid."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.args = (message,)


def debug_enabled() -> bool:
    """`VLMGUARD_DEBUG=1` (or any value but 0/empty): show full tracebacks instead of one line."""
    return os.environ.get("VLMGUARD_DEBUG", "") not in ("", "0")


def unknown_option_message(task_name: str, unknown: list[str], valid: list[str]) -> str:
    """One line: the unknown names, a close match for each, and the valid names."""
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1)
        hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    noun = "option" if len(unknown) == 1 else "options"
    return f"task {task_name} has no {noun} {', '.join(hints)}; valid -T options: {', '.join(valid)}"


def strict_options(task_function: F) -> F:
    """The task function, refusing options it does not declare (see module docstring)."""
    signature = inspect.signature(task_function)
    valid = [name for name, p in signature.parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]

    @functools.wraps(task_function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        unknown = [name for name in kwargs if name not in valid and name not in ALWAYS_PASSED]
        if unknown:
            raise TaskOptionError(unknown_option_message(task_function.__name__, unknown, valid))
        try:
            return task_function(*args, **{name: value for name, value in kwargs.items() if name in valid})
        except (ValueError, FileNotFoundError) as ex:
            if debug_enabled() or isinstance(ex, TaskOptionError):
                raise
            raise TaskOptionError(f"task {task_function.__name__}: {ex}") from ex

    catch_all = inspect.Parameter("unknown_options", inspect.Parameter.VAR_KEYWORD)
    checked.__signature__ = signature.replace(parameters=[*signature.parameters.values(), catch_all])
    del checked.__wrapped__  # Inspect must see the catch-all, not the wrapped signature
    return checked  # type: ignore[return-value]


def role_max_tokens(model: Model, default: int) -> int:
    """A side call's bound: the role's own `max_tokens` where its binding sets one, else our default.

    A role's own setting comes from Inspect's role config, e.g.
    `--model-role "grader={model: openai/gpt-4o, max_tokens: 256}"`. Without one, every side call still
    carries an explicit bound (never a provider's unstated default).
    """
    return model.config.max_tokens if model.config.max_tokens is not None else default


def role_temperature(model: Model, default: float) -> float:
    """A side call's temperature: the role's own `temperature` where its binding sets one, else our default.

    Inspect merges a call's config over the role's, so a side call that always passed our default would
    silently override `--model-role "rewriter={model: M, temperature: 0.7}"`; this reads the role's
    setting first, as `role_max_tokens` does for the bound.
    """
    return model.config.temperature if model.config.temperature is not None else default


def role_defaults(model: Model, max_tokens: int, temperature: float) -> GenerateConfig:
    """A side call's bound and temperature: the role binding's own, else these defaults."""
    return GenerateConfig(
        max_tokens=role_max_tokens(model, max_tokens), temperature=role_temperature(model, temperature)
    )


def role_config(model: Model, config: GenerateConfig) -> GenerateConfig:
    """A side call's settings, bounded in time like the target's.

    Inspect applies the eval's `attempt_timeout` (`--attempt-timeout`) to the target's calls only: a
    role model inherits timeout, retries, connections and cache, not the per-attempt bound, so a
    hanging judge, rewriter, guard or teacher would hang its sample. Here the eval's bound applies to
    every side call whose role does not set its own.
    """
    if config.attempt_timeout is not None or model.config.attempt_timeout is not None:
        return config
    # Inspect 0.3.285 has no public accessor for the eval's generate config
    from inspect_ai.model._generate_config import active_generate_config

    bound = active_generate_config().attempt_timeout
    return config if bound is None else config.merge(GenerateConfig(attempt_timeout=bound))
