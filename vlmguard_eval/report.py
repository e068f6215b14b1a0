"""Leaderboard tables from Inspect logs, read with Inspect's own API (nothing is re-run).

One row per (task, target model, defense, judge). Rates are over parsed verdicts, and each rate's
unparsed count sits beside it. Logs from different judges are separate rows, never pooled.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspect_ai.log import EvalLog, list_eval_logs, read_eval_log

# (score name, metric name, column title) for the headline columns, in order
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("safe", "rate", "safe %"),
    ("safe", "unparsed", "safe unparsed"),
    ("effective", "rate", "effective %"),
    ("effective", "unparsed", "effective unparsed"),
    ("safe_effective", "rate", "safe&effective %"),
    ("refused", "rate", "refused % (keywords)"),
    ("mcqa_correct", "rate", "MCQA accuracy %"),
    ("mcqa_no_letter", "total", "MCQA no letter"),
    ("defense_extra_calls", "mean", "extra calls / sample"),
    ("defense_extra_tokens", "mean", "extra tokens / sample"),
    ("defense_fallback", "rate", "fallback %"),
)


@dataclass
class Row:
    task: str
    model: str
    defense: str
    judge: str
    status: str
    samples: int  # items completed (sample x epoch / epochs)
    errors: int
    metrics: dict[tuple[str, str], float] = field(default_factory=dict)
    log: str = ""


def defense_of(log: EvalLog) -> str:
    """The defense that ran: the `--solver` given, else the task's own default (`none`)."""
    solver = log.eval.solver
    if solver:
        return solver.split("/")[-1]
    steps = [s.solver for s in (log.plan.steps if log.plan else [])]
    return steps[-1].split("/")[-1] if steps else "?"


def row_of(log: EvalLog) -> Row:
    roles = log.eval.model_roles or {}
    judge = roles["grader"].model if "grader" in roles else "-"
    results = log.results
    metrics: dict[tuple[str, str], float] = {}
    for score in results.scores if results else []:
        for name, value in score.metrics.items():
            # metrics from an installed package carry its prefix (pkg/rate): key on the bare name
            metrics[(score.name, name.split("/")[-1])] = value.value
    errors = sum(1 for s in log.samples or [] if s.error) if log.samples is not None else 0
    return Row(
        task=log.eval.task.split("/")[-1] + _task_variant(log),
        model=log.eval.model,
        defense=defense_of(log),
        judge=judge,
        status=log.status,
        samples=(results.completed_samples // max(log.eval.config.epochs or 1, 1)) if results else 0,
        errors=errors,
        metrics=metrics,
        log=Path(log.location).name,
    )


def _task_variant(log: EvalLog) -> str:
    fmt = (log.eval.task_args or {}).get("format")
    return f" ({fmt})" if fmt else ""


def leaderboard(log_dir: str | Path) -> list[Row]:
    """Rows for every log in `log_dir`, sorted by task, judge, model, then defense."""
    rows = [row_of(read_eval_log(info, header_only=False)) for info in list_eval_logs(str(log_dir))]
    return sorted(rows, key=lambda r: (r.task, r.judge, r.model, r.defense != "none", r.defense))


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.2f}" if not value.is_integer() else f"{value:.0f}"
    return str(value)


def write_leaderboard(rows: list[Row], out_dir: str | Path, title: str = "Leaderboard") -> Path:
    """Write leaderboard.md and leaderboard.csv; columns with no value in any row are left out."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = [c for c in HEADLINE if any((c[0], c[1]) in r.metrics for r in rows)]
    header = ["task", "target model", "defense", "judge", "status", "samples", "sample errors"] + [
        c[2] for c in columns
    ]
    table = [
        [r.task, r.model, r.defense, r.judge, r.status, str(r.samples), str(r.errors)]
        + [_fmt(r.metrics[(c[0], c[1])]) if (c[0], c[1]) in r.metrics else "-" for c in columns]
        for r in rows
    ]
    with open(out / "leaderboard.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *table])
    lines = [f"# {title}", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table]
    lines += [
        "",
        "Rates are percentages over parsed judge verdicts; 'unparsed' counts items whose judge "
        "replies did not parse (or whose epoch votes tied) and are excluded from the rate. "
        "'n/a': no verdict parsed; '-': not measured by that task. Logs: " + ", ".join(sorted({r.log for r in rows})),
    ]
    path = out / "leaderboard.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
