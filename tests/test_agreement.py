"""Judging the judges: Cohen's kappa, `rejudge` through Inspect's scoring API against a served judge,
and the report's agreement section (kappa, swings, disagreements, human labels)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.log import list_eval_logs, read_eval_log
from inspect_ai.model import get_model

from tests.openai_stub import message_text, openai_stub
from tests.test_report import synthetic_run
from vlmguard_eval.cli.main import main
from vlmguard_eval.report.agreement import (
    _comparable,
    cohen_kappa,
    compare,
    human_agreements,
    judge_agreements,
    kappa_ci,
    read_human_labels,
)
from vlmguard_eval.report.runs import compute_stats

SECOND_JUDGE = "stub/second-judge"


def test_cohen_kappa_textbook_values() -> None:
    # 2 x 2 table [[20, 5], [10, 15]]: observed 0.7, expected 0.5, kappa 0.4
    a = np.array([1] * 25 + [0] * 25)
    b = np.array([1] * 20 + [0] * 5 + [1] * 10 + [0] * 15)
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(a, 1 - a) == pytest.approx(-1.0)
    assert math.isnan(cohen_kappa(np.array([1, 1]), np.array([1, 1])))  # one label throughout: undefined
    assert cohen_kappa(np.array([1, 1]), np.array([0, 0])) == 0
    # quadratic weights: a near miss on a scale costs less than a far one
    scale = np.array([0, 5, 10, 10])
    assert cohen_kappa(scale, np.array([1, 5, 10, 9]), weighted=True) > cohen_kappa(
        scale, np.array([10, 5, 0, 10]), weighted=True
    )
    low, high = kappa_ci(a, b, weighted=False)
    assert low < 0.4 < high


def first_judge(messages, config) -> str:
    safety = "Safety judgement:" in messages[-1].text
    return "Safety judgement: TRUE" if safety else "Effectiveness judgement: VERY EFFECTIVE"


def second_judge(body: dict[str, Any]) -> str:
    assert body["model"] == SECOND_JUDGE  # the only model rejudge may call
    text = message_text(body["messages"][-1])
    if "Safety judgement:" in text:
        unsafe = "recipe for tonight" in text or "quickest way across" in text
        return "Safety judgement: FALSE" if unsafe else "Safety judgement: TRUE"
    return "cannot say" if "treat myself" in text else "Effectiveness judgement: VERY EFFECTIVE"


def test_rejudge_and_report_show_kappa_and_swings(demo_dir: Path, tmp_path: Path) -> None:
    logs = tmp_path / "run" / "logs"
    (original,) = inspect_eval(
        __import__("tasks.siuo", fromlist=["siuo"]).siuo(data_dir=str(demo_dir), epochs=1),
        model=get_model("scripted/echo", memoize=False),
        model_roles={"grader": get_model("scripted/custom", responder=first_judge, memoize=False)},
        log_dir=str(logs),
        display="none",
    )
    assert original.status == "success"
    with openai_stub(second_judge) as server:
        code = main(
            ["rejudge", str(logs), "--grader", f"vllm/{SECOND_JUDGE}", "--grader-base-url", server.base_url]
            + ["-M", "api_key=test", "--display", "none"]
        )
        requests = list(server.requests)
    assert code == 0
    assert len(requests) == 12  # two verdicts for each of the six answers, and nothing else
    out = tmp_path / "run" / "logs__judge-vllm-stub-second-judge"
    (info,) = list_eval_logs(str(out))
    rejudged = read_eval_log(info.name)
    assert rejudged.eval.model_roles["grader"].model == f"vllm/{SECOND_JUDGE}"
    assert rejudged.eval.metadata["original_grader"] == "scripted/custom"
    before = {s.id: s.output.completion for s in read_eval_log(original.location).samples}
    assert {s.id: s.output.completion for s in rejudged.samples} == before  # the answers are the logged ones
    assert rejudged.samples[0].scores["siuo_judge"].metadata["judge"] == f"vllm/{SECOND_JUDGE}"
    # running it again finds the log already there
    assert main(["rejudge", str(logs), "--grader", f"vllm/{SECOND_JUDGE}", "--display", "none"]) == 0

    labels = tmp_path / "labels.csv"
    ids = [str(s.id) for s in rejudged.samples]
    with open(labels, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "measure", "label"])
        writer.writerows([[i, "safe", 1] for i in ids])
    report = tmp_path / "report"
    assert main(["report", str(logs), str(out), "--out", str(report), "--human-labels", str(labels)]) == 0
    text = (report / "leaderboard.md").read_text()
    assert "## Judge agreement" in text and "### Against human labels" in text
    rows = {r["measure"]: r for r in csv.DictReader(open(report / "judge_agreement.csv"))}
    # the second judge flags 2 of 6 answers unsafe: 4/6 agree, kappa 0 (the first judge never varies)
    assert float(rows["safe"]["agree_pct"]) == pytest.approx(100 * 4 / 6)
    assert float(rows["safe"]["swing_b_minus_a"]) == pytest.approx(-100 * 2 / 6)
    assert int(rows["safe"]["disagreements"]) == 2
    assert int(rows["effective"]["one_unparsed"]) == 1 and int(rows["effective"]["disagreements"]) == 0
    assert float(rows["effective"]["swing_b_minus_a"]) == 0
    disagreeing = list(csv.DictReader(open(report / "judge_agreement_disagreements.csv")))
    assert {r["item"] for r in disagreeing if r["measure"] == "safe"} == {"9002", "9005"}
    assert all(r["value_a"] != r["value_b"] for r in disagreeing)
    human = {(r["rater_a"], r["measure"]): r for r in csv.DictReader(open(report / "human_agreement.csv"))}
    assert float(human[("scripted/custom", "safe")]["agree_pct"]) == 100
    assert float(human[(f"vllm/{SECOND_JUDGE}", "safe")]["agree_pct"]) == pytest.approx(100 * 4 / 6)


def test_human_labels_must_be_numbers(tmp_path: Path) -> None:
    from vlmguard_eval.report.agreement import read_human_labels

    path = tmp_path / "labels.csv"
    path.write_text("id,label\n7,maybe\n")
    with pytest.raises(ValueError, match="row #0 \\(id 7\\): field 'label'"):
        read_human_labels(path)


# ---- agreement on runs held in memory -----------------------------------------------------------------------


def test_graded_means_round_half_up_and_only_one_sided_gaps_count_as_one_unparsed() -> None:
    # 2-epoch means: 6.5 and 7.5 are both a half above an integer; Python's round() took 6.5 down to 6
    assert _comparable({"a": 6.5, "b": 7.5, "c": 2.4}, "unified_safety") == {"a": 7.0, "b": 8.0, "c": 2.0}
    first = {"1": 1, "2": None, "3": None, "4": 0}
    second = {"1": 1, "2": 1, "3": None, "4": 1}
    agreement = compare(first, second, "safe", ("siuo (gen)", "m", "none"), ("A", "B"))
    assert (agreement.items, agreement.one_unparsed, agreement.both_unparsed) == (2, 1, 1)


def test_judges_of_runs_on_different_inputs_are_never_compared() -> None:
    same_data = synthetic_run({"safe": [1, 0, 1]}, judge="judge-a")
    rejudged = synthetic_run({"safe": [1, 1, 1]}, judge="judge-b")
    other_data = synthetic_run({"safe": [0, 0, 0]}, judge="judge-c", dataset="siuo_gen@/data/B/siuo_gen.json")
    runs = [same_data, rejudged, other_data]
    compute_stats(runs)
    assert {(g.rater_a, g.rater_b) for g in judge_agreements(runs)} == {("judge-a", "judge-b")}


def write_labels(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_a_human_label_is_compared_only_with_the_answer_it_labels(tmp_path: Path) -> None:
    # two target models answered the same items; a human labelled model m1's answers only
    first = synthetic_run({"safe": [1, 0, 1]}, model="m1", eval_id="run-m1")
    rejudged = synthetic_run({"safe": [1, 1, 1]}, model="m1", judge="j2", eval_id="run-m1")  # m1's answers again
    second = synthetic_run({"safe": [0, 0, 0]}, model="m2", eval_id="run-m2")
    runs = [first, rejudged, second]
    compute_stats(runs)
    ambiguous = write_labels(tmp_path / "ids-only.csv", ["id", "label"], [[0, 1], [1, 0], [2, 1]])
    with pytest.raises(ValueError, match=r"ids-only\.csv: row #0 \(id 0\) fits the answers of 2 runs"):
        human_agreements(runs, read_human_labels(ambiguous), str(ambiguous))
    named = write_labels(tmp_path / "named.csv", ["id", "label", "model"], [[0, 1, "m1"], [1, 0, "m1"], [2, 1, "m1"]])
    found, unmatched = human_agreements(runs, read_human_labels(named), str(named))
    # both judges of m1's answers are scored against the labels; m2's answers are not
    assert {(g.model, g.rater_a): g.agree for g in found} == {("m1", "j"): 100.0, ("m1", "j2"): pytest.approx(200 / 3)}
    assert unmatched == 0
    # with one run only, the id names its answer
    alone, _ = human_agreements([first], read_human_labels(ambiguous), str(ambiguous))
    assert [g.agree for g in alone] == [100.0]


def test_a_swing_without_items_reads_n_a(tmp_path: Path) -> None:
    from vlmguard_eval.report.agreement import agreement_lines

    # neither judge gave a parsed verdict: no headline rate on either side, so no swing
    runs = [
        synthetic_run({"safe": [None, None]}, judge="judge-a"),
        synthetic_run({"safe": [None, None]}, judge="judge-b"),
    ]
    compute_stats(runs)
    (agreement,) = judge_agreements(runs)
    assert agreement.swing is None
    (row,) = [line for line in agreement_lines(runs, tmp_path) if "judge-a" in line]
    assert "nan" not in row and row.split(" | ")[9] == "n/a"
    (summary,) = csv.DictReader(open(tmp_path / "judge_agreement.csv"))
    assert summary["swing_b_minus_a"] == ""
