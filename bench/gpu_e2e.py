"""A whole defended run on one GPU: `none` vs `vlmguard` on SIUO-format data with three local models.

    PYTHONUNBUFFERED=1 python bench/gpu_e2e.py [--samples 256] [--max-tokens 64] [--decode dynamic]
                            [--target llava-1.5-7b] [--rewriter llava-1.5-7b] [--judge llava-3b]
                            [--defenses none vlmguard] [--deadline-s 480]

Random-weight models of real shapes (models/tiny.py: TEXT_SHAPES; nothing is downloaded) are built on the GPU
once into .cache/bench-models/ and reused by later runs (common.build): the target (LLaVA-1.5-7B), the
rewriter (7B, the paper's rewriter size) and the SIUO judge (`grader`), each an `hfvlm/` model with its own
batcher (and its own connection pool of two batches), all on one GPU in one Inspect process. Every call is
capped at `--max-tokens` new tokens and SIUO runs one epoch, to fit a benchmark's time (random weights rarely
stop early, so each call runs to the cap). A warm-up run over `--warmup` samples goes first (with `--decode
graphs` it compiles the decode shapes); then each of `--defenses`, in the order given (`none` first by default,
so a run cut short still has the baseline). `--deadline-s` starts no arm once that many seconds have passed
since the script started, and the summary names the arms not run.

Reported per arm: samples/s, GPU utilization (NVML, sampled every 100 ms) averaged over the arm, and memory of
that arm alone: before each arm the script collects garbage, empties torch's cache and resets its peaks, then
reports torch's peak allocated and reserved memory and NVML's peak in use, each with its increase over the
arm's start. All three models stay loaded throughout, so `none` (which never calls the rewriter) still holds
the rewriter's weights: compare arms by their increases. Target: mean utilization >= 60%. Roles of one shape
share one checkpoint on disk, each loading it through its own folder name, so each role is a model of its own
in memory, as in a real run.

`--device cpu` with `tiny` models is a smoke run of the same path, for the tests (no figure):
    python bench/gpu_e2e.py --device cpu --target tiny --rewriter tiny --judge tiny --samples 4 --warmup 2

Every 30 s a line shows the last window's and the arm-so-far mean utilization, and each model's batches and
requests so far, so a run cut short still says how far it got; the last line counts the checkpoints in memory
(one per role). Memory on an H100 (80 GB): the three models' weights take 32.5 GiB. The 2026-11-23 runs (batch
16 with 96 samples in flight ran out of memory; batch 8 with 48 in flight peaked at 76.6 GiB) also held a second
copy of every model, loaded by Inspect's model-info lookup (fixed since: README Performance), and all three
models then shared one Inspect connection pool of at most 20 requests (fixed since: each has its own), so the
defaults below are conservative: try `--batch-size 16 --max-samples 96` once the defaults have a figure.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from common import MODELS_DIR, build, siuo_copy

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

    def used_now(self) -> float:
        """GiB in use on the GPU now (NVML: every process, torch's cache included)."""
        return self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**30

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
                    f"  [{now - started:5.0f} s] GPU {util:3.0f}% (arm so far {so_far:3.0f}%), {used:.1f} GiB in use; "
                    f"{extra()}",
                    flush=True,
                )

        threading.Thread(target=loop, daemon=True).start()


def arms_to_start(
    arms: list[str], deadline_s: float | None, began: float, clock: Callable[[], float] = time.monotonic
) -> Iterator[str]:
    """Each arm in turn while `deadline_s` seconds have not passed since `began` (a 10-minute device call cut
    mid-arm loses that arm and every later one); prints the arms it does not start."""
    for index, arm in enumerate(arms):
        if deadline_s is not None and clock() - began > deadline_s:
            print(f"deadline ({deadline_s:.0f} s) passed: not run: {', '.join(arms[index:])}", flush=True)
            return
        yield arm


def main() -> None:
    began = time.monotonic()  # --deadline-s counts from here, imports included
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
    parser.add_argument("--defenses", nargs="+", default=["none", "vlmguard"], help="arms, run in this order")
    parser.add_argument("--deadline-s", type=float, default=None, help="start no arm after this many seconds")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where built checkpoints are kept")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of the same path (no figure)")
    args = parser.parse_args()
    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        raise SystemExit("bench/gpu_e2e.py measures a GPU; none is visible here (--device cpu: a smoke run)")

    roles = ("target", "rewriter", "judge")
    built = {shape: Path(build(shape, args.models_dir)) for shape in {getattr(args, role) for role in roles}}
    scratch = tempfile.TemporaryDirectory(prefix="gpu-e2e-")  # links, data and logs; removed at exit
    root = Path(scratch.name)
    paths = {}  # each role its own folder name (one model each), over one built checkpoint per shape
    for role in roles:
        paths[role] = root / role
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
    weights = {
        role: sum(p.numel() * p.element_size() for p in model.api.vlm.model.parameters()) / 2**30
        for role, model in models.items()
    }
    print(
        "weights loaded: "
        + ", ".join(f"{role} {gib:.1f} GiB" for role, gib in weights.items())
        + f"; all three stay loaded in every arm (`none` never calls the rewriter but holds its "
        f"{weights['rewriter']:.1f} GiB): compare arms by what each adds over its start "
        f"[{time.monotonic() - began:.0f} s since start]",
        flush=True,
    )
    data = str(siuo_copy(root / "data", args.samples))
    solvers = {"none": none, "vlmguard": vlmguard}
    sampler = GpuSampler(on_gpu)

    def batch_counts() -> dict[str, int]:
        return {role: model.api.batcher.stats.batches for role, model in models.items()}

    def progress() -> str:
        requests = {role: sum(model.api.batcher.stats.sizes) for role, model in models.items()}
        return f"batches so far {batch_counts()}, requests so far {requests}"

    sampler.report_every(30, progress)
    results: dict[str, tuple[float, float]] = {}  # arm: samples/s, mean GPU utilization

    def run(defense: str, limit: int) -> None:
        roles = {"grader": models["judge"]} | ({"rewriter": models["rewriter"]} if defense != "none" else {})
        gc.collect()  # this arm's memory alone: drop what earlier arms left in torch's cache, reset the peaks
        if on_gpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            start_allocated, start_reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
            start_used = sampler.used_now()
        caches = sum(model.api.vlm.cache_creations for model in models.values())
        started = sampler.run_started = time.perf_counter()
        [log] = inspect_eval(
            siuo(format="gen", data_dir=data, epochs=1),
            solver=solvers[defense](),
            model=models["target"],
            model_roles=roles,
            limit=limit,
            max_samples=args.max_samples,
            max_tokens=args.max_tokens,
            log_dir=str(root / "logs"),
            display="none",
        )
        ended = time.perf_counter()
        util, used = sampler.window(started, ended)
        failed = [s.error.message + "\n" + s.error.traceback[-1500:] for s in log.samples or [] if s.error]
        memory = "memory n/a (cpu)"
        if on_gpu:
            allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
            memory = (
                f"torch peak {allocated / 2**30:.1f} GiB allocated (+{(allocated - start_allocated) / 2**30:.1f} "
                f"over the arm's start), {reserved / 2**30:.1f} GiB reserved "
                f"(+{(reserved - start_reserved) / 2**30:.1f}); NVML peak {used:.1f} GiB in use "
                f"(+{used - start_used:.1f})"
            )
        caches = sum(model.api.vlm.cache_creations for model in models.values()) - caches
        results[defense] = (limit / (ended - started), util)
        print(
            f"{defense:9s} {limit} samples in {ended - started:6.1f} s: {results[defense][0]:5.2f} samples/s, "
            f"GPU utilization {util:4.0f}% (mean); {memory}; {caches} static caches made; "
            f"status {log.status}, {len(failed)} sample errors; batches so far {batch_counts()}",
            flush=True,
        )
        if failed:
            print(f"  first sample error: {failed[0]}", flush=True)

    if args.warmup:
        print("warm-up (with --decode graphs it compiles the decode shapes):", flush=True)
        run("vlmguard", args.warmup)
        results.clear()
    for defense in arms_to_start(args.defenses, args.deadline_s, began):
        print(f"[{time.monotonic() - began:.0f} s since start] {defense}:", flush=True)
        run(defense, args.samples)
    sampler.stop()
    summary = ", ".join(
        f"{defense} {rate:.2f} samples/s (GPU {util:.0f}%)" for defense, (rate, util) in results.items()
    )
    if "none" in results and "vlmguard" in results:
        summary += f"; vlmguard at {results['vlmguard'][0] / results['none'][0]:.2f}x the rate of none"
    print(f"summary: {summary or 'no arm ran'} ({time.monotonic() - began:.0f} s in all)", flush=True)
    print(f"checkpoints in memory: {len(local_vlm._LOADED)} (one per role)", flush=True)
    scratch.cleanup()


if __name__ == "__main__":
    main()
