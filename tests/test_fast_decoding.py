"""`hfvlm` static-cache decoding (`-M decode=static|graphs`): the same greedy outputs as plain `generate`,
batches padded to cached shapes, caches reused within their budget, and one thread per device for graphs."""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path

import pytest
import torch
from inspect_ai.model import ChatMessageUser, ContentImage, ContentText, GenerateConfig, get_model

from tests.helpers import png_bytes
from vlmguard_eval.models.local_vlm import CACHE_LENGTH_STEP, Request, gen_key, load_vlm, padded_rows
from vlmguard_eval.models.tiny import build_shaped_vlm

IMAGE_URI = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
PROMPTS = [
    ("What is here?", True),
    ("A much longer question about what the picture shows, in as much detail as you can", True),
    ("No picture with this one", False),
]


def messages(text: str, image: bool) -> list[ChatMessageUser]:
    parts = [ContentImage(image=IMAGE_URI)] if image else []
    return [ChatMessageUser(content=[*parts, ContentText(text=text)])]


def plain_ids(path: Path, max_new_tokens: int) -> list[list[int]]:
    """Each prompt alone through transformers' own `generate` (dynamic cache), its new ids up to EOS: the
    reference."""
    vlm = load_vlm(str(path))
    rows = []
    for text, image in PROMPTS:
        prompt, images = vlm.render(messages(text, image))
        inputs = vlm.processor(text=[prompt], images=images or None, return_tensors="pt")
        with torch.inference_mode():
            out = vlm.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=vlm.tokenizer.pad_token_id
            )
        new = out[0, inputs["input_ids"].shape[1] :].tolist()
        if vlm.tokenizer.eos_token_id in new:
            new = new[: new.index(vlm.tokenizer.eos_token_id)]
        rows.append(new)
    return rows


def plain_generate(path: Path, max_new_tokens: int) -> list[str]:
    """The reference's texts."""
    tokenizer = load_vlm(str(path)).tokenizer
    return [tokenizer.decode(ids, skip_special_tokens=True) for ids in plain_ids(path, max_new_tokens)]


def test_static_cache_gives_plain_generate_greedy_outputs_and_reuses_its_cache(tiny_vlm: Path) -> None:
    model = get_model(f"hfvlm/{tiny_vlm}", decode="static", batch_size=8, batch_wait_ms=2000)
    vlm = model.api.vlm
    config = GenerateConfig(max_tokens=20, temperature=0.0)

    async def batched():
        return await asyncio.gather(*(model.generate(messages(t, i), config=config) for t, i in PROMPTS))

    first = asyncio.run(batched())
    assert model.api.batcher.stats.sizes[-1] == 3  # one batch of three requests, run in a 4-row cache
    assert list(vlm._static_caches) == [4]
    length, cache = vlm._static_caches[4]
    assert length % CACHE_LENGTH_STEP == 0
    assert [o.completion for o in first] == plain_generate(tiny_vlm, 20)
    assert all(o.usage.output_tokens > 0 for o in first)

    again = asyncio.run(batched())
    assert vlm._static_caches[4][1] is cache  # reused (emptied), not rebuilt
    assert [o.completion for o in again] == [o.completion for o in first]


def test_one_request_runs_in_a_one_row_cache_with_the_same_output(tiny_vlm: Path) -> None:
    model = get_model(f"hfvlm/{tiny_vlm}", decode="static", batch_size=8, batch_wait_ms=0)
    text, image = PROMPTS[1]

    async def one():
        return await model.generate(messages(text, image), config=GenerateConfig(max_tokens=20, temperature=0.0))

    assert asyncio.run(one()).completion == plain_generate(tiny_vlm, 20)[1]
    assert 1 in model.api.vlm._static_caches


def test_cache_budget_drops_the_least_recently_used_shape(tiny_vlm: Path) -> None:
    vlm = load_vlm(str(tiny_vlm), decode="static")
    vlm._static_caches.clear()
    vlm.cache_budget = vlm._cache_bytes(4, CACHE_LENGTH_STEP) + vlm._cache_bytes(2, CACHE_LENGTH_STEP)
    try:
        with torch.inference_mode():
            for rows in (1, 2, 4):
                vlm._static_cache(rows, 10)
            assert list(vlm._static_caches) == [2, 4]  # 1 went first: all three would exceed the budget
            vlm._static_cache(2, 10)  # used again: now the most recent
            vlm._static_cache(1, 10)
            assert list(vlm._static_caches) == [2, 1]
            vlm._static_cache(2, CACHE_LENGTH_STEP + 1)  # longer: a new cache, a multiple of the step
            assert vlm._static_caches[2][0] == 2 * CACHE_LENGTH_STEP
    finally:
        vlm._static_caches.clear()
        vlm.cache_budget = None


def test_static_caches_made_are_counted_and_reuses_are_not(tiny_vlm: Path) -> None:
    """A benchmark reads the count around each timed pass: a cache made inside one is in its time."""
    vlm = load_vlm(str(tiny_vlm), decode="static")
    vlm._static_caches.clear()
    vlm.cache_budget = vlm._cache_bytes(2, CACHE_LENGTH_STEP)  # one 2-row cache, or two 1-row ones
    made = vlm.cache_creations
    try:
        with torch.inference_mode():
            for rows in (1, 1, 2, 2):
                vlm._static_cache(rows, 10)
            assert vlm.cache_creations - made == 2  # the 1-row cache, reused once; the 2-row, reused once
            vlm._static_cache(1, 10)  # dropped for the 2-row cache: made again
            assert vlm.cache_creations - made == 3
    finally:
        vlm._static_caches.clear()
        vlm.cache_budget = None


@pytest.mark.parametrize("decode", ["dynamic", "static"])
def test_batched_results_carry_plain_generates_token_ids(tiny_vlm: Path, decode: str) -> None:
    """Greedy equality is checked on ids: a text hides ids its tokenizer cannot spell (bench/local_batching.py)."""
    vlm = load_vlm(str(tiny_vlm), decode=decode)
    key = gen_key(GenerateConfig(max_tokens=12, temperature=0.0))
    requests = [Request(*vlm.render(messages(text, image)), key) for text, image in PROMPTS]

    async def batched():
        return await asyncio.gather(*(vlm.batcher.submit(request) for request in requests))

    results = asyncio.run(batched())
    assert [r.token_ids for r in results] == plain_ids(tiny_vlm, 12)
    assert [r.output_tokens for r in results] == [len(r.token_ids) for r in results]


def test_padded_rows_are_powers_of_two() -> None:
    assert [padded_rows(n) for n in (1, 2, 3, 5, 8, 9, 32)] == [1, 2, 4, 8, 8, 16, 32]


def test_decode_modes_are_checked(tiny_vlm: Path) -> None:
    with pytest.raises(ValueError, match="decode='turbo' is not one of dynamic, static, graphs"):
        get_model(f"hfvlm/{tiny_vlm}", decode="turbo")
    with pytest.raises(ValueError, match="decode=graphs records CUDA graphs; this model runs on cpu"):
        get_model(f"hfvlm/{tiny_vlm}", decode="graphs", device="cpu")


def test_shaped_models_name_a_known_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape 'llava-70b' is not one of llava-1.5-7b, llava-1.5-13b, llava-3b"):
        build_shaped_vlm(tmp_path / "m", "llava-70b", ["some text"])


def test_graphs_models_load_and_share_their_device_thread(
    tiny_vlm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`graphs` needs CUDA to compile; on CPU (the check lifted) the same path runs without compiling, which
    is enough to see a `graphs` checkpoint load (it asks for its device's thread while loading) and two of
    them run `generate` on that one thread, each preparing its inputs on its own batcher thread."""
    from vlmguard_eval.models import local_vlm

    monkeypatch.setattr(local_vlm, "_check_decode", lambda decode, device: decode)
    loaded: list[local_vlm.LoadedVLM] = []

    def load_two() -> None:
        (tmp_path / "link").symlink_to(tiny_vlm, target_is_directory=True)
        for path in (tiny_vlm, tmp_path / "link"):  # two folder names: two loaded models
            loaded.append(load_vlm(str(path), decode="graphs"))

    loader = threading.Thread(target=load_two, daemon=True)
    loader.start()
    loader.join(timeout=120)
    assert not loader.is_alive(), "loading a graphs model hung"
    first, second = loaded
    assert first is not second and first._device_runner is second._device_runner
    assert first.batcher._thread is not second.batcher._thread
    threads: dict[str, list[threading.Thread]] = {"processor": [], "generate": []}
    for model in loaded:
        for name, obj in (("processor", model.processor.image_processor), ("generate", model.model)):
            attr = "preprocess" if name == "processor" else "generate"
            original = getattr(obj, attr)

            def spy(*args, _original=original, _name=name, **kwargs):
                threads[_name].append(threading.current_thread())
                return _original(*args, **kwargs)

            monkeypatch.setattr(obj, attr, spy)
    text, image = PROMPTS[0]
    prompt, images = first.render(messages(text, image))
    config = local_vlm.GenKey(20, False, None, None, None, None, ())

    async def both():
        return await asyncio.gather(*(m.batcher.submit(local_vlm.Request(prompt, images, config)) for m in loaded))

    outputs = asyncio.run(both())
    device_thread, other = threads["generate"]
    assert device_thread is other and device_thread.name.startswith("cpu")
    first_batcher, second_batcher = threads["processor"]
    assert first_batcher is not second_batcher and device_thread not in (first_batcher, second_batcher)
    assert [o.text for o in outputs] == [plain_generate(tiny_vlm, 20)[0]] * 2
