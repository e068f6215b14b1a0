"""Local provider decoding speed: tokens/s with 1, 8 and 32 concurrent requests, per decode mode.

    python bench/local_batching.py                                  # tiny VLM, CPU
    python bench/local_batching.py --shape llava-1.5-7b --decode dynamic graphs     # on a GPU
    python bench/local_batching.py --model PATH                     # any local checkpoint

Each request carries one image (336 px for a shaped model) and asks for `--new-tokens` tokens (greedy).
Our `hfvlm` provider gets `--requests` requests at 8 and 32 concurrent and `--single` one after another;
plain transformers `generate` runs the same prompts one by one and as one batch. With `--shape`, a
random-weight model of that real shape is built on the device first (models/tiny.py: TEXT_SHAPES).
Targets: batched at 32 beats sequential by >= 10x (tiny, CPU); on an H100 with llava-1.5-7b, `graphs`
reaches >= 2,000 tokens/s at 32 concurrent and >= 100 tokens/s single-stream. Each mode's first pass
(compiling its shapes) is timed apart, and its greedy outputs are compared with plain `generate`'s. The
32-concurrent time is split into the same requests' one-token calls (prefill and the per-call work) and the
rest (decoding). With `--shape` on a GPU whose datasheet bench/roofline.py holds, each rate and each of
those phases is also shown as a share of its roofline bound, for its rows and measured prompt length.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import tempfile
import time
from pathlib import Path

from common import REPO
from roofline import GPUS, bound_tokens_per_s, gpu_from_name

CONCURRENCY = (8, 32)


def image_uri(size: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (90, 140, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def corpus() -> list[str]:
    """Text to train a shaped model's tokenizer on, so prompts get realistic token counts."""
    files = [REPO / "README.md", REPO / "FIDELITY.md", *sorted((REPO / "vlmguard_eval").rglob("*.txt"))]
    return [line for f in files if f.is_file() for line in f.read_text().splitlines() if line.strip()]


def build(shape: str) -> str:
    """A random-weight model of `shape` (models/tiny.py: TEXT_SHAPES, or `tiny`: the test VLM), on the GPU if any."""
    import torch

    from vlmguard_eval.models.tiny import build_shaped_vlm, build_tiny_vlm

    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if shape == "tiny":
        path = build_tiny_vlm(Path(tempfile.mkdtemp()) / shape)
    else:
        path = build_shaped_vlm(Path(tempfile.mkdtemp()) / shape, shape, corpus(), device=device)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    print(f"built random-weight {shape} in {time.perf_counter() - started:.1f} s", flush=True)
    return str(path)


def main() -> None:
    import torch
    from inspect_ai.model import ChatMessageUser, ContentImage, ContentText, GenerateConfig, get_model

    from vlmguard_eval.models.local_vlm import load_vlm

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="a local checkpoint (default: the tiny VLM)")
    parser.add_argument("--shape", default=None, help="build a random-weight model of this shape first")
    parser.add_argument("--decode", nargs="+", default=["dynamic", "static"], help="hfvlm decode modes to measure")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--single", type=int, default=8, help="requests sent one after another")
    args = parser.parse_args()
    if args.shape:
        path = build(args.shape)
    elif args.model:
        path = args.model
    else:
        from vlmguard_eval.models.tiny import build_tiny_vlm

        path = str(build_tiny_vlm(Path(tempfile.mkdtemp()) / "tiny"))
    uri = image_uri(336 if args.shape else 64)
    prompts = [f"Question {i}: what is shown in this picture, and why?" for i in range(args.requests)]
    config = GenerateConfig(max_tokens=args.new_tokens, temperature=0.0)

    def messages(text: str) -> list:
        return [ChatMessageUser(content=[ContentImage(image=uri), ContentText(text=text)])]

    # plain transformers generate (dynamic cache), the reference for speed and for greedy outputs
    started = time.perf_counter()
    vlm = load_vlm(path, decode="dynamic")
    print(f"loaded in {time.perf_counter() - started:.1f} s", flush=True)
    rendered = [vlm.render(messages(p)) for p in prompts]

    def plain(batch: list) -> tuple[int, list[list[int]]]:
        inputs = vlm.processor(
            text=[r[0] for r in batch], images=[r[1][0] for r in batch], return_tensors="pt", padding=True
        ).to(vlm.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(vlm.torch_dtype)
        with torch.inference_mode():
            out = vlm.model.generate(
                **inputs, max_new_tokens=args.new_tokens, do_sample=False, pad_token_id=vlm.tokenizer.pad_token_id
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        return new.numel(), new.tolist()

    plain(rendered[:1])  # warm-up
    started = time.perf_counter()
    sequential_tokens = sum(plain([r])[0] for r in rendered[: args.single])
    sequential = sequential_tokens / (time.perf_counter() - started)
    started = time.perf_counter()
    batched_tokens, _ = plain(rendered)
    batched = batched_tokens / (time.perf_counter() - started)
    print(f"plain generate, one by one: {sequential:9.1f} tokens/s")
    print(f"plain generate, batch of {args.requests}: {batched:9.1f} tokens/s", flush=True)
    reference = [vlm.tokenizer.decode(plain([r])[1][0], skip_special_tokens=True) for r in rendered[:8]]

    gpu = gpu_from_name(torch.cuda.get_device_name()) if torch.cuda.is_available() else None
    for mode in args.decode:
        model = get_model(f"hfvlm/{path}", decode=mode, batch_size=args.requests, batch_wait_ms=20)
        prompt_tokens = 0

        async def ours(concurrency: int, count: int, new_tokens: int = args.new_tokens) -> tuple[float, int, list[str]]:
            nonlocal prompt_tokens
            call = config.merge(GenerateConfig(max_tokens=new_tokens))
            start, tokens, texts = time.perf_counter(), 0, []
            for first in range(0, count, concurrency):
                outputs = await asyncio.gather(
                    *(
                        model.generate(messages(p), config=call)
                        for p in prompts[first : min(first + concurrency, count)]
                    )
                )
                tokens += sum(o.usage.output_tokens for o in outputs)
                prompt_tokens = max(prompt_tokens, *(o.usage.input_tokens for o in outputs))
                texts += [o.completion for o in outputs]
            return time.perf_counter() - start, tokens, texts

        started = time.perf_counter()
        for concurrency in (1, *CONCURRENCY):  # first pass: compiles this mode's shapes
            asyncio.run(ours(concurrency, concurrency))
        print(f"hfvlm decode={mode}: first pass (1, 8, 32 rows) {time.perf_counter() - started:.1f} s", flush=True)
        seconds, tokens, texts = asyncio.run(ours(1, args.single))
        rates = {1: tokens / seconds}
        for concurrency in CONCURRENCY:
            seconds, tokens, _ = asyncio.run(ours(concurrency, args.requests))
            rates[concurrency] = tokens / seconds
        # the last (32-concurrent) run's prefill alone, the same requests with one new token: warm, then timed
        asyncio.run(ours(32, args.requests, new_tokens=1))
        prefill = asyncio.run(ours(32, args.requests, new_tokens=1))[0]
        decoding = seconds - prefill
        same = sum(a == b for a, b in zip(texts, reference, strict=False))
        print(
            f"hfvlm decode={mode}: "
            + ", ".join(f"{c} concurrent {r:8.1f} tokens/s" for c, r in rates.items())
            + f"; {rates[32] / rates[1]:.1f}x batched vs single, {rates[32] / batched:.2f}x plain batch"
            + f"; greedy outputs equal to plain generate: {same}/{min(len(texts), len(reference))}",
            flush=True,
        )
        print(
            f"hfvlm decode={mode}: 32 concurrent, {prefill:.3f} s for one token (prefill and per-call work) "
            f"+ {decoding:.3f} s for the other {args.new_tokens - 1} (decoding)",
            flush=True,
        )
        if args.shape and gpu:
            bounds = {
                c: bound_tokens_per_s(args.shape, min(c, args.requests), prompt_tokens, args.new_tokens, GPUS[gpu])
                for c in rates
            }
            batches = -(-args.requests // 32)  # the 32-concurrent run's batches, each bounded as bounds[32]
            bound_prefill, bound_decoding = batches * bounds[32][1], batches * bounds[32][2]
            print(
                f"hfvlm decode={mode}: share of the {gpu} roofline bound ({prompt_tokens} prompt tokens): "
                + ", ".join(f"{c} concurrent {r / bounds[c][0]:.0%}" for c, r in rates.items())
                + f"; 32 concurrent: prefill {bound_prefill / prefill:.0%}, decoding {bound_decoding / decoding:.0%}",
                flush=True,
            )
    if torch.cuda.is_available():
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
