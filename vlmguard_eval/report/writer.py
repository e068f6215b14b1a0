"""leaderboard.md and leaderboard.csv from runs with their statistics."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from pathlib import Path

from vlmguard_eval.core.measures import MEASURES, measure
from vlmguard_eval.report.runs import Run, Stat


def measures_of(runs: list[Run]) -> list[str]:
    """The measures these runs have: declared ones in the table's order, then any undeclared key."""
    present = {name for run in runs for name in run.stats}
    return [m for m in MEASURES if m in present] + sorted(present - set(MEASURES))


# last path parts too generic to name a model alone (a checkpoint folder's usual names)
GENERIC_PARTS = re.compile(r"^(final|model|hf|merged|checkpoint(-\d+)?|snapshots?|[0-9a-f]{40})$")
HF_CACHE_PREFIX = "models--"


def short_model_name(name: str) -> str:
    """A model name without machine paths: `hfvlm//home/u/.cache/vlm/tiny-llava` -> `hfvlm/tiny-llava`.

    Hub ids (`org/name`) and API names are kept whole; a Hugging Face cache snapshot becomes its hub id
    (`.../models--Qwen--Qwen2-VL-7B-Instruct/snapshots/<sha>` -> `Qwen/Qwen2-VL-7B-Instruct`, so the
    published cells still match it); another local path keeps its last part, or its last two when the last
    is generic (`checkpoints/rewriter/final` -> `rewriter/final`).
    """
    provider, _, rest = name.partition("/")
    if not rest or not (rest.startswith(("/", ".", "~")) or rest.count("/") > 1):
        return name
    parts = [p for p in rest.split("/") if p and p not in (".", "..", "~")]
    # the hub's cache names a repo `models--<org>--<name>` (hub ids never hold `--`)
    cached = next((p for p in reversed(parts) if p.startswith(HF_CACHE_PREFIX) and len(p) > len(HF_CACHE_PREFIX)), None)
    if cached is not None:
        return f"{provider}/{cached.removeprefix(HF_CACHE_PREFIX).replace('--', '/')}"
    keep = parts[-2:] if len(parts) > 1 and GENERIC_PARTS.match(parts[-1]) else parts[-1:]
    return f"{provider}/{'/'.join(keep)}"


def display_runs(runs: list[Run]) -> list[Run]:
    """Copies of the runs with short model and judge names, where a short name stays unique."""
    names = {n for run in runs for n in (run.model, run.judge)}
    shorts: dict[str, list[str]] = {}
    for name in names:
        shorts.setdefault(short_model_name(name), []).append(name)
    table = {full[0]: short for short, full in shorts.items() if len(full) == 1}
    return [dataclasses.replace(r, model=table.get(r.model, r.model), judge=table.get(r.judge, r.judge)) for r in runs]


def unparsed_label(name: str) -> str:
    """The column counting a measure's items left out, by its label without the unit: `... unparsed` for a
    judge's verdicts (a reply that did not parse, or a tied vote), `... undecided` for a rule's (a tied vote
    over epochs, e.g. one epoch refusing, one complying, one errored)."""
    return re.split(r" [%(]", measure(name).label)[0] + (" unparsed" if measure(name).judged else " undecided")


def left_out_columns(runs: list[Run], names: list[str]) -> list[str]:
    """The measures whose left-out items get a column: every judged one, and any other that left one out."""
    return [m for m in names if measure(m).judged or any(r.stats[m].unparsed for r in runs if m in r.stats)]


SCRIPTED_JUDGE_NOTE = (
    "**Scripted judge.** Verdicts in sections judged by `scripted/...` come from the offline scripted "
    "judge (vlmguard_eval/models/scripted.py): each label is drawn from a hash of the judge's input, so "
    "the numbers show that every layer runs and counts, not how safe any model is."
)


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


def write_report(
    runs: list[Run],
    out_dir: str | Path,
    title: str = "Leaderboard",
    viewer: str | None = None,
    human_labels: str | Path | None = None,
) -> Path:
    """leaderboard.md (a section per benchmark and judge), leaderboard.csv (long form), figures."""
    from vlmguard_eval.report.figures import draw_figures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = display_runs(runs)  # the CSV keeps the full names; the markdown and figures show short ones
    extra = extra_sections(shown, out, human_labels)  # first: a bad labels file stops before anything is written
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
                "subset",
                "data_variant",
                "dataset",
                "log_location",
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
                        run.subset,
                        run.data,
                        run.dataset,
                        run.location,
                    ]
                )
    runs = shown
    figures = draw_figures(runs, out)
    lines = [f"# {title}", ""]
    if any(r.judge.startswith("scripted/") for r in runs):
        lines += [SCRIPTED_JUDGE_NOTE, ""]
    if viewer:
        lines += [
            f"Transcripts: [{viewer}]({viewer}/index.html) (an Inspect viewer bundle; serve it over HTTP with "
            "Range support, or open the logs with `inspect view`).",
            "",
        ]
    # a section per benchmark (and data variant, where runs of it saw different inputs) and judge
    for benchmark, judge in dict.fromkeys((r.benchmark_label, r.judge) for r in runs):
        group = [r for r in runs if (r.benchmark_label, r.judge) == (benchmark, judge)]
        names = measures_of(group)
        header = ["target model", "defense", "items", "errors"] + [measure(m).label for m in names]
        left_out = left_out_columns(group, names)
        header += [unparsed_label(m) for m in left_out]
        lines += [f"## {benchmark} (judge: {judge})", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for run in group:
            items = max((s.n + s.unparsed for s in run.stats.values()), default=0)
            row = [run.model, run.label, str(items), str(run.errors)]
            row += [_cell(run.stats.get(m), interval=not measure(m).cost) for m in names]
            row += [str(run.stats[m].unparsed) if m in run.stats else "-" for m in left_out]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        lines.append("")
    lines += mmsb_tables(runs)
    lines += extra
    lines += [
        "Cells: value [95% CI: Wilson score for rates of 0/1 verdicts, percentile bootstrap otherwise] and, for",
        "defenses, Δ against `none` on the same items, model and judge with a paired p-value (exact McNemar for",
        "0/1 verdicts, sign-flip permutation otherwise). Rates are over decided verdicts; the 'unparsed' columns",
        "count items a judge's verdicts left out (no parse, or a tied vote), the 'undecided' ones items a rule's",
        "verdicts tied on over epochs. SUBSET: a --limit, sample-id or fewer-epoch run, shown as its task has no",
        "full one. See results/README.md.",
        "",
        "Figures: " + ", ".join(f"[{p.name}]({p.name})" for p in figures),
        "",
        "Logs: " + ", ".join(sorted({r.log for r in runs})),
    ]
    path = out / "leaderboard.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def mmsb_tables(runs: list[Run]) -> list[str]:
    """MM-SafetyBench's official table: attack rate % per scenario x image type, one table per run.

    Items are `<scenario>/<image type>/<id>` (the task's sample ids). The last row and column pool
    over scenarios and over the image types (text-only left out), and say so; the paper pools nothing.
    """
    lines: list[str] = []
    for run in runs:
        values = run.values.get("attack") if run.benchmark.startswith("mm_safetybench") else None
        if not values:
            continue
        cells: dict[tuple[str, str], list[float]] = {}
        for item, value in values.items():
            scenario, image_type, _ = (item.split("/") + ["", ""])[:3]
            if value is None:
                continue
            cells.setdefault((scenario, image_type), []).append(float(value))
            cells.setdefault(("pooled", image_type), []).append(float(value))
            if image_type != "text":  # text-only is a baseline, never pooled with the image types
                cells.setdefault((scenario, "pooled"), []).append(float(value))
        types = sorted({t for _, t in cells if t != "pooled"}) + ["pooled"]
        scenarios = sorted({s for s, _ in cells if s != "pooled"}) + ["pooled"]

        def cell(key: tuple[str, str]) -> str:
            found = cells.get(key)
            return _fmt(100 * sum(found) / len(found)) if found else "-"

        header = ["scenario"] + [t if t != "pooled" else "pooled over image types (no text)" for t in types]
        lines += [
            f"### {run.benchmark_label}: attack rate % per scenario x image type",
            "",
            f"Target {run.model}, defense {run.label}, judge {run.judge}.",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for scenario in scenarios:
            name = scenario if scenario != "pooled" else "pooled over scenarios"
            lines.append("| " + " | ".join([name] + [cell((scenario, t)) for t in types]) + " |")
        lines += [
            "",
            "Rates over parsed verdicts. The official table is the per-cell rates; pooled rows and columns are ours,",
            "and text-only, where it ran, is the paper's separate baseline. The run's headline rate pools every cell.",
            "",
        ]
    return lines


# ---- sections beside the leaderboard: the paper's metrics and reference numbers (report/paper.py) and
# judge agreement (report/agreement.py) ----------------------------------------------------------------


def extra_sections(runs: list[Run], out: Path, human_labels: str | Path | None) -> list[str]:
    from vlmguard_eval.report.agreement import agreement_lines
    from vlmguard_eval.report.paper import paper_lines

    return paper_lines(runs) + agreement_lines(runs, out, human_labels)
