"""Judge agreement: would another judge give the same numbers on the same items?

For two judges over the same items (same benchmark, target model and defense; `vlmguard-eval
rejudge` makes such pairs from existing logs), per judged measure: Cohen's kappa with a 95%
bootstrap CI over items, the raw agreement, the swing in the headline rate (judge B's value minus
judge A's), and the items where they disagree. Verdicts (0/1, or win/tie/loss) use unweighted kappa;
graded scores (the unified 0-10 and 0-100 scales) use quadratic-weighted kappa on values rounded half
up to integers (a 2-epoch mean of 6.5 is 7), since a near miss on a scale is not a full disagreement.
Two runs are compared only on the same inputs (`runs.same_inputs`). With human labels (a CSV of item id
-> label, naming the run whose answer was labelled where the id alone does not), each judge's accuracy
and kappa against them. Unparsed verdicts are left out of every pair, and counted.
"""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlmguard_eval.core.measures import SAFETY_AXIS, measure
from vlmguard_eval.report.runs import Run, same_inputs
from vlmguard_eval.report.stats import RESAMPLES, SEED
from vlmguard_eval.report.writer import short_model_name

LEVEL = 0.95
SHOWN_DISAGREEMENTS = 10  # per judge pair in leaderboard.md; all of them go to the CSV


def graded(name: str) -> bool:
    """A score on a scale (averaged over epochs), not a verdict."""
    return measure(name).reduce == "mean"


def cohen_kappa(a: np.ndarray, b: np.ndarray, weighted: bool = False) -> float:
    """Cohen's kappa of two raters over the same items (quadratic weights when `weighted`); NaN if undefined."""
    if len(a) == 0:
        return math.nan
    categories = np.unique(np.concatenate([a, b]))
    index = {value: i for i, value in enumerate(categories)}
    k = len(categories)
    table = np.zeros((k, k))
    for x, y in zip(a, b, strict=True):
        table[index[x], index[y]] += 1
    table /= table.sum()
    if weighted and k > 1:
        positions = categories.astype(float)
        span = positions.max() - positions.min()
        weights = 1 - ((positions[:, None] - positions[None, :]) / span) ** 2
    else:
        weights = np.eye(k)
    observed = float((weights * table).sum())
    expected = float((weights * np.outer(table.sum(axis=1), table.sum(axis=0))).sum())
    if math.isclose(expected, 1.0):  # both raters gave one and the same label throughout: chance explains all
        return math.nan
    return (observed - expected) / (1 - expected)


def kappa_ci(a: np.ndarray, b: np.ndarray, weighted: bool, resamples: int = RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap interval of kappa, resampling items (pairs stay together); seeded."""
    if len(a) < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(SEED)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(a), len(a))
        value = cohen_kappa(a[pick], b[pick], weighted)
        if not math.isnan(value):
            values.append(value)
    if not values:
        return (math.nan, math.nan)
    tail = (1 - LEVEL) / 2
    return (float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail)))


def _comparable(values: dict[str, Any], name: str) -> dict[str, float]:
    """Parsed values of a measure, as the categories kappa compares (graded scores rounded half up: Python's
    round() takes halves to the even neighbour, which would split equal 2-epoch means by parity)."""
    return {i: float(math.floor(v + 0.5)) if graded(name) else float(v) for i, v in values.items() if v is not None}


@dataclass
class Agreement:
    """Two sets of labels over the same items, for one measure."""

    benchmark: str
    model: str
    defense: str
    measure: str
    rater_a: str
    rater_b: str
    items: int  # items both labelled (parsed)
    one_unparsed: int  # items only one of the two labelled (the other's verdict did not parse)
    agree: float  # share of items with the same (rounded) label, in %
    kappa: float
    low: float
    high: float
    both_unparsed: int = 0  # items neither labelled
    swing: float | None = None  # headline rate of B minus A (None for human labels)
    disagreements: list[tuple[str, float, float]] = field(default_factory=list)


def compare(
    values_a: dict[str, Any],
    values_b: dict[str, Any],
    name: str,
    context: tuple[str, str, str],
    raters: tuple[str, str],
) -> Agreement:
    a, b = _comparable(values_a, name), _comparable(values_b, name)
    shared = sorted(set(a) & set(b))
    both_labelled = values_a.keys() & values_b.keys()
    one = [i for i in both_labelled if (values_a[i] is None) != (values_b[i] is None)]
    neither = [i for i in both_labelled if values_a[i] is None and values_b[i] is None]
    x = np.array([a[i] for i in shared])
    y = np.array([b[i] for i in shared])
    kappa = cohen_kappa(x, y, graded(name))
    low, high = kappa_ci(x, y, graded(name))
    differing = [(i, a[i], b[i]) for i in shared if a[i] != b[i]]
    differing.sort(key=lambda d: (-abs(d[1] - d[2]), d[0]))
    return Agreement(
        *context,
        measure=name,
        rater_a=raters[0],
        rater_b=raters[1],
        items=len(shared),
        one_unparsed=len(one),
        both_unparsed=len(neither),
        agree=100.0 * float((x == y).mean()) if len(shared) else math.nan,
        kappa=kappa,
        low=low,
        high=high,
        disagreements=differing,
    )


def judge_agreements(runs: list[Run]) -> list[Agreement]:
    """Every pair of judges over the same benchmark, inputs, model and defense, for every judged measure both
    have (runs on different inputs are never compared)."""
    by_setting: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        if run.judge != "-":
            by_setting.setdefault((run.benchmark_label, run.model, run.defense), []).append(run)
    found = []
    for setting, group in by_setting.items():
        for first, second in itertools.combinations(sorted(group, key=lambda r: r.judge), 2):
            if first.judge == second.judge or not same_inputs(first, second):
                continue
            for name in [n for n in first.values if n in second.values and measure(n).judged]:
                agreement = compare(first.values[name], second.values[name], name, setting, (first.judge, second.judge))
                if name in first.stats and name in second.stats:
                    swing = second.stats[name].value - first.stats[name].value
                    agreement.swing = None if math.isnan(swing) else swing  # no items rated by one of them
                found.append(agreement)
    return found


# ---- human labels ----------------------------------------------------------------------------------


LABEL_COLUMNS = "id,label[,measure][,benchmark][,model][,defense][,log]"


def read_human_labels(path: str | Path) -> list[dict[str, Any]]:
    """Rows of `LABEL_COLUMNS`: `measure` defaults to the run's safety measure; `benchmark`, `model`,
    `defense` and `log` (a log's file name, or its eval id) say whose answer was labelled."""
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"id", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected {LABEL_COLUMNS}")
        rows = list(reader)
    for index, row in enumerate(rows):
        row["row"] = index
        try:
            row["value"] = float(row["label"])
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}: row #{index} (id {row.get('id')}): field 'label': expected a number in the measure's scale "
                f"(1/0 for verdicts), got {row.get('label')!r}"
            ) from None
    return rows


def _default_measure(run: Run) -> str | None:
    return next((name for name, _ in SAFETY_AXIS if name in run.values and measure(name).judged), None)


def _names_run(row: dict[str, Any], run: Run) -> bool:
    """The row's optional columns all fit the run (a model by its full id or the short name the report shows)."""
    wanted = row.get("benchmark") or ""
    if wanted and wanted not in (run.benchmark, run.benchmark_label) and not run.benchmark.startswith(wanted + " "):
        return False
    model = row.get("model") or ""
    if model and run.model not in (model, short_model_name(model)):
        return False
    if row.get("defense") and row["defense"] != run.defense:
        return False
    return not row.get("log") or row["log"] in (run.log, Path(run.log).name, run.eval_id)


def _answers_of(run: Run) -> str:
    """Which answers a run judged: a log and its `rejudge` copies share them (and Inspect's eval id)."""
    return run.eval_id or run.log


def human_agreements(
    runs: list[Run], labels: list[dict[str, Any]], source: str = "labels"
) -> tuple[list[Agreement], int]:
    """Each judge's agreement with the human labels of the answers it judged, and how many labels fit no run.

    A label belongs to one answer: a row that fits the answers of several runs (two models, defenses or
    runs answering the same item) is an error naming the row; judges of the same answers (`rejudge`) all
    take it.
    """
    judged = [r for r in runs if r.judge != "-"]
    matched: dict[tuple[str, str], dict[str, float]] = {}
    by_log = {run.log: run for run in judged}
    unmatched = 0
    for row in labels:
        hits = []
        for run in judged:
            name = row.get("measure") or _default_measure(run)
            if _names_run(row, run) and name in run.values and row["id"] in run.values[name]:
                hits.append((run, name))
        answers = {_answers_of(run) for run, _ in hits}
        if len(answers) > 1:
            fits = sorted({f"{r.benchmark_label} / {r.model} / {r.defense} ({r.log})" for r, _ in hits})
            raise ValueError(
                f"{source}: row #{row['row']} (id {row['id']}) fits the answers of {len(answers)} runs: "
                f"{'; '.join(fits)}. A human label belongs to one answer: add columns that name its run "
                f"({LABEL_COLUMNS})"
            )
        unmatched += not hits
        for run, name in hits:
            matched.setdefault((run.log, name), {})[row["id"]] = row["value"]
    found = []
    for (log, name), human in matched.items():
        run = by_log[log]
        context = (run.benchmark_label, run.model, run.defense)
        found.append(compare(run.values[name], human, name, context, (run.judge, "human")))
    return found, unmatched


# ---- report ----------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.1f}"


def _scaled(name: str, value: float) -> str:
    return _num(value * measure(name).scale, 1 if measure(name).scale != 1 else 2)


def write_agreement_csvs(agreements: list[Agreement], out: Path, stem: str) -> list[Path]:
    summary, items = out / f"{stem}.csv", out / f"{stem}_disagreements.csv"
    with open(summary, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["benchmark", "model", "defense", "measure", "rater_a", "rater_b", "items", "one_unparsed", "agree_pct"]
            + ["kappa", "kappa_low", "kappa_high", "swing_b_minus_a", "disagreements", "both_unparsed"]
        )
        for g in agreements:
            writer.writerow(
                [g.benchmark, g.model, g.defense, g.measure, g.rater_a, g.rater_b, g.items, g.one_unparsed, g.agree]
                + [g.kappa, g.low, g.high, g.swing, len(g.disagreements), g.both_unparsed]
            )
    with open(items, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["benchmark", "model", "defense", "measure", "item", "rater_a", "value_a", "rater_b", "value_b"]
        )
        for g in agreements:
            for item, a, b in g.disagreements:
                writer.writerow([g.benchmark, g.model, g.defense, g.measure, item, g.rater_a, a, g.rater_b, b])
    return [summary, items]


def agreement_lines(runs: list[Run], out: Path, human_labels: str | Path | None = None) -> list[str]:
    """The leaderboard's judge-agreement section (empty when no two judges share items and no labels are given)."""
    pairs = judge_agreements(runs)
    labels = read_human_labels(human_labels) if human_labels else []
    human, unmatched = human_agreements(runs, labels, str(human_labels)) if human_labels else ([], 0)
    if not pairs and not human and not labels:
        return []
    lines = ["## Judge agreement", ""]
    if pairs:
        files = write_agreement_csvs(pairs, out, "judge_agreement")
        lines += [
            "Two judges on the same items (same benchmark, target model and defense). κ: Cohen's kappa "
            "[95% bootstrap CI over items] (quadratic-weighted on rounded scores for 0-10 / 0-100 scales); "
            "swing: judge B's headline value minus judge A's.",
            "",
            "| benchmark | target model | defense | measure | judge A | judge B | items | agree % | κ [95% CI] "
            "| swing (B - A) | disagree | one unparsed | both unparsed |",
            "|" + "---|" * 13,
        ]
        for g in pairs:
            lines.append(
                f"| {g.benchmark} | {g.model} | `{g.defense}` | {g.measure} | {g.rater_a} | {g.rater_b} | {g.items} "
                f"| {_num(g.agree, 1)} | {_num(g.kappa)} [{_num(g.low)}, {_num(g.high)}] "
                f"| {_signed(g.swing)} | {len(g.disagreements)} | {g.one_unparsed} "
                f"| {g.both_unparsed} |"
            )
        shown = [(g, d) for g in pairs for d in g.disagreements[:SHOWN_DISAGREEMENTS]]
        if shown:
            lines += [
                "",
                f"Items they disagree on (up to {SHOWN_DISAGREEMENTS} per pair, largest gaps first; all in "
                f"[{files[1].name}]({files[1].name})):",
                "",
                "| benchmark | target model | defense | measure | item | judge A | judge B |",
                "|" + "---|" * 7,
            ]
            for g, (item, a, b) in shown:
                lines.append(
                    f"| {g.benchmark} | {g.model} | `{g.defense}` | {g.measure} | {item} "
                    f"| {_scaled(g.measure, a)} ({g.rater_a}) | {_scaled(g.measure, b)} ({g.rater_b}) |"
                )
        lines.append("")
    if labels:
        write_agreement_csvs(human, out, "human_agreement")
        lines += [
            "### Against human labels",
            "",
            f"Labels: {Path(human_labels).name} ({len(labels)} rows; {unmatched} fit no judged answer of these runs). "
            "Accuracy: share of labelled items where the judge gives the same (rounded) label; κ as above.",
            "",
            "| benchmark | target model | defense | measure | judge | labelled items | accuracy % | κ [95% CI] "
            "| judge unparsed |",
            "|" + "---|" * 9,
        ]
        for g in human:
            lines.append(
                f"| {g.benchmark} | {g.model} | `{g.defense}` | {g.measure} | {g.rater_a} | {g.items} "
                f"| {_num(g.agree, 1)} | {_num(g.kappa)} [{_num(g.low)}, {_num(g.high)}] | {g.one_unparsed} |"
            )
        lines.append("")
    return lines
