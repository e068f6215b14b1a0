"""The report's figures: safety vs helpfulness, safety per category, and cost vs safety gain.

One set per judge (logs from different judges are never pooled), each titled with its judge. A
defense keeps its colour in every figure; markers tell target models (or benchmarks) apart. Every
axis and colour scale holds one measure per panel (`panel_measure`), so a 0-10 score never shares an
axis with a percentage: the heatmap and the cost figure show rates only (in %, and points of %).
"""

from __future__ import annotations

import hashlib
import math
import re
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vlmguard_eval.core.measures import HELPFULNESS_AXIS, SAFETY_AXIS, measure  # noqa: E402
from vlmguard_eval.defense.registry import DEFENSES  # noqa: E402
from vlmguard_eval.report.runs import Run, axis_value  # noqa: E402

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def defense_colour(defense: str) -> Any:
    """The colour the defense declared; an undeclared one gets a colour from a stable hash of its name."""
    info = DEFENSES.get(defense)
    if info is not None and info.colour:
        return info.colour
    palette = plt.get_cmap("Dark2").colors
    return palette[int(hashlib.sha256(defense.encode()).hexdigest(), 16) % len(palette)]


def defense_order(defense: str) -> tuple[bool, int, str]:
    """`none` first, then declared defenses in declaration order, then the rest by name."""
    names = list(DEFENSES)
    return (defense != "none", names.index(defense) if defense in names else len(names), defense)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80]


def _short(model: str) -> str:
    return model if len(model) <= 32 else "…" + model[-31:]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both axes (higher is better on each)."""
    return [
        i for i, (x, y) in enumerate(points) if not any(x2 >= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in points)
    ]


def _legend(ax: plt.Axes, handles: dict[str, object]) -> None:
    ax.legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)


def panel_measure(
    runs: list[Run], axis: tuple[tuple[str, int], ...], rates_only: bool = False
) -> tuple[str, int] | None:
    """The one measure a panel shows for all its runs: the axis's first that any of them has values for
    (`rates_only`: percentages of 0/1 verdicts only). A run without it is left out of the panel."""
    for name, sign in axis:
        if rates_only and measure(name).scale != 100:
            continue
        if any(name in run.stats and run.stats[name].n for run in runs):
            return name, sign
    return None


def axis_label(name: str, sign: int) -> str:
    """A measure as an axis shows it (an attack rate on a safety axis as `100 - <its label>`)."""
    return f"{'100 - ' if sign < 0 else ''}{measure(name).label}"


def _pad_limits(ax: plt.Axes, xs: list[float], ys: list[float]) -> None:
    """Axis limits around every point and CI end, with room for the largest marker (nothing clipped)."""
    for values, setter in ((xs, ax.set_xlim), (ys, ax.set_ylim)):
        finite = [v for v in values if not math.isnan(v)]
        low, high = min(finite), max(finite)
        pad = max(0.08 * (high - low), 2.0)
        setter(low - pad, high + pad)


def safety_vs_helpfulness(runs: list[Run], judge: str, path: Path) -> Path | None:
    panels = {}
    for benchmark in dict.fromkeys(r.benchmark_label for r in runs):
        group = [r for r in runs if r.benchmark_label == benchmark]
        safety, helpfulness = panel_measure(group, SAFETY_AXIS), panel_measure(group, HELPFULNESS_AXIS)
        if safety is None or helpfulness is None:
            continue
        for run in group:
            s, h = axis_value(run, (safety,)), axis_value(run, (helpfulness,))
            if s and h and not (math.isnan(s[1].value) or math.isnan(h[1].value)):
                panels.setdefault(benchmark, []).append((run, s, h))
    if not panels:
        return None
    models = sorted({r.model for r in runs})
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 2.5, 4.4), squeeze=False)
    handles: dict[str, object] = {}
    for ax, (benchmark, entries) in zip(axes[0], panels.items()):
        points = []
        defenses = sorted({run.defense for run, _, _ in entries}, key=defense_order)
        lows, highs = [], []
        for run, (s_name, s), (h_name, h) in entries:
            # error bars first, beneath every marker, so no bar hides a point
            ax.errorbar(
                h.value,
                s.value,
                xerr=[[h.value - h.low], [h.high - h.value]],
                yerr=[[s.value - s.low], [s.high - s.value]],
                fmt="none",
                ecolor=defense_colour(run.defense),
                elinewidth=1,
                alpha=0.6,
                capsize=3,
                zorder=2,
            )
            lows.append((h.low, s.low))
            highs.append((h.high, s.high))
        for run, (s_name, s), (h_name, h) in entries:
            marker = MARKERS[models.index(run.model) % len(MARKERS)]
            # coinciding points stay visible as concentric markers: earlier defenses are drawn larger
            size = 13 - 8 * defenses.index(run.defense) / max(1, len(defenses) - 1)
            (artist,) = ax.plot(
                h.value,
                s.value,
                marker,
                color=defense_colour(run.defense),
                markersize=size,
                markeredgecolor="white",
                zorder=10 + defenses.index(run.defense),
                clip_on=False,
            )
            handles.setdefault(run.defense, artist)
            points.append((h.value, s.value))
        _pad_limits(ax, [x for x, _ in lows + highs + points], [y for _, y in lows + highs + points])
        front = sorted(pareto_front(points), key=lambda i: points[i][0])
        ax.plot(
            [points[i][0] for i in front],
            [points[i][1] for i in front],
            "--",
            color="grey",
            lw=1,
            zorder=0,
            label="Pareto front",
        )
        ax.set_title(benchmark, fontsize=10)
        ax.set_xlabel(f"helpfulness: {axis_label(h_name, 1)} (higher is better)")
        ax.set_ylabel(f"safety: {axis_label(s_name, dict(SAFETY_AXIS)[s_name])} (higher is safer)")
        ax.grid(alpha=0.3)
    handles["Pareto front"] = axes[0][-1].lines[-1] if axes[0][-1].lines else None
    for model in models:
        handles[f"model: {_short(model)}"] = plt.Line2D(
            [], [], color="black", ls="", marker=MARKERS[models.index(model) % len(MARKERS)]
        )
    _legend(axes[0][-1], {k: v for k, v in handles.items() if v is not None})
    fig.suptitle(f"Safety vs helpfulness per defense (95% CIs; judge: {judge})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _category_safety(run: Run, name: str, sign: int) -> dict[str, float]:
    """Safety in % per category on a rate measure (an attack rate as 100 - rate)."""
    by_group: dict[str, list[float]] = {}
    for item, value in run.values.get(name, {}).items():
        if value is not None and "category" in run.groups.get(item, {}):
            by_group.setdefault(run.groups[item]["category"], []).append(float(value))
    scale = measure(name).scale
    return {g: (np.mean(v) * scale if sign > 0 else 100 - np.mean(v) * scale) for g, v in by_group.items()}


def category_heatmap(runs: list[Run], judge: str, path: Path) -> Path | None:
    panels, shown = {}, {}
    for benchmark in dict.fromkeys(r.benchmark_label for r in runs):
        group = [r for r in runs if r.benchmark_label == benchmark]
        chosen = panel_measure(group, SAFETY_AXIS, rates_only=True)  # the colour scale is 0-100 %
        for run in group if chosen else []:
            values = _category_safety(run, *chosen)
            if values:
                panels.setdefault(benchmark, []).append((run, values))
                shown[benchmark] = axis_label(*chosen)
    if not panels:
        return None
    heights = [max(2.2, 0.45 * len(entries) + 2.6) for entries in panels.values()]
    most = max(len({c for _, values in entries for c in values}) for entries in panels.values())
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(max(8.0, 0.85 * most + 5.0), sum(heights)),
        squeeze=False,
        layout="constrained",
        gridspec_kw={"height_ratios": heights},
    )
    image = None
    for ax, (benchmark, entries) in zip(axes[:, 0], panels.items()):
        categories = sorted({c for _, values in entries for c in values})
        grid = np.array([[values.get(c, np.nan) for c in categories] for _, values in entries])
        image = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
        ax.set_yticks(range(len(entries)), [f"{r.defense} · {_short(r.model)}" for r, _ in entries], fontsize=8)
        labels = [textwrap.fill(c.replace("_", " "), 16) for c in categories]  # long names wrap, never overlap
        ax.set_xticks(range(len(categories)), labels, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7)
        ax.set_title(f"{benchmark}: {shown[benchmark]} per category", fontsize=10)
    fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.8, label="safety % (higher is safer)")
    fig.suptitle(f"Safety by category and defense (judge: {judge}; blank: no parsed verdict)", fontsize=11)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def cost_vs_gain(runs: list[Run], judge: str, path: Path) -> Path | None:
    """Extra tokens against the safety change in points of % (rates only: a 0-10 score is not on this axis)."""
    points = []
    for benchmark in dict.fromkeys(r.benchmark_label for r in runs):
        group = [r for r in runs if r.benchmark_label == benchmark]
        chosen = panel_measure(group, SAFETY_AXIS, rates_only=True)
        for run in group if chosen else []:
            change, cost = axis_value(run, (chosen,)), run.stats.get("defense_extra_tokens")
            if run.defense != "none" and change and change[1].delta is not None and cost is not None:
                points.append((run, cost.value, change[1].delta))
    if not points:
        return None
    benchmarks = sorted({run.benchmark_label for run, _, _ in points})  # the legend names only what is plotted
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    handles: dict[str, object] = {}
    for run, tokens, gain in points:
        marker = MARKERS[benchmarks.index(run.benchmark_label) % len(MARKERS)]
        handles.setdefault(
            run.defense,
            ax.scatter(tokens, gain, color=defense_colour(run.defense), marker=marker, s=60, clip_on=False, zorder=3),
        )
    for benchmark in benchmarks:
        handles[f"benchmark: {benchmark}"] = plt.Line2D(
            [], [], color="black", ls="", marker=MARKERS[benchmarks.index(benchmark) % len(MARKERS)]
        )
    ax.axhline(0, color="grey", lw=1)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=-0.5, right=max(20.0, 3 * max(tokens for _, tokens, _ in points)))
    gains = [gain for _, _, gain in points]
    pad = max(0.1 * (max(gains) - min(gains)), 2.0)
    ax.set_ylim(min(0.0, min(gains)) - pad, max(0.0, max(gains)) + pad)
    ax.set_xlabel("extra tokens per sample (defense calls beyond the target's answer)")
    ax.set_ylabel("safety gain vs none (points of %; attack rates as 100 - rate)")
    ax.grid(alpha=0.3)
    _legend(ax, handles)
    ax.set_title(f"Cost vs safety gain per defense (judge: {judge})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def draw_figures(runs: list[Run], out: Path) -> list[Path]:
    judges = list(dict.fromkeys(r.judge for r in runs))
    made = []
    for judge in judges:
        group = [r for r in runs if r.judge == judge]
        suffix = "" if len(judges) == 1 else f"__{_slug(judge)}"
        for draw, name in (
            (safety_vs_helpfulness, "safety_vs_helpfulness"),
            (category_heatmap, "category_heatmap"),
            (cost_vs_gain, "cost_vs_safety_gain"),
        ):
            path = draw(group, judge, out / f"{name}{suffix}.png")
            if path is not None:
                made.append(path)
    return made
