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
    ("attack", "rate", "MM-SB attack %"),
    ("attack", "unparsed", "MM-SB attack unparsed"),
    ("attack_success", "subset_unsafes", "VLGuard ASR unsafes %"),
    ("attack_success", "subset_safe_unsafes", "VLGuard ASR safe_unsafes %"),
    ("helpfulness_win", "rate", "VLGuard win % (tie = 1/2)"),
    ("helpfulness_win", "unparsed", "VLGuard win unparsed"),
    ("unified_safety", "mean_of_parsed", "unified safety (0-10)"),
    ("unified_helpfulness", "mean_of_parsed", "unified helpfulness (0-100)"),
    ("unified_safety", "unparsed", "unified unparsed"),
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
    args = log.eval.task_args or {}
    variant = args.get("format") or args.get("image_type") or args.get("subset")
    return f" ({variant if isinstance(variant, str) else ','.join(map(str, variant))})" if variant else ""


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


def _markdown_table(header: list[str], table: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table]


def write_leaderboard(rows: list[Row], out_dir: str | Path, title: str = "Leaderboard") -> Path:
    """Write leaderboard.md (a section per task, with that task's columns) and leaderboard.csv (all)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fixed = ["task", "target model", "defense", "judge", "status", "samples", "sample errors"]

    def cells(row: Row, columns: list[tuple[str, str, str]]) -> list[str]:
        values = [_fmt(row.metrics[(c[0], c[1])]) if (c[0], c[1]) in row.metrics else "-" for c in columns]
        return [row.task, row.model, row.defense, row.judge, row.status, str(row.samples), str(row.errors), *values]

    every = [c for c in HEADLINE if any((c[0], c[1]) in r.metrics for r in rows)]
    with open(out / "leaderboard.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([fixed + [c[2] for c in every], *(cells(r, every) for r in rows)])
    lines = [f"# {title}", ""]
    for task in dict.fromkeys(r.task for r in rows):
        group = [r for r in rows if r.task == task]
        columns = [c for c in HEADLINE if any((c[0], c[1]) in r.metrics for r in group)]
        lines += [
            f"## {task}",
            "",
            *_markdown_table(fixed[1:] + [c[2] for c in columns], [cells(r, columns)[1:] for r in group]),
            "",
        ]
    lines += [
        "Rates are percentages over parsed judge verdicts; 'unparsed' counts items whose judge replies did not "
        "parse (or whose epoch votes tied), left out of the rate. 'n/a': no verdict parsed. "
        "See results/README.md for every column.",
        "",
        "Logs: " + ", ".join(sorted({r.log for r in rows})),
    ]
    path = out / "leaderboard.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
