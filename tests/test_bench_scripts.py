"""The GPU benchmark scripts run their whole path on the tiny VLM on CPU, so a lent GPU's minutes go to
figures, not to a script that broke since its last GPU run. No speed is checked here (bench/ prints those)."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_gpu_e2e_runs_both_defenses_with_three_local_models_on_cpu(tmp_path: Path) -> None:
    out = run_script(
        "bench/gpu_e2e.py", "--device", "cpu", "--target", "tiny", "--rewriter", "tiny", "--judge", "tiny",
        "--samples", "4", "--warmup", "2", "--max-tokens", "4", "--batch-size", "2", "--max-samples", "4",
        "--models-dir", str(tmp_path),
    )  # fmt: skip
    runs = re.findall(
        r"^(\w+)\s+(\d+) samples in .* status (\w+), (\d+) sample errors; batches so far (.*)$", out, re.M
    )
    assert [(defense, samples, status, errors) for defense, samples, status, errors, _ in runs] == [
        ("vlmguard", "2", "success", "0"),  # the warm-up
        ("none", "4", "success", "0"),  # the baseline first: a run cut short still has it
        ("vlmguard", "4", "success", "0"),
    ], out
    assert all(f"'{role}':" in runs[-1][4] for role in ("target", "rewriter", "judge"))
    assert re.search(
        r"^summary: none [\d.]+ samples/s \(GPU nan%\), vlmguard [\d.]+ samples/s .*; vlmguard at", out, re.M
    )
    assert "`none` never calls the rewriter but holds its" in out
    assert "checkpoints in memory: 3 (one per role)" in out
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # built once, where asked, for all three roles


def test_local_batching_compares_token_ids_single_and_batched_on_cpu(tmp_path: Path) -> None:
    out = run_script(
        "bench/local_batching.py", "--requests", "4", "--single", "2", "--new-tokens", "4",
        "--models-dir", str(tmp_path),
    )  # fmt: skip
    equal = re.findall(
        r"^hfvlm decode=(\w+): greedy token ids equal to plain generate one by one: single-stream (\d+/\d+), "
        r"4 concurrent (\d+/\d+) \(one batch\); 4 concurrent equal to plain generate's batch: (\d+/\d+)$",
        out,
        re.M,
    )
    assert equal == [("dynamic", "2/2", "4/4", "4/4"), ("static", "2/2", "4/4", "4/4")], out
    # every timed shape was warmed first: no static cache is made inside a timed pass
    caches = re.findall(r"^hfvlm decode=(\w+): static caches made in timed passes: 0 \(kept: (.*)\)$", out, re.M)
    assert caches == [("dynamic", "none"), ("static", "1x256, 4x256")], out
    rates = re.findall(
        r"^hfvlm decode=\w+: 1 concurrent [\d.]+ \[[\d.]+-[\d.]+\] tokens/s, .* medians of 3;", out, re.M
    )
    assert len(rates) == 2, out
    assert re.search(r"^plain generate, batch of 4: [\d.]+ \[[\d.]+-[\d.]+\] tokens/s$", out, re.M), out
    phases = re.findall(
        r"^hfvlm decode=\w+: 4 concurrent, ([\d.]+) s for one token .* the other 3 \(decoding\)$", out, re.M
    )
    assert len(phases) == 2 and all(float(seconds) > 0 for seconds in phases), out


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The bench scripts as modules (they import one another by name from bench/)."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # what importing gpu_e2e sets
    return importlib.import_module("common"), importlib.import_module("gpu_e2e")


def test_built_checkpoints_are_kept_and_reused_while_their_recipe_matches(
    bench: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 7B takes minutes and 14 GB to write: a lent GPU machine builds it once (the tiny builder stands in)."""
    common, _ = bench
    builds: list[Path] = []

    def build_tiny_vlm(path: Path) -> Path:
        builds.append(path)
        path.mkdir(parents=True)
        (path / "model.safetensors").write_text("weights")
        return path

    monkeypatch.setattr("vlmguard_eval.models.tiny.build_tiny_vlm", build_tiny_vlm)
    path = Path(common.build("tiny", tmp_path))
    assert path == tmp_path / "tiny" and "built random-weight tiny" in capsys.readouterr().out
    assert Path(common.build("tiny", tmp_path)) == path and "reusing random-weight tiny" in capsys.readouterr().out
    assert len(builds) == 1 and (path / "model.safetensors").read_text() == "weights"
    # another recipe's folder is rebuilt, and a build cut short (its process gone) is removed
    marker = path / common.RECIPE_FILE
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "version": 0}))
    (tmp_path / ".tiny.building-999999999").mkdir()
    common.build("tiny", tmp_path)
    assert "built random-weight tiny" in capsys.readouterr().out and len(builds) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_gpu_e2e_starts_no_arm_after_its_deadline(bench: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, gpu_e2e = bench
    clock = iter([10.0, 50.0, 130.0]).__next__  # seconds since the start, read before each arm
    assert list(gpu_e2e.arms_to_start(["none", "vlmguard", "eta"], 100, 0.0, clock)) == ["none", "vlmguard"]
    assert "deadline (100 s) passed: not run: eta" in capsys.readouterr().out
    assert list(gpu_e2e.arms_to_start(["none", "vlmguard"], None, 0.0, lambda: 1e9)) == ["none", "vlmguard"]


def test_roofline_decoding_one_row_reads_the_published_7b_weights_and_the_cache_once_per_step() -> None:
    """Llama-2-7B has 6,738,415,616 parameters (its HF config; "7B" in Touvron et al. 2023): decoding one row
    reads its matrix weights (all but the 32,000 x 4,096 input embedding; LLaVA's head has 64 more rows) and
    the row's cache (keys and values: 2 x 32 layers x 4,096 x 2 bytes per position) once per step, 63 steps
    for 64 new tokens."""
    out = run_script(
        "bench/roofline.py", "--shape", "llava-1.5-7b", "--rows", "1", "--prompt-tokens", "600", "--new-tokens", "64"
    )
    decoding = float(re.search(r"decoding ([\d.]+) s", out).group(1))
    weights = 2 * (6_738_415_616 - 32_000 * 4096 + 64 * 4096)
    cache = 2 * 32 * 4096 * 2 * sum(600 + step for step in range(1, 64))
    expected = (63 * weights + cache) / 3.35e12  # the first new token comes from the prefill
    assert abs(decoding - expected) / expected < 0.005, (decoding, expected)
