"""A whole defended run on one GPU: `vlmguard` vs `none` on SIUO-format data with three local models.

    PYTHONUNBUFFERED=1 python bench/gpu_e2e.py [--samples 256] [--max-tokens 64] [--decode dynamic]
                            [--target llava-1.5-7b] [--rewriter llava-1.5-7b] [--judge llava-3b]

Random-weight models of real shapes are built on the GPU (models/tiny.py: TEXT_SHAPES; nothing is
downloaded): the target (LLaVA-1.5-7B), the rewriter (7B, the paper's rewriter size) and the SIUO
judge (`grader`), each an `hfvlm/` model with its own batcher, all on one GPU in one Inspect process.
Every call is capped at `--max-tokens` new tokens and SIUO runs one epoch, to fit a benchmark's time
(random weights rarely stop early, so each call runs to the cap). A warm-up run over `--warmup`
samples goes first (with `--decode graphs` it compiles the decode shapes). Reported per run: samples/s,
GPU utilization (NVML, sampled every 100 ms) averaged over the run, and peak GPU memory. Target: mean
utilization >= 60%. Roles of one shape share one checkpoint built on disk, each loading it through its
own folder name, so each role is a model of its own in memory, as in a real run.

`--device cpu` with `tiny` models is a smoke run of the same path, for the tests (no figure):
    python bench/gpu_e2e.py --device cpu --target tiny --rewriter tiny --judge tiny --samples 4 --warmup 2

Every 30 s a line shows the last window's and the run's mean utilization so far, and each model's batch
count, so a run cut short still says how far it got; the last line counts the checkpoints in memory (one
per role). Memory on an H100 (80 GB): the three models' weights take 32.5 GiB. The 2026-11-23 runs (batch 16
with 96 samples in flight ran out of memory; batch 8 with 48 in flight peaked at 76.6 GiB) also held a
second copy of every model, loaded by Inspect's model-info lookup (fixed since: README Performance), so the
defaults below are conservative: try `--batch-size 16 --max-samples 96` once the defaults have a figure.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from common import siuo_copy
from local_batching import build

# before CUDA starts: three models' caches of many lengths fragment the allocator's fixed-size segments
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


class GpuSampler:
    """GPU utilization and memory in use, read from NVML every `period` seconds on a thread (none on a CPU)."""

    def __init__(self, on_gpu: bool, period: float = 0.1) -> None:
        self._period = period
        self.samples: list[tuple[float, int, int]] = []
        self.run_started = time.perf_counter()  # set by each run, for the run-so-far mean
        self._stop = threading.Event()
        if on_gpu:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu
            used = self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used
            self.samples.append((time.perf_counter(), util, used))
            time.sleep(self._period)

    def window(self, start: float, end: float) -> tuple[float, float]:
        """Mean utilization (%) and peak memory in use (GiB) between two perf_counter times."""
        inside = [(u, m) for t, u, m in self.samples if start <= t <= end]
        if not inside:
            return float("nan"), float("nan")
        return sum(u for u, _ in inside) / len(inside), max(m for _, m in inside) / 2**30

    def stop(self) -> None:
        self._stop.set()

    def report_every(self, seconds: float, extra) -> None:
        """Print utilization, memory and `extra()` every `seconds` on a thread (shows where a long run stalls)."""

        def loop() -> None:
            started = time.perf_counter()
            while not self._stop.wait(seconds):
                now = time.perf_counter()
                util, used = self.window(now - seconds, now)
                so_far, _ = self.window(self.run_started, now)
                print(
                    f"  [{now - started:5.0f} s] GPU {util:3.0f}% (run so far {so_far:3.0f}%), {used:.1f} GiB in use; "
                    f"batches {extra()}",
                    flush=True,
                )

        threading.Thread(target=loop, daemon=True).start()


def main() -> None:
    import torch
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import GenerateConfig, get_model

    from solvers import none, vlmguard
    from tasks.siuo import siuo
    from vlmguard_eval.models import local_vlm

    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-samples", type=int, default=48, help="samples in flight")
    parser.add_argument("--decode", default="dynamic")
    parser.add_argument("--cache-share", type=float, default=0.15, help="per model")
    parser.add_argument("--target", default="llava-1.5-7b")
    parser.add_argument("--rewriter", default="llava-1.5-7b")
    parser.add_argument("--judge", default="llava-3b")
    parser.add_argument("--defenses", nargs="+", default=["vlmguard", "none"])
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of the same path (no figure)")
    args = parser.parse_args()
    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        raise SystemExit("bench/gpu_e2e.py measures a GPU; none is visible here (--device cpu: a smoke run)")

    roles = ("target", "rewriter", "judge")
    built = {shape: Path(build(shape)) for shape in {getattr(args, role) for role in roles}}
    paths = {}  # each role its own folder name (one model each), over one built checkpoint per shape
    for role in roles:
        paths[role] = Path(tempfile.mkdtemp()) / role
        paths[role].symlink_to(built[getattr(args, role)], target_is_directory=True)
    capped = GenerateConfig(max_tokens=args.max_tokens)

    def local(role: str):
        return get_model(
            f"hfvlm/{paths[role]}",
            config=capped,
            batch_size=args.batch_size,
            decode=args.decode,
            device=args.device,
            cache_share=args.cache_share,
            memoize=False,
        )

    models = {role: local(role) for role in paths}
    if on_gpu:
        print(f"loaded; GPU memory allocated {torch.cuda.memory_allocated() / 2**30:.1f} GiB", flush=True)
    data = str(siuo_copy(Path(tempfile.mkdtemp()), args.samples))
    solvers = {"none": none, "vlmguard": vlmguard}
    sampler = GpuSampler(on_gpu)

    def batch_counts() -> dict[str, int]:
        return {role: model.api.batcher.stats.batches for role, model in models.items()}

    sampler.report_every(30, batch_counts)

    def run(defense: str, limit: int) -> None:
        roles = {"grader": models["judge"]} | ({"rewriter": models["rewriter"]} if defense != "none" else {})
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        started = sampler.run_started = time.perf_counter()
        [log] = inspect_eval(
            siuo(format="gen", data_dir=data, epochs=1),
            solver=solvers[defense](),
            model=models["target"],
            model_roles=roles,
            limit=limit,
            max_samples=args.max_samples,
            max_tokens=args.max_tokens,
            log_dir=tempfile.mkdtemp(),
            display="none",
        )
        ended = time.perf_counter()
        util, used = sampler.window(started, ended)
        failed = [s.error.message + "\n" + s.error.traceback[-1500:] for s in log.samples or [] if s.error]
        allocated = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else float("nan")
        print(
            f"{defense:9s} {limit} samples in {ended - started:6.1f} s: {limit / (ended - started):5.2f} samples/s, "
            f"GPU utilization {util:4.0f}% (mean), peak memory {used:.1f} GiB in use "
            f"({allocated:.1f} GiB allocated by torch), status {log.status}, "
            f"{len(failed)} sample errors; batches so far {batch_counts()}",
            flush=True,
        )
        if failed:
            print(f"  first sample error: {failed[0]}", flush=True)

    print("warm-up (with --decode graphs it compiles the decode shapes):", flush=True)
    run("vlmguard", args.warmup)
    for defense in args.defenses:
        run(defense, args.samples)
    sampler.stop()
    print(f"checkpoints in memory: {len(local_vlm._LOADED)} (one per role)", flush=True)


if __name__ == "__main__":
    main()
