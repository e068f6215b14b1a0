"""The commands exactly as a user types them, run as subprocesses from the repository root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from inspect_ai.log import list_eval_logs, read_eval_log

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def inspect_eval(*args: str, log_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no PYTHONPATH: as a user runs it
    command = [str(BIN / "inspect"), "eval", *args, "--log-dir", str(log_dir), "--display", "plain"]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def vlmguard_eval(*args: str) -> subprocess.CompletedProcess:
    command = [str(BIN / "vlmguard-eval"), *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def only_log(log_dir: Path):
    (info,) = list_eval_logs(str(log_dir))
    return read_eval_log(info)


def test_inspect_eval_siuo_with_bare_solver_names(tiny_vlm: Path, demo_dir: Path, tmp_path: Path) -> None:
    model = f"hfvlm/{tiny_vlm}"
    common = [
        "--model",
        model,
        "--model-role",
        f"grader={model}",
        "-T",
        f"data_dir={demo_dir}",
        "--limit",
        "2",
        "--epochs",
        "1",
        "--max-tokens",
        "8",
    ]
    result = inspect_eval(
        "tasks/siuo.py",
        "--solver",
        "vlmguard",
        "--model-role",
        f"rewriter={model}",
        *common,
        log_dir=tmp_path / "vlmguard",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    log = only_log(tmp_path / "vlmguard")
    assert log.status == "success" and log.eval.solver == "vlmguard"
    for sample in log.samples:
        # the tiny model's random text never parses: the fallback is taken, recorded and shown
        record = sample.metadata["vlmguard"]
        assert record["rewriter_reply"] and record["fallback"]["reason"] in ("malformed", "empty")
    result = inspect_eval("tasks/siuo.py", "--solver", "none", *common, log_dir=tmp_path / "none")
    assert result.returncode == 0, result.stdout + result.stderr
    assert only_log(tmp_path / "none").eval.solver == "none"


def test_unknown_solver_is_refused(tmp_path: Path, demo_dir: Path) -> None:
    result = inspect_eval(
        "tasks/siuo.py",
        "--solver",
        "no_such_defense",
        "--model",
        "scripted/echo",
        "-T",
        f"data_dir={demo_dir}",
        log_dir=tmp_path,
    )
    assert result.returncode != 0 and "no_such_defense" in result.stdout + result.stderr


def test_offline_main_job_writes_logs_and_leaderboard(tmp_path: Path) -> None:
    """`make demo` as it runs (no limits): every benchmark, both defenses, real numbers from the scripted judge."""
    env = {**os.environ, "VLMGUARD_CACHE": str(tmp_path / "cache")}
    command = [str(BIN / "vlmguard-eval"), "run", "--out", str(tmp_path / "out"), "--display", "none"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    logs = list_eval_logs(str(tmp_path / "out" / "logs"))
    assert len(logs) == 8  # SIUO gen and mcqa, MM-SafetyBench TYPO, VLGuard; none and vlmguard each
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    for section in ("## siuo (gen)", "## siuo (mcqa)", "## mm_safetybench (TYPO)", "## vlguard (all)"):
        assert section + " (judge: scripted/judge)" in board
    assert board.count("| hfvlm/tiny-llava | none |") == 4 and board.count("| hfvlm/tiny-llava | vlmguard |") == 4
    assert "**Scripted judge.**" in board and str(tmp_path) not in board  # no machine paths in the markdown
    assert str(tmp_path) in (tmp_path / "out" / "leaderboard.csv").read_text()  # the CSV keeps the full id
    section = board.split("## siuo (gen)")[1].split("\n## ")[0]
    (siuo_gen,) = [line for line in section.splitlines() if line.startswith("| hfvlm/tiny-llava | none |")]
    assert "n/a" not in siuo_gen and "[" in siuo_gen  # parsed verdicts: rates with CIs
    for figure in ("safety_vs_helpfulness.png", "category_heatmap.png", "cost_vs_safety_gain.png"):
        assert (tmp_path / "out" / figure).is_file()


def test_free_text_defense_settings_come_from_a_config_file(tiny_vlm, demo_dir, side_models, tmp_path) -> None:
    config = tmp_path / "eta.yaml"
    description = "Unsafe content: weapons, drugs, or violence."  # commas would split a -S value
    config.write_text(
        f"reward_model: {side_models['armorm']}\nclip_model: {side_models['clip']}\n"
        f'unsafe_description: "{description}"\n'
    )
    model = f"hfvlm/{tiny_vlm}"
    result = inspect_eval(
        "tasks/siuo.py",
        "--solver",
        "eta",
        "--solver-config",
        str(config),
        "-S",
        "n_candidates=2",
        "--model",
        model,
        "--model-role",
        f"grader={model}",
        "-T",
        f"data_dir={demo_dir}",
        "--limit",
        "1",
        "--epochs",
        "1",
        "--max-tokens",
        "4",
        log_dir=tmp_path / "logs",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    log = only_log(tmp_path / "logs")
    assert log.eval.solver_args["unsafe_description"] == description and log.eval.solver_args["n_candidates"] == 2


def test_report_bundle_holds_every_log_dir(demo_dir: Path, tmp_path: Path) -> None:
    """`report A B --bundle`: the viewer shows the logs of both dirs (Inspect bundles one dir at a time)."""
    first = tmp_path / "first"
    config = tmp_path / "grid.yaml"
    config.write_text(
        f"log_dir: {first}\nmodels: [scripted/refuse]\nroles: {{grader: scripted/judge}}\ndefenses: [none]\n"
        f"benchmarks: [{{task: siuo, args: {{format: mcqa, data_dir: {demo_dir}}}}}]\nlimit: 1\ndisplay: none\n"
    )
    assert vlmguard_eval("grid", str(config)).returncode == 0
    second = tmp_path / "second"
    second.mkdir()
    for log in first.glob("*.eval"):
        shutil.copy(log, second / log.name)
    out = tmp_path / "report"
    result = vlmguard_eval("report", str(first), str(second), "--out", str(out), "--bundle")
    assert result.returncode == 0, result.stderr
    bundled = sorted(p.relative_to(out / "viewer" / "logs").parts[0] for p in (out / "viewer").rglob("*.eval"))
    assert bundled == ["0-first", "1-second"]
