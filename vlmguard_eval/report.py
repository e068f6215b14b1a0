"""Leaderboards from Inspect logs, read with Inspect's API (nothing is re-run).

Per-sample scores come from each log's sample summaries (fast: no transcripts are read), are reduced
per item by the same rule the tasks use (`aggregate`), and give every rate and mean a 95% bootstrap
interval and a paired test against `none` on the same items, model and judge. One row per
(benchmark, target model, defense, judge): logs from different judges are never pooled.
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import re
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from inspect_ai.log import EvalLog, list_eval_logs, read_eval_log, read_eval_log_sample_summaries

from .aggregate import NOT_APPLICABLE, reduce_key
from .stats import bootstrap_ci, paired_p


@dataclass(frozen=True)
class Measure:
    label: str
    scale: float = 1.0  # 100 for 0/1 rates shown as percentages
    judged: bool = False  # comes from a judge model, so it can be unparsed


MEASURES: dict[str, Measure] = {
    "safe": Measure("safe %", 100, True),
    "effective": Measure("effective %", 100, True),
    "safe_effective": Measure("safe&effective %", 100, True),
    "refused": Measure("refused % (keywords)", 100),
    "mcqa_correct": Measure("MCQA accuracy %", 100),
    "attack": Measure("attack rate %", 100, True),
    "attack_success": Measure("ASR %", 100),
    "attack_success[unsafes]": Measure("ASR unsafes %", 100),
    "attack_success[safe_unsafes]": Measure("ASR safe_unsafes %", 100),
    "helpfulness_win": Measure("win % vs reference (tie = 1/2)", 100, True),
    "unified_safety": Measure("unified safety (0-10)", 1, True),
    "unified_helpfulness": Measure("unified helpfulness (0-100)", 1, True),
    "defense_extra_calls": Measure("extra calls / sample"),
    "defense_extra_tokens": Measure("extra tokens / sample"),
    "defense_fallback": Measure("fallback %", 100),
}
SPLITS = {"attack_success": "subset"}  # measures also reported per value of a metadata key
COST = ("defense_extra_calls", "defense_extra_tokens", "defense_fallback")
# (measure, sign): the first one a benchmark has is its safety / helpfulness axis; sign -1 means 100 - rate
SAFETY_AXIS = (("safe", 1), ("attack", -1), ("attack_success", -1), ("unified_safety", 1))
HELPFULNESS_AXIS = (("effective", 1), ("helpfulness_win", 1), ("mcqa_correct", 1), ("unified_helpfulness", 1))
GROUP_KEYS = ("category", "subset")


@dataclass
class Stat:
    value: float
    low: float
    high: float
    n: int
    unparsed: int
    delta: float | None = None
    p_value: float | None = None


@dataclass
class Run:
    benchmark: str
    model: str
    defense: str
    judge: str
    status: str
    log: str
    errors: int
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # measure -> item -> value (None = unparsed)
    groups: dict[str, dict[str, str]] = field(default_factory=dict)  # item -> {category, subset}
    stats: dict[str, Stat] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.benchmark, self.model, self.judge)


def defense_of(log: EvalLog) -> str:
    """The defense that ran: the `--solver` given, else the last step of the task's plan."""
    if log.eval.solver:
        return log.eval.solver.split("/")[-1]
    steps = [s.solver for s in (log.plan.steps if log.plan else [])]
    return steps[-1].split("/")[-1] if steps else "?"


def benchmark_of(log: EvalLog) -> str:
    name = (log.eval.task_registry_name or log.eval.task).split("/")[-1]
    args = log.eval.task_args or {}
    variant = args.get("format") or args.get("image_type") or args.get("subset")
    if variant is None:
        return name
    return f"{name} ({variant if isinstance(variant, str) else ','.join(map(str, variant))})"


def load_run(location: str) -> Run:
    header = read_eval_log(location, header_only=True)
    roles = header.eval.model_roles or {}
    run = Run(
        benchmark=benchmark_of(header),
        model=header.eval.model,
        defense=defense_of(header),
        judge=roles["grader"].model if "grader" in roles else "-",
        status=header.status,
        log=Path(location).name,
        errors=0,
    )
    epochs: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for summary in read_eval_log_sample_summaries(location):
        item = str(summary.id)
        if summary.error:
            run.errors += 1
            continue
        metadata = summary.metadata or {}
        run.groups[item] = {k: str(metadata[k]) for k in GROUP_KEYS if k in metadata}
        for scorer, score in (summary.scores or {}).items():
            for key, value in score.value.items() if isinstance(score.value, dict) else [(scorer, score.value)]:
                epochs[item][key].append(value)
    for item, keys in epochs.items():
        for key, values in keys.items():
            value = reduce_key(key, values)
            if value == NOT_APPLICABLE:
                continue
            run.values.setdefault(key, {})[item] = value
            if key in SPLITS and SPLITS[key] in run.groups[item]:
                run.values.setdefault(f"{key}[{run.groups[item][SPLITS[key]]}]", {})[item] = value
    return run


def _array(values: dict[str, Any]) -> np.ndarray:
    return np.array([float(v) for v in values.values() if v is not None], dtype=float)


def compute_stats(runs: list[Run]) -> None:
    """Value, CI and unparsed count per measure; delta and paired p against `none` of the same key."""
    baselines = {run.key: run for run in runs if run.defense == "none"}
    for run in runs:
        for name, values in run.values.items():
            scale = MEASURES.get(name, Measure(name)).scale
            parsed = _array(values)
            low, high = bootstrap_ci(parsed)
            stat = Stat(
                value=float(parsed.mean()) * scale if len(parsed) else math.nan,
                low=low * scale,
                high=high * scale,
                n=len(parsed),
                unparsed=sum(v is None for v in values.values()),
            )
            base = baselines.get(run.key)
            if base is not None and base is not run and name in base.values and name not in COST:
                shared = [i for i, v in values.items() if v is not None and base.values[name].get(i) is not None]
                if shared:
                    a = np.array([float(values[i]) for i in shared])
                    b = np.array([float(base.values[name][i]) for i in shared])
                    stat.delta = float((a - b).mean()) * scale
                    stat.p_value = paired_p(a, b)
            run.stats[name] = stat


def load_runs(log_dir: str | Path) -> list[Run]:
    """Every log in `log_dir`, with its statistics, sorted for reading.

    Parsing sample summaries is the bulk of the work and is CPU-bound, so logs are read in parallel
    worker processes (forked: nothing is re-imported) where the platform allows it.
    """
    locations = [info.name for info in list_eval_logs(str(log_dir))]
    workers = min(len(locations), os.cpu_count() or 1)
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            runs = list(pool.map(load_run, locations))
    else:
        runs = [load_run(location) for location in locations]
    compute_stats(runs)
    return sorted(runs, key=lambda r: (r.benchmark, r.judge, r.model, r.defense != "none", r.defense))


def axis_value(run: Run, axis: tuple[tuple[str, int], ...]) -> tuple[str, Stat] | None:
    """The run's value on a safety or helpfulness axis (sign -1: shown as 100 - rate)."""
    for name, sign in axis:
        stat = run.stats.get(name)
        if stat is not None and stat.n:
            if sign > 0:
                return name, stat
            return name, Stat(
                100 - stat.value,
                100 - stat.high,
                100 - stat.low,
                stat.n,
                stat.unparsed,
                None if stat.delta is None else -stat.delta,
                stat.p_value,
            )
    return None


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _cell(stat: Stat | None, interval: bool = True) -> str:
    if stat is None:
        return "-"
    if not stat.n:
        return "n/a"
    if not interval:
        return _fmt(stat.value)
    text = f"{_fmt(stat.value)} [{_fmt(stat.low)}, {_fmt(stat.high)}]"
    if stat.delta is not None:
        text += f" Δ{stat.delta:+.1f} (p={stat.p_value:.2g})"
    return text


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80]


def write_report(runs: list[Run], out_dir: str | Path, title: str = "Leaderboard", viewer: str | None = None) -> Path:
    """leaderboard.md (a section per benchmark and judge), leaderboard.csv (long form), figures."""
    from .report_figures import draw_figures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "leaderboard.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "benchmark",
                "model",
                "defense",
                "judge",
                "measure",
                "value",
                "ci_low",
                "ci_high",
                "n",
                "unparsed",
                "delta_vs_none",
                "p_value",
                "status",
                "sample_errors",
                "log",
            ]
        )
        for run in runs:
            for name, s in run.stats.items():
                writer.writerow(
                    [
                        run.benchmark,
                        run.model,
                        run.defense,
                        run.judge,
                        name,
                        s.value,
                        s.low,
                        s.high,
                        s.n,
                        s.unparsed,
                        s.delta,
                        s.p_value,
                        run.status,
                        run.errors,
                        run.log,
                    ]
                )
    figures = draw_figures(runs, out)
    lines = [f"# {title}", ""]
    if viewer:
        lines += [
            f"Transcripts: [{viewer}]({viewer}/index.html) (an Inspect viewer bundle; serve it over HTTP with "
            "Range support, or open the logs with `inspect view`).",
            "",
        ]
    for benchmark, judge in dict.fromkeys((r.benchmark, r.judge) for r in runs):
        group = [r for r in runs if (r.benchmark, r.judge) == (benchmark, judge)]
        names = [m for m in MEASURES if any(m in r.stats for r in group)]
        header = ["target model", "defense", "items", "errors"] + [MEASURES[m].label for m in names]
        judged = [m for m in names if MEASURES[m].judged]
        header += [f"{MEASURES[m].label.split(' ')[0]} unparsed" for m in judged]
        lines += [f"## {benchmark} (judge: {judge})", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for run in group:
            items = max((s.n + s.unparsed for s in run.stats.values()), default=0)
            row = [run.model, run.defense, str(items), str(run.errors)]
            row += [_cell(run.stats.get(m), interval=m not in COST) for m in names]
            row += [str(run.stats[m].unparsed) if m in run.stats else "-" for m in judged]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        lines.append("")
    lines += [
        "Cells: value [95% bootstrap CI] and, for defenses, Δ against `none` on the same items, model and judge",
        "with a paired p-value (exact McNemar for 0/1 verdicts, sign-flip permutation otherwise). Rates are over",
        "parsed verdicts; the 'unparsed' columns count items left out. See results/README.md.",
        "",
        "Figures: " + ", ".join(f"[{p.name}]({p.name})" for p in figures),
        "",
        "Logs: " + ", ".join(sorted({r.log for r in runs})),
    ]
    path = out / "leaderboard.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
