"""Local provider decoding speed: tokens/s with 1, 8 and 32 concurrent requests, per decode mode.

    python bench/local_batching.py                                  # tiny VLM, CPU
    python bench/local_batching.py --shape llava-1.5-7b --decode graphs dynamic     # on a GPU
    python bench/local_batching.py --model PATH                     # any local checkpoint

Each request carries one image (336 px for a shaped model) and asks for `--new-tokens` tokens (greedy); the
prompts differ in length, so batches are left-padded. Our `hfvlm` provider gets `--requests` requests at 8 and 32
concurrent and `--single` one after another; plain transformers `generate` runs every prompt one by one (the
reference) and all of them as one batch. With `--shape`, a random-weight model of that real shape is built on
the device once into .cache/bench-models/ and reused by later runs (common.build).

Method. Every timed pass first runs once untimed (a mode's first pass, compiling its shapes, is timed apart),
then `--repeats` times, interleaved; a rate is the median, with [min-max]. Tokens are counted up to each row's
end (EOS or pad), for plain `generate` as for hfvlm. A static cache made inside a timed pass (a shape dropped
for the cache budget and made again, with its CUDA graphs) would be timed with it: the script counts them and
flags any, and `--cache-share` defaults high enough to keep all its shapes. Greedy outputs are compared as token
ids, not text (a shaped model's tokenizer spells few of its 32,064 ids), with plain `generate` one by one:
single-stream and the 32-concurrent batch (sent through the batcher), and the batch also with plain `generate`'s
own batch. A differing row is shown with the token where it diverges and plain `generate`'s logit margin there
(random bf16 weights give near ties, so kernel order flips some; the exact check is the fp32 CPU test).

Targets: batched at 32 beats sequential by >= 10x (tiny, CPU); on an H100 with llava-1.5-7b, `graphs`
reaches >= 2,000 tokens/s at 32 concurrent and >= 100 tokens/s single-stream. The 32-concurrent time is split
into the same requests' one-token calls (prefill and the per-call work) and the rest (decoding). With `--shape`
on a GPU whose datasheet bench/roofline.py holds, each rate and each of those phases is also shown as a share
of its roofline bound, for its rows and measured prompt length.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import io
import statistics
import time
from pathlib import Path
from typing import Any

from common import MODELS_DIR, build
from roofline import GPUS, bound_tokens_per_s, gpu_from_name

CONCURRENCY = (8, 32)


def image_uri(size: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (90, 140, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def until_stop(ids: list[int], stops: set[int]) -> list[int]:
    """A row's new tokens before its first stop token: what hfvlm returns and counts."""
    return next((ids[:i] for i, t in enumerate(ids) if t in stops), ids)


def spread(values: list[float], digits: int = 1) -> str:
    """Median [min-max]."""
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def main() -> None:
    began = time.monotonic()  # --deadline-s counts from here, imports included
    import torch
    from inspect_ai.model import ChatMessageUser, ContentImage, ContentText, GenerateConfig, get_model

    from vlmguard_eval.models.local_vlm import Request, gen_key, load_vlm

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="a local checkpoint (default: the tiny VLM)")
    parser.add_argument("--shape", default=None, help="a random-weight model of this shape (built once, reused)")
    parser.add_argument("--decode", nargs="+", default=["dynamic", "static"], help="hfvlm decode modes to measure")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--single", type=int, default=8, help="requests sent one after another")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each kind, after an untimed one")
    parser.add_argument(
        "--cache-share",
        type=float,
        default=0.8,
        help="hfvlm cache_share: high, so the 1-, 8- and 32-row caches all stay kept (a 7B's take 16 GiB)",
    )
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where built checkpoints are kept")
    parser.add_argument("--deadline-s", type=float, default=None, help="start no decode mode after this many s")
    args = parser.parse_args()
    path = args.model or build(args.shape or "tiny", args.models_dir)
    uri = image_uri(336 if args.shape else 64)
    prompts = [
        f"Question {i}: what is shown in this picture, and why?" + " Say more." * (i % 4) for i in range(args.requests)
    ]
    config = GenerateConfig(max_tokens=args.new_tokens, temperature=0.0)
    on_gpu = torch.cuda.is_available()

    def messages(text: str) -> list:
        return [ChatMessageUser(content=[ContentImage(image=uri), ContentText(text=text)])]

    # plain transformers generate (dynamic cache), the reference for speed and for greedy outputs; its load is
    # the one `dynamic` below shares, so it asks for the same settings of the weights
    started = time.perf_counter()
    vlm = load_vlm(path, decode="dynamic", batch_size=args.requests, cache_share=args.cache_share)
    print(f"loaded in {time.perf_counter() - started:.1f} s", flush=True)
    rendered = [vlm.render(messages(p)) for p in prompts]
    stops = vlm.stop_ids

    def inputs_for(batch: list) -> Any:
        # hfvlm's own tokenization (its BOS rule included): the outputs are compared token id for token id
        inputs = vlm.model_inputs([r[0] for r in batch], [r[1] for r in batch]).to(vlm.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(vlm.torch_dtype)
        return inputs

    def plain(batch: list) -> tuple[float, list[list[int]]]:
        """Seconds (with the processor) and each row's ids up to its stop."""
        start = time.perf_counter()
        inputs = inputs_for(batch)
        with torch.inference_mode():
            out = vlm.model.generate(
                **inputs, max_new_tokens=args.new_tokens, do_sample=False, pad_token_id=vlm.tokenizer.pad_token_id
            )
        new = out[:, inputs["input_ids"].shape[1] :].tolist()
        return time.perf_counter() - start, [until_stop(row, stops) for row in new]

    def margin(row: int, ours: list[int]) -> str:
        """Where a row of ours leaves plain generate's, and plain's logit margin there (its token's logit minus
        ours, in one forward pass over the prompt and plain's tokens so far): far below the logits' spread is a
        near tie, which a change in kernel order can flip."""
        reference = references[row]
        at = first_difference(reference, ours)
        inputs = inputs_for([rendered[row]])
        prefix = torch.tensor([reference[:at]], dtype=inputs["input_ids"].dtype, device=vlm.device)
        inputs["input_ids"] = torch.cat([inputs["input_ids"], prefix], dim=1)
        inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(prefix)], dim=1)
        with torch.inference_mode():
            logits = vlm.model(**inputs).logits[0, -1].float()

        def token(ids: list[int]) -> int:  # a row that ended there generated a stop token
            return ids[at] if at < len(ids) else max(stops, key=lambda t: float(logits[t]))

        gap = float(logits[token(reference)] - logits[token(ours)])
        return f"row {row} at token {at}: {gap:.2g} (logits' std {float(logits.std()):.2g})"

    plain(rendered[:1])  # warm-up
    one_by_one = [plain([r]) for r in rendered]
    references = [ids[0] for _, ids in one_by_one]
    per_request = [len(ids[0]) / seconds for seconds, ids in one_by_one]
    sequential = sum(len(r) for r in references) / sum(seconds for seconds, _ in one_by_one)
    print(
        f"plain generate, one by one: {sequential:9.1f} tokens/s over {len(rendered)} requests "
        f"(per request {min(per_request):.1f}-{max(per_request):.1f})",
        flush=True,
    )
    plain(rendered)  # warm-up: the first call of this many rows allocates
    batch_runs = [plain(rendered) for _ in range(args.repeats)]
    batch_rates = [sum(map(len, ids)) / seconds for seconds, ids in batch_runs]
    plain_batch_ids = batch_runs[-1][1]
    batched = statistics.median(batch_rates)
    print(f"plain generate, batch of {args.requests}: {spread(batch_rates)} tokens/s", flush=True)

    gpu = gpu_from_name(torch.cuda.get_device_name()) if on_gpu else None
    levels = [1, *sorted({min(c, args.requests) for c in CONCURRENCY})]
    top = levels[-1]
    for index, mode in enumerate(args.decode):
        if args.deadline_s is not None and time.monotonic() - began > args.deadline_s:
            print(f"deadline ({args.deadline_s:.0f} s) passed: not run: {', '.join(args.decode[index:])}", flush=True)
            break
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()  # the budget is a share of the memory free at the first cache
        model = get_model(
            f"hfvlm/{path}",
            decode=mode,
            batch_size=args.requests,
            batch_wait_ms=20,
            cache_share=args.cache_share,
            memoize=False,
        )
        loaded = model.api.vlm
        prompt_tokens = 0

        async def ours(concurrency: int, count: int, new_tokens: int) -> tuple[float, int]:
            nonlocal prompt_tokens
            call = config.merge(GenerateConfig(max_tokens=new_tokens))
            start, tokens = time.perf_counter(), 0
            for first in range(0, count, concurrency):
                outputs = await asyncio.gather(
                    *(
                        model.generate(messages(p), config=call)
                        for p in prompts[first : min(first + concurrency, count)]
                    )
                )
                tokens += sum(o.usage.output_tokens for o in outputs)
                prompt_tokens = max(prompt_tokens, *(o.usage.input_tokens for o in outputs))
            return time.perf_counter() - start, tokens

        # every timed pass's shapes: one row, 8 and 32 rows, and the 32 rows' one-token prefill
        passes = {c: (c, args.single if c == 1 else args.requests, args.new_tokens) for c in levels}
        passes["prefill"] = (top, args.requests, 1)
        started, made = time.perf_counter(), loaded.cache_creations
        for spec in passes.values():
            asyncio.run(ours(*spec))
        print(
            f"hfvlm decode={mode}: first pass ({', '.join(map(str, levels))} rows, {top}-row prefill) "
            f"{time.perf_counter() - started:.1f} s, {loaded.cache_creations - made} static caches made "
            f"[{time.monotonic() - began:.0f} s since start]",
            flush=True,
        )
        timed: dict[int | str, list[tuple[float, int]]] = {name: [] for name in passes}
        made_in: list[str] = []
        for repeat in range(1, args.repeats + 1):
            for name, spec in passes.items():
                made = loaded.cache_creations
                timed[name].append(asyncio.run(ours(*spec)))
                if loaded.cache_creations > made:
                    made_in.append(f"{name} #{repeat}: {loaded.cache_creations - made}")
        rates = {c: [tokens / seconds for seconds, tokens in timed[c]] for c in levels}
        median = {c: statistics.median(r) for c, r in rates.items()}
        seconds = statistics.median(s for s, _ in timed[top])
        prefill = statistics.median(s for s, _ in timed["prefill"])
        decoding = max(seconds - prefill, 1e-9)  # timing noise could make it zero or less
        print(
            f"hfvlm decode={mode}: "
            + ", ".join(f"{c} concurrent {spread(r)} tokens/s" for c, r in rates.items())
            + f"; medians of {args.repeats}; {median[top] / median[1]:.1f}x batched vs single, "
            f"{median[top] / batched:.2f}x plain batch",
            flush=True,
        )
        print(
            f"hfvlm decode={mode}: {top} concurrent, {prefill:.3f} s for one token (prefill and per-call work) "
            f"+ {decoding:.3f} s for the other {args.new_tokens - 1} (decoding)",
            flush=True,
        )

        # greedy outputs, as token ids, through the batcher (untimed): one by one, then all at once
        key = gen_key(config)
        requests = [Request(*loaded.render(messages(p)), key) for p in prompts]

        async def through_batcher(concurrent: bool) -> list[list[int]]:
            batcher = model.api.batcher
            if concurrent:
                results = await asyncio.gather(*(batcher.submit(r) for r in requests))
            else:
                results = [await batcher.submit(r) for r in requests[: args.single]]
            return [result.token_ids for result in results]

        made = loaded.cache_creations
        single_ids = asyncio.run(through_batcher(False))
        batch_ids = asyncio.run(through_batcher(True))
        if loaded.cache_creations > made:
            made_in.append(f"equality check: {loaded.cache_creations - made}")
        one_batch = model.api.batcher.stats.sizes[-1] == len(requests)
        same_single = sum(a == b for a, b in zip(single_ids, references, strict=False))
        same_batch = sum(a == b for a, b in zip(batch_ids, references, strict=True))
        same_plain_batch = sum(a == b for a, b in zip(batch_ids, plain_batch_ids, strict=True))
        print(
            f"hfvlm decode={mode}: greedy token ids equal to plain generate one by one: single-stream "
            f"{same_single}/{len(single_ids)}, {top} concurrent {same_batch}/{len(batch_ids)} "
            f"({'one batch' if one_batch else 'NOT one batch'}); {top} concurrent equal to plain generate's batch: "
            f"{same_plain_batch}/{len(batch_ids)}",
            flush=True,
        )
        differing = [row for row, ids in enumerate(batch_ids) if ids != references[row]]
        if differing:
            shown = [margin(row, batch_ids[row]) for row in differing[:8]]
            print(
                f"hfvlm decode={mode}: {top} concurrent rows differing from plain one by one (first differing token, "
                f"plain's logit margin there over ours): {'; '.join(shown)}{'; ...' if len(differing) > 8 else ''}",
                flush=True,
            )
        kept = ", ".join(f"{rows}x{length}" for rows, (length, _) in sorted(loaded._static_caches.items()))
        if made_in:
            print(
                f"hfvlm decode={mode}: WARNING static caches made in timed passes: {'; '.join(made_in)} "
                f"(their allocation and CUDA-graph recording are in those times; raise --cache-share); "
                f"kept now: {kept or 'none'}",
                flush=True,
            )
        else:
            print(f"hfvlm decode={mode}: static caches made in timed passes: 0 (kept: {kept or 'none'})", flush=True)
        if args.shape and gpu:
            bounds = {c: bound_tokens_per_s(args.shape, c, prompt_tokens, args.new_tokens, GPUS[gpu]) for c in median}
            batches = -(-args.requests // top)  # the top pass's batches, each bounded as bounds[top]
            bound_prefill, bound_decoding = batches * bounds[top][1], batches * bounds[top][2]
            print(
                f"hfvlm decode={mode}: share of the {gpu} roofline bound ({prompt_tokens} prompt tokens): "
                + ", ".join(f"{c} concurrent {r / bounds[c][0]:.0%}" for c, r in median.items())
                + f"; {top} concurrent: prefill {bound_prefill / prefill:.0%}, "
                + f"decoding {bound_decoding / decoding:.0%}",
                flush=True,
            )
    if on_gpu:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
