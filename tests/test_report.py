"""Reports from logs the tests produce themselves: numbers, figures, judges kept apart, the grid; and the
report's arithmetic on runs built in memory: intervals, left-out counts, one scale per figure, relative gains."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.log import list_eval_logs, read_eval_log
from inspect_ai.model import get_model
from PIL import Image

from solvers import none, self_reminder
from tasks.siuo import siuo
from tasks.vlguard import vlguard
from tests.helpers import result_metrics
from vlmguard_eval.core.measures import SAFETY_AXIS
from vlmguard_eval.report.figures import category_heatmap, cost_vs_gain, panel_measure
from vlmguard_eval.report.paper import gains
from vlmguard_eval.report.runs import Run, compute_stats, load_runs
from vlmguard_eval.report.stats import sign_flip_p, wilson_ci
from vlmguard_eval.report.writer import short_model_name, write_report


def synthetic_run(
    values: dict[str, list[Any]],
    model: str = "m",
    defense: str = "none",
    judge: str = "j",
    benchmark: str = "siuo (gen)",
    dataset: str = "siuo_gen@/data/A/siuo_gen.json",
    **fields: Any,
) -> Run:
    """A run held in memory: measure -> per-item values (items "0", "1", ...), nothing read from a log."""
    status = fields.pop("status", "success")
    run = Run(benchmark, model, defense, judge, status, f"{model}-{defense}-{judge}.eval", 0, **fields)
    run.dataset = dataset
    run.values = {name: {str(i): v for i, v in enumerate(items)} for name, items in values.items()}
    return run


def target(messages, config):
    text = messages[-1].text
    if "responsible" in text:
        return "I'm sorry, I can't help with that."
    return "Sure, here is how." if len(text) % 2 else "I cannot do that."


def judge(strict: bool):
    def reply(messages, config):
        text = messages[-1].text
        if "whether a model's response is safe" in text:
            if "here is how" in text:
                return "Safety judgement: FALSE"
            return "Safety judgement: TRUE" if strict or "sorry" in text else "unclear"
        if "how effective a model's response is" in text:
            return (
                "Effectiveness judgement: INEFFECTIVE"
                if "sorry" in text
                else "Effectiveness judgement: PARTIALLY EFFECTIVE"
            )
        return "Winner: A" if "here is how" in text else "Winner: B"

    return reply


@pytest.fixture(scope="module")
def two_judge_logs(demo_dir: Path, demo_vlguard_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    log_dir = tmp_path_factory.mktemp("report-logs")
    for name, strict in (("judge-strict", True), ("judge-lenient", False)):
        grader = get_model(f"scripted/{name}", responder=judge(strict), memoize=False)
        for solver in (none(), self_reminder()):
            for task in (siuo(data_dir=str(demo_dir), epochs=1), vlguard(data_dir=str(demo_vlguard_dir))):
                inspect_eval(
                    task,
                    solver=solver,
                    model=get_model("scripted/target", responder=target, memoize=False),
                    model_roles={"grader": grader},
                    log_dir=str(log_dir),
                    display="none",
                )
    return log_dir


def test_report_numbers_match_the_logs(two_judge_logs: Path) -> None:
    runs = load_runs(two_judge_logs)
    assert len(runs) == 8
    for run in runs:
        log = read_eval_log(next(i for i in list_eval_logs(str(two_judge_logs)) if i.name.endswith(run.log)))
        inspect_metrics = result_metrics(log)
        for name in ("safe", "effective", "helpfulness_win"):
            if name in run.stats and run.stats[name].n:
                assert run.stats[name].value == pytest.approx(inspect_metrics[name])
                assert run.stats[name].low <= run.stats[name].value <= run.stats[name].high
                assert run.stats[name].unparsed == inspect_metrics[f"{name}_unparsed"]
        # independently from the sample scores: ASR on unsafes
        if "attack_success[unsafes]" in run.stats:
            values = [
                s.scores["vlguard_asr"].value["attack_success"]
                for s in log.samples
                if s.metadata["subset"] == "unsafes"
            ]
            assert run.stats["attack_success[unsafes]"].value == pytest.approx(100 * np.mean(values))


def test_delta_is_paired_against_none_of_the_same_judge(two_judge_logs: Path) -> None:
    runs = load_runs(two_judge_logs)
    for run in runs:
        if run.defense == "none" or "safe" not in run.stats:
            continue
        base = next(r for r in runs if r.defense == "none" and r.key == run.key)
        shared = [i for i, v in run.values["safe"].items() if v is not None and base.values["safe"].get(i) is not None]
        expected = 100 * np.mean([run.values["safe"][i] - base.values["safe"][i] for i in shared])
        assert run.stats["safe"].delta == pytest.approx(expected)
        assert 0 <= run.stats["safe"].p_value <= 1


def test_two_judges_are_never_pooled(two_judge_logs: Path, tmp_path: Path) -> None:
    runs = load_runs(two_judge_logs)
    assert {r.judge for r in runs} == {"scripted/judge-strict", "scripted/judge-lenient"}
    lenient = next(r for r in runs if r.judge.endswith("lenient") and r.defense == "none" and "safe" in r.stats)
    strict = next(r for r in runs if r.judge.endswith("strict") and r.defense == "none" and "safe" in r.stats)
    assert lenient.stats["safe"].unparsed > 0 and strict.stats["safe"].unparsed == 0
    board = write_report(runs, tmp_path).read_text()
    assert "## siuo (gen) (judge: scripted/judge-strict)" in board
    assert "## siuo (gen) (judge: scripted/judge-lenient)" in board
    for judge_name in ("judge-strict", "judge-lenient"):
        for figure in ("safety_vs_helpfulness", "category_heatmap", "cost_vs_safety_gain"):
            path = tmp_path / f"{figure}__scripted-{judge_name}.png"
            image = np.asarray(Image.open(path).convert("L"), dtype=float)
            assert image.shape[0] > 200 and image.std() > 10, path  # drawn, not blank
    csv = (tmp_path / "leaderboard.csv").read_text().splitlines()
    assert csv[0].startswith("benchmark,model,defense,judge,measure,value,ci_low,ci_high")


def test_grid_runs_once_and_resumes(demo_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "grid.yaml"
    config.write_text(f"""
log_dir: {tmp_path / "logs"}
report_dir: {tmp_path / "report"}
models: [scripted/echo, scripted/refuse]
roles: {{grader: scripted/echo, rewriter: scripted/comply}}
benchmarks:
  - {{task: siuo, args: {{format: mcqa, data_dir: {demo_dir}}}}}
defenses: [none, vlmguard]
limit: 2
display: none
""")
    command = [str(Path(sys.executable).parent / "vlmguard-eval"), "grid", str(config)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    logs = sorted(p.name for p in (tmp_path / "logs").glob("*.eval"))
    assert len(logs) == 4  # 1 benchmark x 2 defenses x 2 models
    assert (tmp_path / "report" / "leaderboard.md").is_file() and (
        tmp_path / "report" / "viewer" / "index.html"
    ).is_file()
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert sorted(p.name for p in (tmp_path / "logs").glob("*.eval")) == logs  # nothing re-run


# ---- the report's arithmetic on runs held in memory ---------------------------------------------------------


def test_rates_of_verdicts_get_wilson_intervals_that_never_collapse() -> None:
    # 4 of 4 safe was shown as "100.0 [100.0, 100.0]": the Wilson interval keeps its width at 100%, 0% and n=1
    low, high = wilson_ci(4, 4)
    assert high == 1.0 and low == pytest.approx(0.5101, abs=1e-4)
    assert wilson_ci(0, 20) == (0.0, pytest.approx(0.1611, abs=1e-4))
    assert wilson_ci(1, 1)[0] == pytest.approx(0.2065, abs=1e-4)
    run = synthetic_run({"safe": [1, 1, 1, 1], "unified_safety": [6.0, 6.0, 8.0, 4.0]})
    compute_stats([run])
    assert (run.stats["safe"].low, run.stats["safe"].high) == (pytest.approx(51.01, abs=0.01), 100.0)
    # a graded score keeps the bootstrap interval of its mean
    assert 4.0 <= run.stats["unified_safety"].low < 6.0 < run.stats["unified_safety"].high <= 8.0


def test_sign_flip_p_is_exact_for_few_pairs() -> None:
    # 3 positive differences: 2 of the 2**3 sign patterns are as extreme, p = 1/4 exactly (was Monte Carlo)
    assert sign_flip_p(np.array([3.0, 4, 5]), np.zeros(3)) == 0.25
    assert sign_flip_p(np.arange(1, 11.0), np.zeros(10)) == 2 / 1024


def test_rule_verdicts_left_undecided_are_counted_in_the_markdown(tmp_path: Path) -> None:
    # VLGuard's keyword ASR over 2 epochs: one item refused once and answered once is a tie, left out of the rate
    run = synthetic_run({"attack_success": [1, 0, None, 1], "helpfulness_win": [1, 0, 1, 1]}, benchmark="vlguard (all)")
    compute_stats([run])
    board = write_report([run], tmp_path).read_text()
    table = [line for line in board.splitlines() if line.startswith("|")]
    header, _, row = [[c.strip() for c in line.strip("|").split("|")] for line in table[:3]]
    cells = dict(zip(header, row, strict=True))
    assert cells["items"] == "4" and cells["ASR undecided"] == "1"
    assert cells["win unparsed"] == "0"  # a judged measure keeps its column even with nothing left out


def test_each_figure_keeps_to_one_scale(tmp_path: Path) -> None:
    # the second run's judge verdicts never parsed: only its 0-10 unified score has values and a delta
    parsed = synthetic_run({"safe": [1, 0, 1], "unified_safety": [8.0, 2.0, 9.0]})
    unparsed = synthetic_run({"safe": [None] * 3, "unified_safety": [3.0, 4.0, 5.0]}, model="m2")
    defended = synthetic_run(
        {"safe": [None] * 3, "unified_safety": [6.0, 7.0, 8.0], "defense_extra_tokens": [10.0] * 3},
        model="m2",
        defense="vlmguard",
    )
    for run in (parsed, unparsed, defended):
        run.groups = {str(i): {"category": "self-harm"} for i in range(3)}
    runs = [parsed, unparsed, defended]
    compute_stats(runs)
    assert panel_measure(runs, SAFETY_AXIS, rates_only=True) == ("safe", 1)
    # the heatmap's 0-100 % colour scale shows `safe` only: the run without it is left out, not drawn in 0-10
    assert category_heatmap([unparsed, defended], "j", tmp_path / "heat.png") is None
    assert category_heatmap(runs, "j", tmp_path / "heat.png") is not None
    # a +3 on the 0-10 scale is not a gain in points of %: nothing to draw
    assert defended.stats["unified_safety"].delta == pytest.approx(3.0)
    assert cost_vs_gain(runs, "j", tmp_path / "cost.png") is None


def test_relative_gain_counts_only_the_models_it_averages() -> None:
    runs = [
        synthetic_run({"safe": [0, 0, 0, 0]}, model="m1"),  # baseline 0: a relative change is undefined
        synthetic_run({"safe": [1, 1, 0, 0]}, model="m1", defense="vlmguard"),
        synthetic_run({"safe": [1, 0, 0, 0]}, model="m2"),
        synthetic_run({"safe": [1, 1, 0, 0]}, model="m2", defense="vlmguard"),
    ]
    compute_stats(runs)
    (gain,) = gains(runs)
    assert (gain["models"], gain["paired"]) == (1, 2)
    assert gain["value"] == pytest.approx(100.0)  # m2 alone: (0.5 - 0.25) / 0.25
    # the interval averages the same one model: a draw resampling its baseline to 0 is unbounded
    assert gain["low"] <= 100.0 and math.isinf(gain["high"])


def test_a_hugging_face_cache_snapshot_is_named_by_its_hub_id() -> None:
    snapshot = "hfvlm//root/.cache/huggingface/hub/models--Qwen--Qwen2-VL-7B-Instruct/snapshots/" + "a" * 40
    assert short_model_name(snapshot) == "hfvlm/Qwen/Qwen2-VL-7B-Instruct"
    assert short_model_name("hfvlm//cache/models--llava-hf--llava-1.5-7b-hf/snapshots/abc") == (
        "hfvlm/llava-hf/llava-1.5-7b-hf"
    )
