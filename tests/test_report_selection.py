"""Which logs the report uses and what it pairs: one log per task (a smoke run never replaces the full run),
several log dirs read as one, baselines on the same inputs only, FigStep logs, and no refusal-string DSR on
letter answers."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.model import get_model

from solvers import none, self_reminder
from tasks.figstep import figstep
from tasks.siuo import siuo
from tests.test_report import synthetic_run
from vlmguard_eval.cli.main import make_report
from vlmguard_eval.core.measures import SAFETY_AXIS
from vlmguard_eval.report.figures import axis_label
from vlmguard_eval.report.paper import add_keyword_measures, cost_rows, gains
from vlmguard_eval.report.runs import compute_stats, latest_runs, load_report_runs
from vlmguard_eval.report.writer import write_report


def answers_b(messages, config) -> str:
    return "B"  # an option letter, so MCQA accuracy has values to pair


def run_mcqa(data_dir: Path, log_dir: Path, responder=answers_b, solver=None, **options) -> None:
    inspect_eval(
        siuo(format="mcqa", data_dir=str(data_dir)),
        solver=solver or none(),
        model=get_model("scripted/custom", responder=responder, memoize=False),
        log_dir=str(log_dir),
        display="none",
        **options,
    )


def run_gen(data_dir: Path, log_dir: Path, target: str, solver=None) -> None:
    inspect_eval(
        siuo(data_dir=str(data_dir), epochs=1),
        solver=solver or none(),
        model=get_model(target, memoize=False),
        model_roles={"grader": "scripted/judge"},
        log_dir=str(log_dir),
        display="none",
    )


def csv_rows(report: Path) -> list[dict[str, str]]:
    with open(report / "leaderboard.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# ---- one log per task ---------------------------------------------------------------------------------------


def test_a_later_limit_run_never_replaces_the_full_run(demo_dir: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    run_mcqa(demo_dir, logs)
    run_mcqa(demo_dir, logs, limit=2)  # a smoke run of the same task, newer: Inspect's task identifier ignores limit
    (run,), skipped = load_report_runs(logs)
    assert run.completed == 6 and not run.subset and run.label == "none"
    (reason,) = skipped.values()
    assert reason.startswith("superseded by") and "subset (2/6 items)" in reason
    # with only the smoke run, it is used and flagged
    smoke = tmp_path / "smoke"
    run_mcqa(demo_dir, smoke, limit=2)
    (run,), _ = load_report_runs(smoke)
    assert run.label == "none (SUBSET: 2/6 items)"


def test_a_complete_run_outranks_newer_partial_or_fewer_epoch_ones() -> None:
    def attempt(created: str, status: str = "success", epochs: int = 3, completed: int = 6):
        run = synthetic_run({"safe": [1] * 6}, identity="task", created=created, status=status, epochs=epochs)
        run.log, run.samples, run.completed = f"{created}.eval", 6, completed
        run.items_run = run.dataset_items = 6
        return run

    # 10:00+02:00 is 08:00 UTC: older than 09:00+00:00, though its text sorts after
    complete = attempt("2026-01-01T09:00:00+00:00")
    older = attempt("2026-01-01T10:00:00+02:00")
    cancelled = attempt("2026-01-01T11:00:00+00:00", status="cancelled", completed=2)
    one_epoch = attempt("2026-01-01T12:00:00+00:00", epochs=1)
    (kept,), not_used = latest_runs([cancelled, complete, one_epoch, older])
    assert kept is complete
    assert "partial (2/6 samples)" in not_used[cancelled.log] and "1 of 3 epochs" in not_used[one_epoch.log]
    assert not_used[older.log].endswith("a newer run of the same task")
    (kept,), _ = latest_runs([cancelled, one_epoch])  # no complete run of every epoch: the complete one, flagged
    assert kept is one_epoch and kept.label == "none (SUBSET: 1 of 3 epochs)"


# ---- several log dirs ---------------------------------------------------------------------------------------


def test_the_same_logs_in_two_dirs_count_once(demo_dir: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    run_mcqa(demo_dir, logs)
    run_mcqa(demo_dir, logs, solver=self_reminder())
    copy = tmp_path / "copy"
    shutil.copytree(logs, copy)
    board = make_report([logs, copy], tmp_path / "report", "t", bundle=False).read_text()
    rows = csv_rows(tmp_path / "report")
    assert sorted({r["defense"] for r in rows if r["measure"] == "mcqa_correct"}) == ["none", "self_reminder"]
    assert len([r for r in rows if r["measure"] == "mcqa_correct"]) == 2
    defended = next(r for r in rows if r["measure"] == "mcqa_correct" and r["defense"] == "self_reminder")
    assert defended["delta_vs_none"] != ""  # one baseline, not two copies of it
    assert board.count("superseded by") == 2 and "the same run" in board


def test_logs_with_the_same_file_name_in_two_dirs_are_read_apart(demo_dir: Path, tmp_path: Path) -> None:
    refusing, complying = tmp_path / "refusing", tmp_path / "complying"
    run_gen(demo_dir, refusing, "scripted/refuse")
    run_gen(demo_dir, complying, "scripted/comply")
    (name,) = [p.name for p in refusing.glob("*.eval")]
    (other,) = list(complying.glob("*.eval"))
    other.rename(complying / name)  # as `rejudge` writes: the source's file name in another dir
    make_report([refusing, complying], tmp_path / "report", "t", bundle=False)
    dsr = {r["model"]: float(r["value"]) for r in csv_rows(tmp_path / "report") if r["measure"] == "dsr"}
    assert dsr == {"scripted/refuse": 100.0, "scripted/comply": 0.0}  # each from its own log's answers


# ---- pairing and naming runs on different inputs ------------------------------------------------------------


def test_the_relative_gain_and_sections_use_the_leaderboard_baseline(tmp_path: Path) -> None:
    # two `none` runs of one model on different copies of SIUO; the defense ran on copy A
    on_a = synthetic_run({"safe": [1, 0, 0, 0, 0, 0]})
    defended = synthetic_run({"safe": [1, 1, 1, 0, 0, 0]}, defense="self_reminder")
    on_b = synthetic_run({"safe": [1] * 6}, dataset="siuo_gen@/data/B/siuo_gen.json")
    runs = [on_a, defended, on_b]
    compute_stats(runs)
    assert defended.baseline is on_a and defended.stats["safe"].delta == pytest.approx(100 * 2 / 6)
    (gain,) = gains(runs)
    assert gain["value"] == pytest.approx(200.0)  # (3/6 - 1/6) / (1/6), against A: not -50% against B
    assert gain["shown"] == "siuo (gen) [data 1: A/siuo_gen.json]"
    (row,) = cost_rows(runs)
    assert row[3] == "siuo (gen) [data 1: A/siuo_gen.json] +33.3 (safe %)"
    board = write_report(runs, tmp_path).read_text()
    assert "## siuo (gen) [data 1: A/siuo_gen.json] (judge: j)" in board
    assert "## siuo (gen) [data 2: B/siuo_gen.json] (judge: j)" in board
    assert {r["data_variant"] for r in csv_rows(tmp_path)} == {"data 1: A/siuo_gen.json", "data 2: B/siuo_gen.json"}


# ---- FigStep ------------------------------------------------------------------------------------------------

SAFEBENCH_HEADER = ["dataset", "category_id", "task_id", "category_name", "question", "instruction"]


def test_figstep_logs_are_reported(tmp_path: Path) -> None:
    data = tmp_path / "figstep"
    data.mkdir()
    with open(data / "SafeBench-Tiny.csv", "w", newline="", encoding="utf-8") as f:  # made-up rows
        writer = csv.writer(f)
        writer.writerow(SAFEBENCH_HEADER)
        for task_id in (1, 2, 3):
            writer.writerow(["SafeBench", 1, task_id, "Illegal Activity", f"question {task_id}?", f"Steps {task_id}."])
    logs = tmp_path / "logs"
    for solver in (none(), self_reminder()):
        inspect_eval(
            figstep(subset="tiny", query_type="baseline", data_dir=str(data)),
            solver=solver,
            model=get_model("scripted/echo", memoize=False),
            model_roles={"grader": "scripted/judge"},
            log_dir=str(logs),
            display="none",
        )
    runs, skipped = load_report_runs(logs)
    assert not skipped and [r.benchmark for r in runs] == ["figstep (tiny, baseline)"] * 2
    defended = next(r for r in runs if r.defense == "self_reminder")
    assert defended.stats["figstep_attack"].n == 3 and defended.stats["figstep_attack"].delta is not None
    board = write_report(runs, tmp_path / "report").read_text()
    assert "## figstep (tiny, baseline) (judge: scripted/judge)" in board
    assert (tmp_path / "report" / "category_heatmap.png").is_file()
    # on a safety axis the judge's attack rate is shown as its complement, and labelled so
    assert dict(SAFETY_AXIS)["figstep_attack"] == -1
    assert axis_label("figstep_attack", -1) == "100 - attack rate % (judge)"


# ---- the paper's refusal-string DSR -------------------------------------------------------------------------


def test_no_refusal_string_dsr_on_letter_answers(demo_dir: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    run_mcqa(demo_dir, logs, responder=lambda messages, config: "I'm sorry, I cannot help with that.")
    runs, _ = load_report_runs(logs)
    add_keyword_measures(runs)
    assert "mcqa_correct" in runs[0].stats and "dsr" not in runs[0].stats
