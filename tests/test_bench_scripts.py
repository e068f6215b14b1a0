"""The GPU benchmark scripts run their whole path on the tiny VLM on CPU, so a lent GPU's minutes go to
figures, not to a script that broke since its last GPU run. No speed is checked here (bench/ prints those)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_gpu_e2e_runs_both_defenses_with_three_local_models_on_cpu() -> None:
    out = run_script(
        "bench/gpu_e2e.py", "--device", "cpu", "--target", "tiny", "--rewriter", "tiny", "--judge", "tiny",
        "--samples", "4", "--warmup", "2", "--max-tokens", "4", "--batch-size", "2", "--max-samples", "4",
    )  # fmt: skip
    runs = re.findall(
        r"^(\w+)\s+(\d+) samples in .* status (\w+), (\d+) sample errors; batches so far (.*)$", out, re.M
    )
    assert [(defense, samples, status, errors) for defense, samples, status, errors, _ in runs] == [
        ("vlmguard", "2", "success", "0"),
        ("vlmguard", "4", "success", "0"),
        ("none", "4", "success", "0"),
    ], out
    assert all(f"'{role}':" in runs[-1][4] for role in ("target", "rewriter", "judge"))
    assert "checkpoints in memory: 3 (one per role)" in out


def test_local_batching_matches_plain_generate_in_each_mode_on_cpu() -> None:
    out = run_script("bench/local_batching.py", "--requests", "4", "--single", "2", "--new-tokens", "4")
    modes = re.findall(r"^hfvlm decode=(\w+): 1 concurrent .* equal to plain generate: (\d+)/(\d+)$", out, re.M)
    assert modes == [("dynamic", "2", "2"), ("static", "2", "2")], out
    phases = re.findall(
        r"^hfvlm decode=\w+: 32 concurrent, ([\d.]+) s for one token .* the other 3 \(decoding\)$", out, re.M
    )
    assert len(phases) == 2 and all(float(seconds) > 0 for seconds in phases), out


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
