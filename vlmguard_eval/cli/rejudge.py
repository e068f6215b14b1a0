"""`vlmguard-eval rejudge LOGDIR --grader MODEL`: score existing logs again with another judge.

Runs each log's own scorers through Inspect's scoring API (`inspect_ai.score` on the EvalLog): the
target's answers in the log are judged again and the target is never called (the model handed to
the scorers refuses any call). The new logs keep everything of the originals, replace the scores,
and record the new judge as the `grader` role, so the report shows them as a judge of their own and
compares the two (`report/agreement.py`). Only the `grader` role is bound while scoring: the other
roles of the run (a rewriter checkpoint, a guard) are recorded but never loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspect_ai.log import EvalLog, read_eval_log, write_eval_log
from inspect_ai.model import ChatMessage, GenerateConfig, Model, ModelConfig, get_model

from vlmguard_eval.cli.errors import UsageError
from vlmguard_eval.core.roles import JUDGE_ROLE


class TargetCalled(RuntimeError):
    """Re-judging asked the target model for an answer: it must only read the log's answers."""


def _refuse_target_call(messages: list[ChatMessage], config: GenerateConfig) -> str:
    raise TargetCalled("rejudge never calls the target model: a scorer asked it for a completion")


def judge_slug(model: str) -> str:
    """A folder-safe name for a judge (`openai/gpt-4o` -> `openai-gpt-4o`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-")


@dataclass
class Rejudged:
    source: str
    output: Path | None
    status: str  # "rejudged", "skipped: <why>", or "exists"


def scorers_of(log: EvalLog) -> list[Any]:
    """The log's scorers, rebuilt by name and options from this project's `scorers` package."""
    import scorers

    if not log.eval.scorers:
        raise ValueError(f"{log.location}: the log names no scorers")
    built = []
    for spec in log.eval.scorers:
        name = spec.name.split("/")[-1]
        factory = getattr(scorers, name, None)
        if factory is None:
            raise ValueError(f"{log.location}: scorer {spec.name!r} is not one of this project's ({scorers.__all__})")
        built.append(factory(**(spec.options or {})))
    return built


def rejudge_log(location: str, grader: Model, out_dir: Path, display: str = "none") -> Rejudged:
    """One log scored again by `grader`, written under `out_dir` with the same file name."""
    from inspect_ai import score

    header = read_eval_log(location, header_only=True)
    roles = dict(header.eval.model_roles or {})
    old = roles.get(JUDGE_ROLE)
    if old is None:
        return Rejudged(location, None, "skipped: the run had no grader role")
    if getattr(old, "model", None) == str(grader):
        return Rejudged(location, None, f"skipped: already judged by {grader}")
    output = out_dir / Path(location).name
    if output.exists():
        return Rejudged(location, output, "exists")
    log = read_eval_log(location)
    if not log.samples:
        return Rejudged(location, None, "skipped: the log holds no samples")
    log.eval.model_roles = None  # bind only the new judge while scoring (see module docstring)
    target = get_model(f"scripted/{judge_slug(log.eval.model)}", responder=_refuse_target_call, memoize=False)
    scored = score(
        log,
        scorers_of(log),
        model=target,
        model_roles={JUDGE_ROLE: grader},
        action="overwrite",
        display=display,
        copy=False,
    )
    # the judge's name and server; its model args are left out of the log (they may hold an API key)
    scored.eval.model_roles = {**roles, JUDGE_ROLE: ModelConfig(model=str(grader), base_url=grader.api.base_url)}
    scored.eval.metadata = {
        **(scored.eval.metadata or {}),
        "rejudged_from": location,
        "original_grader": getattr(old, "model", str(old)),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_eval_log(scored, str(output))
    return Rejudged(location, output, "rejudged")


def default_out(log_dir: Path, grader: str) -> Path:
    """Beside the log dir, never inside it: an eval-set re-run there must not meet the new logs."""
    return log_dir.parent / f"{log_dir.name}__judge-{judge_slug(grader)}"


def rejudge(
    log_dir: str | Path,
    grader: str,
    out_dir: str | Path | None = None,
    base_url: str | None = None,
    model_args: dict[str, Any] | None = None,
    display: str = "none",
) -> list[Rejudged]:
    """Every log of `log_dir` scored again by `grader` (a model name, optionally served at `base_url`); a log dir
    that is missing or holds no logs is a FileNotFoundError, as `report` has it."""
    from vlmguard_eval.report.runs import logs_in

    log_dir = Path(log_dir)
    logs = logs_in(log_dir)
    out = Path(out_dir) if out_dir else default_out(log_dir, grader)
    if out.resolve().is_relative_to(log_dir.resolve()):
        raise UsageError(f"--out {out} lies inside {log_dir}: choose a folder outside the log dir")
    judge = get_model(grader, base_url=base_url, memoize=False, **(model_args or {}))
    return [rejudge_log(info.name, judge, out, display) for info in logs]
