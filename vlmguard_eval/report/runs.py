"""Leaderboards from Inspect logs, read with Inspect's API (nothing is re-run).

Per-sample scores come from each log's sample summaries (fast: no transcripts are read), are reduced
per item by the same rule the tasks use (`core.reduction`), and give every rate and mean a 95% interval
(`stats.mean_ci`) and a paired test against `none` on the same items, model and judge. One row per
(benchmark, dataset, target model, defense, judge): logs from different judges are never pooled.

What the report reads is checked first: an unreadable, empty or foreign log (not one of our tasks, or
scores that are not numbers) is skipped and named; of several logs of one task (a retry, a resumed
run after a kill, a `--limit` smoke run, the same log in two log dirs) one counts: the newest complete
run of every item and epoch, else the best there is, flagged (`Run.label`); two runs are paired only
when they ran on the same dataset (its location, and equal input hashes on every shared item), and
runs of one benchmark on different inputs are labelled apart (`Run.data`).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from inspect_ai.log import EvalLog, list_eval_logs, read_eval_log, read_eval_log_sample_summaries

from vlmguard_eval.core.measures import COST_KEYS, MEASURES, NOT_APPLICABLE, SPLITS, measure
from vlmguard_eval.core.reduction import reduce_key
from vlmguard_eval.report.stats import mean_ci, paired_p

GROUP_KEYS = ("category", "subset")
# the tasks this report understands (a log of any other task is foreign)
OUR_TASKS = ("siuo", "mm_safetybench", "vlguard", "figstep")
# task arguments that choose what a benchmark asks (named in its column: `siuo (gen)`, `figstep (tiny, baseline)`)
VARIANT_ARGS = ("format", "image_type", "subset", "query_type")
INPUT_HASH_KEY = "input_sha256"  # written by the loaders (data.common); the report does not import them


class SkippedLog(ValueError):
    """A log the report cannot use, with the reason."""


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
    log: str  # the log's name as shown: its path within its log dir (with the dir, when several are read)
    errors: int
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # measure -> item -> value (None = unparsed)
    groups: dict[str, dict[str, str]] = field(default_factory=dict)  # item -> {category, subset}
    stats: dict[str, Stat] = field(default_factory=dict)
    dataset: str = ""  # where the items came from (the dataset's location)
    inputs: dict[str, str] = field(default_factory=dict)  # item -> hash of its inputs
    identity: str = ""  # one task of one eval set: of its logs, one is reported (`latest_runs`)
    created: str = ""
    samples: int = 0  # samples the task has
    completed: int = 0  # samples that finished without error
    location: str = ""  # the log's full path, to read it again
    eval_id: str = ""  # Inspect's id of the run: shared by a log, its copies and its `rejudge` outputs
    items_run: int = 0  # dataset items the run chose (fewer than `dataset_items` with --limit or sample ids)
    dataset_items: int = 0
    epochs: int = 1
    full_epochs: int = 1  # the most epochs any log of this task identity ran
    data: str = ""  # which inputs, when runs of this benchmark saw different ones (`label_data_variants`)
    baseline: Run | None = field(default=None, repr=False, compare=False)  # the `none` run deltas are against

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.benchmark, self.dataset, self.model, self.judge)

    @property
    def benchmark_label(self) -> str:
        """The benchmark as the report shows it: with its data variant where runs saw different inputs."""
        return f"{self.benchmark} [{self.data}]" if self.data else self.benchmark

    @property
    def partial(self) -> bool:
        """Not every sample of the task finished (an interrupted, failed or still running run)."""
        return self.status != "success" or self.errors > 0 or self.completed < self.samples

    @property
    def subset(self) -> str:
        """How the run covers less than its task (a --limit or sample-id run, fewer epochs), or ''."""
        parts = []
        if self.items_run < self.dataset_items:
            parts.append(f"{self.items_run}/{self.dataset_items} items")
        if self.epochs < self.full_epochs:
            parts.append(f"{self.epochs} of {self.full_epochs} epochs")
        return ", ".join(parts)

    @property
    def label(self) -> str:
        """The defense as shown in the leaderboard, flagged when its results are partial or a subset."""
        flags = [f"PARTIAL: {self.status}, {self.completed}/{self.samples} samples"] if self.partial else []
        flags += [f"SUBSET: {self.subset}"] if self.subset else []
        return self.defense + "".join(f" ({flag})" for flag in flags)


def same_inputs(a: Run, b: Run) -> bool:
    """Two runs saw the same items: same dataset location and equal input hashes on every shared item."""
    if a.dataset != b.dataset:
        return False
    return all(a.inputs[i] == b.inputs[i] for i in a.inputs.keys() & b.inputs.keys())


def _with_args(name: str, args: dict[str, Any] | None) -> str:
    shown = {k: v for k, v in (args or {}).items() if v is not None}
    if not shown:
        return name
    return f"{name}({', '.join(f'{k}={json.dumps(v, default=str)}' for k, v in sorted(shown.items()))})"


def defense_of(log: EvalLog) -> str:
    """The defense that ran, with the arguments it was given (two variants of one defense differ):
    the `--solver` given, else the last step of the task's plan."""
    if log.eval.solver:
        passed = log.eval.solver_args_passed
        return _with_args(log.eval.solver.split("/")[-1], log.eval.solver_args if passed is None else passed)
    steps = log.plan.steps if log.plan else []
    if not steps:
        return "?"
    passed = steps[-1].params_passed  # the arguments given, not every default
    return _with_args(steps[-1].solver.split("/")[-1], steps[-1].params if passed is None else passed)


def identity_of(log: EvalLog) -> str:
    """Inspect's own identifier of a task within an eval set (what eval-set resumes by)."""
    try:
        from inspect_ai._eval.evalset import task_identifier

        return task_identifier(log, None)
    except Exception:  # an older or newer Inspect: the fields that make a task distinct
        spec = log.eval
        return json.dumps([spec.task, spec.model, spec.task_args, defense_of(log), str(spec.model_roles)], default=str)


def benchmark_of(log: EvalLog) -> str:
    """The task with the arguments that choose what it asks (`siuo (gen)`, `figstep (tiny, baseline)`)."""
    name = (log.eval.task_registry_name or log.eval.task).split("/")[-1]
    args = log.eval.task_args or {}
    variants = [args[key] for key in VARIANT_ARGS if args.get(key) is not None]
    if not variants:
        return name
    return f"{name} ({', '.join(v if isinstance(v, str) else ','.join(map(str, v)) for v in variants)})"


def load_run(location: str, name: str | None = None) -> Run:
    """One log as a Run (`name`: how the report names it, default its file name); SkippedLog if it is
    unreadable, empty or not one of our tasks."""
    try:
        header = read_eval_log(location, header_only=True)
    except Exception as ex:
        raise SkippedLog(f"unreadable ({type(ex).__name__}: {str(ex)[:120]})") from None
    task = (header.eval.task_registry_name or header.eval.task).split("/")[-1]
    if task not in OUR_TASKS:
        raise SkippedLog(f"task {task!r} is not one of {', '.join(OUR_TASKS)}")
    roles = header.eval.model_roles or {}
    dataset = header.eval.dataset
    run = Run(
        benchmark=benchmark_of(header),
        model=header.eval.model,
        defense=defense_of(header),
        judge=roles["grader"].model if "grader" in roles else "-",
        status=header.status,
        log=name or Path(location).name,
        errors=0,
        dataset=f"{dataset.name}@{dataset.location}",
        identity=identity_of(header),
        created=header.eval.created,
        samples=header.results.total_samples if header.results else _planned(header),
        location=location,
        eval_id=header.eval.eval_id,
        items_run=_chosen_items(header),
        dataset_items=dataset.samples or 0,
        epochs=header.eval.config.epochs or 1,
    )
    run.full_epochs = run.epochs
    epochs: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    try:
        summaries = read_eval_log_sample_summaries(location)
    except Exception as ex:
        raise SkippedLog(f"samples unreadable ({type(ex).__name__}: {str(ex)[:120]})") from None
    for summary in summaries:
        item = str(summary.id)
        if summary.error:
            run.errors += 1
            continue
        run.completed += 1
        metadata = summary.metadata or {}
        run.groups[item] = {k: str(metadata[k]) for k in GROUP_KEYS if k in metadata}
        if isinstance(metadata.get(INPUT_HASH_KEY), str):
            run.inputs[item] = metadata[INPUT_HASH_KEY]
        for scorer, score in (summary.scores or {}).items():
            for key, value in score.value.items() if isinstance(score.value, dict) else [(scorer, score.value)]:
                if key not in MEASURES or not (value is None or _is_number(value) or value == NOT_APPLICABLE):
                    raise SkippedLog(f"score {key!r} = {str(value)[:20]!r} is not one of our measures")
                epochs[item][key].append(value)
    if not summaries:
        raise SkippedLog(f"no samples (status {header.status})")
    for item, keys in epochs.items():
        for key, values in keys.items():
            value = reduce_key(key, values)
            if value == NOT_APPLICABLE:
                continue
            run.values.setdefault(key, {})[item] = value
            if key in SPLITS and SPLITS[key] in run.groups[item]:
                run.values.setdefault(f"{key}[{run.groups[item][SPLITS[key]]}]", {})[item] = value
    return run


def _chosen_items(log: EvalLog) -> int:
    """Dataset items a run set out to do (its sample ids, else the dataset under its --limit)."""
    limit = log.eval.config.limit
    count = len(log.eval.dataset.sample_ids or []) or (log.eval.dataset.samples or 0)
    if isinstance(limit, int):
        count = min(count, limit)
    elif isinstance(limit, (tuple, list)):
        count = min(count, limit[1] - limit[0])
    return count


def _planned(log: EvalLog) -> int:
    """Samples a run set out to do (a log without results: interrupted before it finished)."""
    return _chosen_items(log) * (log.eval.config.epochs or 1)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float))


def _array(values: dict[str, Any]) -> np.ndarray:
    return np.array([float(v) for v in values.values() if v is not None], dtype=float)


def label_data_variants(runs: list[Run]) -> None:
    """Set `Run.data` where one benchmark's runs saw different inputs, so their rows never look alike.

    A variant is a dataset location with input hashes that agree on every item (so each of its runs has
    `same_inputs` with every other), named by the end of its location that tells the variants apart
    (`data 2: B/siuo_gen.json`); a benchmark with one variant is named alone.
    """
    variants: dict[str, list[tuple[str, dict[str, str], list[Run]]]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: (r.dataset, _timestamp(r.created), r.log)):
        found = variants[run.benchmark]
        home = next(
            (v for v in found if v[0] == run.dataset and all(v[1].get(i, h) == h for i, h in run.inputs.items())),
            None,
        )
        if home is None:
            found.append((run.dataset, dict(run.inputs), [run]))
        else:
            home[1].update(run.inputs)
            home[2].append(run)
    for found in variants.values():
        locations = [dataset.partition("@")[2] for dataset, _, _ in found]
        for number, ((_, _, members), location) in enumerate(zip(found, locations, strict=True), start=1):
            label = f"data {number}: {_distinct_tail(location, locations)}" if len(found) > 1 else ""
            for run in members:
                run.data = label


def _distinct_tail(location: str, others: list[str]) -> str:
    """The fewest last path parts of `location` that no other distinct location ends with."""
    parts = location.split("/")
    rivals = [o for o in others if o != location]
    for count in range(1, len(parts) + 1):
        tail = "/".join(parts[-count:])
        if not any(o == tail or o.endswith("/" + tail) for o in rivals):
            return tail
    return location


def find_baseline(run: Run, runs: list[Run]) -> Run | None:
    """The `none` run a defense is compared with: the only one of the same key on the same inputs, never
    the run itself (two candidates, or none, give no baseline: no delta rather than a guessed one)."""
    if run.defense == "none":
        return None
    candidates = [b for b in runs if b.defense == "none" and b.key == run.key and b is not run]
    candidates = [b for b in candidates if same_inputs(run, b)]
    return candidates[0] if len(candidates) == 1 else None


def compute_stats(runs: list[Run]) -> None:
    """Value, CI and unparsed count per measure; delta and paired p against the run's baseline
    (`find_baseline`, kept in `Run.baseline` for every comparison the report makes)."""
    label_data_variants(runs)
    for run in runs:
        run.baseline = base = find_baseline(run, runs)
        for name, values in run.values.items():
            scale = measure(name).scale
            parsed = _array(values)
            low, high = mean_ci(parsed, verdicts=measure(name).reduce == "mode")
            stat = Stat(
                value=float(parsed.mean()) * scale if len(parsed) else math.nan,
                low=low * scale,
                high=high * scale,
                n=len(parsed),
                unparsed=sum(v is None for v in values.values()),
            )
            if base is not None and name in base.values and name not in COST_KEYS:
                shared = [i for i, v in values.items() if v is not None and base.values[name].get(i) is not None]
                if shared:
                    a = np.array([float(values[i]) for i in shared])
                    b = np.array([float(base.values[name][i]) for i in shared])
                    stat.delta = float((a - b).mean()) * scale
                    stat.p_value = paired_p(a, b)
            run.stats[name] = stat


def _load_or_skip(location_and_name: tuple[str, str]) -> Run | str:
    try:
        return load_run(*location_and_name)
    except SkippedLog as ex:
        return str(ex)


def _timestamp(created: str) -> datetime:
    """`created` as an instant (logs written with different UTC offsets compare correctly)."""
    try:
        moment = datetime.fromisoformat(created)
    except (TypeError, ValueError):
        return datetime.min.replace(tzinfo=timezone.utc)
    return moment if moment.tzinfo else moment.astimezone()  # no offset: the machine's local time


def _preference(run: Run) -> tuple[bool, bool, datetime, str]:
    """Complete before partial, every item and epoch before a subset, then the newest."""
    return (not run.partial, not run.subset, _timestamp(run.created), run.log)


def _why_not(run: Run, kept: Run) -> str:
    if run.eval_id and run.eval_id == kept.eval_id:
        return f"superseded by {kept.log}: the same run"
    if run.partial and not kept.partial:
        return f"superseded by {kept.log}: this one is partial ({run.completed}/{run.samples} samples), that complete"
    if run.subset and not kept.subset:
        return f"superseded by {kept.log}: this one is a subset ({run.subset}), that covers the task"
    return f"superseded by {kept.log}: a newer run of the same task"


def latest_runs(runs: list[Run]) -> tuple[list[Run], dict[str, str]]:
    """One log per task identity (Inspect's task identifier ignores --limit, sample ids and --epochs, so a
    smoke run, a retry and a full run share one): the newest complete run of every item and epoch, else
    the best there is (`_preference`), flagged in its label. The others, by name, with the reason."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.identity].append(run)
    kept, not_used = [], {}
    for group in groups.values():
        full_epochs = max(r.epochs for r in group)
        for run in group:
            run.full_epochs = full_epochs
        best = max(group, key=_preference)
        kept.append(best)
        not_used.update({r.log: _why_not(r, best) for r in group if r is not best})
    return kept, not_used


def logs_in(log_dir: str | Path) -> list[Any]:
    """The Inspect logs of a log dir (`EvalLogInfo`s); a missing dir, or one without logs, is an error."""
    if not Path(log_dir).is_dir():
        raise FileNotFoundError(f"log dir {log_dir} does not exist")
    logs = list_eval_logs(str(log_dir))
    if not logs:
        raise FileNotFoundError(f"log dir {log_dir} holds no Inspect logs")
    return logs


def log_names(listed: dict[Path, list[Any]]) -> dict[str, str]:
    """Every log of the listed dirs (full location -> the name the report gives it): its path within its dir,
    after the dir's name when several dirs are read (`rejudge` writes the same file names as its source)."""
    names: dict[str, str] = {}
    folder_names = [d.name for d in listed]
    for log_dir, logs in listed.items():
        prefix = (log_dir.name if folder_names.count(log_dir.name) == 1 else str(log_dir)) + "/"
        for info in logs:
            names[info.name] = (prefix if len(listed) > 1 else "") + _within(info.name, log_dir)
    return names


def _within(location: str, log_dir: Path) -> str:
    """A log's path within its log dir (`worker-0/x.eval`), or its file name where that cannot be told."""
    try:
        return Path(location.removeprefix("file://")).resolve().relative_to(log_dir.resolve()).as_posix()
    except ValueError:
        return Path(location).name


def load_report_runs(log_dir: str | Path | list[Path]) -> tuple[list[Run], dict[str, str]]:
    """Every usable log in one or several log dirs, with its statistics, sorted for reading, and the logs
    not used (name -> reason). A missing or empty log dir is an error. Runs are chosen and paired across
    every dir together, so the same log in two dirs counts once.

    Parsing sample summaries is the bulk of the work and is CPU-bound, so logs are read in parallel
    worker processes (forked: nothing is re-imported) where the platform allows it.
    """
    given = log_dir if isinstance(log_dir, list) else [log_dir]
    listed = {Path(d).resolve(): logs_in(d) for d in given}  # each dir once, checked as given
    named = list(log_names(listed).items())
    workers = min(len(named), os.cpu_count() or 1)
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            loaded = list(pool.map(_load_or_skip, named))
    else:
        loaded = [_load_or_skip(each) for each in named]
    skipped = {name: r for (_, name), r in zip(named, loaded, strict=True) if isinstance(r, str)}
    runs, superseded = latest_runs([r for r in loaded if isinstance(r, Run)])
    skipped.update(superseded)
    compute_stats(runs)
    runs.sort(key=lambda r: (r.benchmark, r.data, r.judge, r.model, r.defense != "none", r.defense))
    return runs, skipped


def load_runs(log_dir: str | Path | list[Path]) -> list[Run]:
    """The usable runs of one or several log dirs (see `load_report_runs`)."""
    return load_report_runs(log_dir)[0]


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
