"""What an `hfvlm` output means: seeds, stop reasons, the checkpoint's generation settings, shared loads.

A seeded sampled request gets the same text alone or in any batch (and leaves torch's random state as it
found it); continue_assistant's seeded samples differ from one another and repeat run to run; a stop string
completed on the last allowed token is a stop; the checkpoint's generation_config.json settings that steered
an output are named in its metadata (or dropped with `generation_config=plain`); roles on one checkpoint share
its weights and each gets the batch settings it asked for, or an error for settings of the weights themselves;
settings the provider cannot honour are refused.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path

import pytest
import torch
from inspect_ai._util.error import PrerequisiteError
from inspect_ai.model import ChatMessageUser, ContentImage, ContentText, GenerateConfig, get_model

from tests.helpers import png_bytes
from vlmguard_eval.models.local_vlm import RequestError, sample_seed

IMAGE_URI = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
SEEDED = GenerateConfig(max_tokens=10, temperature=1.0, seed=7)
# a Qwen2-VL-style generation_config.json: top_k=1 makes any temperature greedy
QWEN_LIKE = {"do_sample": True, "temperature": 0.1, "top_k": 1, "top_p": 0.001, "repetition_penalty": 1.05}


def user(text: str, image: bool = True) -> ChatMessageUser:
    parts = [ContentImage(image=IMAGE_URI)] if image else []
    return ChatMessageUser(content=[*parts, ContentText(text=text)])


def own_folder(tiny_vlm: Path, tmp_path: Path, name: str = "tiny-llava") -> Path:
    """The tiny model under a folder name of this test's own: a load of its own, with its own settings."""
    link = tmp_path / name
    link.symlink_to(tiny_vlm, target_is_directory=True)
    return link


def run(model, requests: list[tuple[ChatMessageUser, GenerateConfig]]) -> list:
    async def go():
        return await asyncio.gather(*(model.generate([message], config=config) for message, config in requests))

    return asyncio.run(go())


def test_a_seeded_sample_is_the_same_alone_and_in_any_batch(tiny_vlm: Path) -> None:
    model = get_model(f"hfvlm/{tiny_vlm}", batch_size=8, batch_wait_ms=2000, memoize=False)
    [alone] = run(model, [(user("Say something"), SEEDED)])
    before = model.api.batcher.stats.batches
    batched = run(
        model,
        [
            (user("Another prompt first"), SEEDED),
            (user("Say something"), SEEDED),
            (user("Say something"), SEEDED),
            (user("Unseeded"), GenerateConfig(max_tokens=10, temperature=1.0)),
            (user("Say something"), SEEDED),
        ],
    )
    assert model.api.batcher.stats.batches == before + 1  # they came in one batch
    assert [batched[i].completion for i in (1, 2, 4)] == [alone.completion] * 3
    other_seed = run(model, [(user("Say something"), GenerateConfig(max_tokens=10, temperature=1.0, seed=8))])
    assert other_seed[0].completion != alone.completion


def test_seeded_and_greedy_requests_leave_torchs_random_state_alone(tiny_vlm: Path) -> None:
    model = get_model(f"hfvlm/{tiny_vlm}")
    state = torch.random.get_rng_state()
    run(model, [(user("Say something"), SEEDED), (user("Greedy"), GenerateConfig(max_tokens=4, seed=5))])
    assert torch.equal(torch.random.get_rng_state(), state)


def test_continue_assistant_draws_distinct_seeded_samples_that_repeat(tiny_vlm: Path, tmp_path: Path) -> None:
    # four samples in batches of two
    model = get_model(f"hfvlm/{own_folder(tiny_vlm, tmp_path)}", batch_size=2, batch_wait_ms=500, memoize=False)
    config = GenerateConfig(max_tokens=8, temperature=1.5, seed=3)

    def samples() -> list[str]:
        results = asyncio.run(model.api.continue_assistant([user("Hi", image=False)], " So", 4, config))
        return [result.text for result in results]

    first = samples()
    assert len(set(first)) == 4, first  # not [a, b, a, b], each batch of two seeded alike
    assert samples() == first
    assert len({sample_seed(3, i) for i in range(4)} | {sample_seed(4, 0)}) == 5


def test_a_stop_string_on_the_last_allowed_token_is_a_stop(tiny_vlm: Path) -> None:
    model = get_model(f"hfvlm/{tiny_vlm}")
    vlm = model.api.vlm
    message = user("Tell me", image=False)
    inputs = vlm.processor(text=[vlm.render([message])[0]], return_tensors="pt")
    with torch.inference_mode():
        out = vlm.model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=vlm.tokenizer.pad_token_id)
    ids = out[0, inputs["input_ids"].shape[1] :].tolist()
    # the first token whose text is clean and new: a stop string of that text completes exactly there
    for count in range(1, len(ids) + 1):
        before, text = (vlm.tokenizer.decode(ids[:n], skip_special_tokens=True) for n in (count - 1, count))
        last = text[len(before) :]
        if text.startswith(before) and last.strip() and "\ufffd" not in last and text.find(last) == len(before):
            break
    else:
        pytest.fail(f"no usable token in {ids}")
    [stopped] = run(model, [(message, GenerateConfig(max_tokens=count, temperature=0.0, stop_seqs=[last]))])
    assert stopped.usage.output_tokens == count and stopped.completion == before
    assert stopped.stop_reason == "stop"
    [capped] = run(model, [(message, GenerateConfig(max_tokens=count, temperature=0.0))])
    assert capped.stop_reason == "max_tokens" and capped.completion == text


def test_the_checkpoints_generation_settings_are_named_or_dropped(tiny_vlm: Path, tmp_path: Path) -> None:
    qwen_like = shutil.copytree(tiny_vlm, tmp_path / "qwen-like")
    settings = json.loads((qwen_like / "generation_config.json").read_text())
    (qwen_like / "generation_config.json").write_text(json.dumps({**settings, **QWEN_LIKE}))
    message = user("Say something")
    seeds = [GenerateConfig(max_tokens=10, temperature=1.0, seed=seed) for seed in range(4)]
    greedy = GenerateConfig(max_tokens=10, temperature=0.0)

    checkpoint = get_model(f"hfvlm/{qwen_like}", memoize=False)
    sampled = run(checkpoint, [(message, config) for config in seeds])
    assert len({o.completion for o in sampled}) == 1  # top_k=1: temperature 1.0 samples nothing
    named = {"top_k": 1, "top_p": 0.001, "repetition_penalty": 1.05}
    assert sampled[0].metadata == {"checkpoint_generation_config": named}
    [argmax] = run(checkpoint, [(message, greedy)])
    assert argmax.metadata == {"checkpoint_generation_config": {"repetition_penalty": 1.05}}
    [own_top_k] = run(checkpoint, [(message, GenerateConfig(max_tokens=4, temperature=1.0, top_k=5))])
    assert own_top_k.metadata == {"checkpoint_generation_config": {"top_p": 0.001, "repetition_penalty": 1.05}}

    plain = get_model(f"hfvlm/{own_folder(qwen_like, tmp_path, 'plain')}", generation_config="plain", memoize=False)
    sampled = run(plain, [(message, config) for config in seeds])
    assert len({o.completion for o in sampled}) > 1 and sampled[0].metadata is None
    [plain_argmax] = run(plain, [(message, greedy)])
    [reference] = run(get_model(f"hfvlm/{tiny_vlm}"), [(message, greedy)])  # same weights, no such settings
    assert plain_argmax.completion == reference.completion and plain_argmax.metadata is None
    assert plain.api.vlm.model.generation_config.eos_token_id == settings["eos_token_id"]

    with pytest.raises(ValueError, match="generation_config='greedy' is not one of checkpoint, plain"):
        get_model(f"hfvlm/{own_folder(tiny_vlm, tmp_path, 'odd')}", generation_config="greedy", memoize=False)


def test_roles_on_one_checkpoint_share_its_weights_each_with_its_batch_settings(tiny_vlm: Path, tmp_path: Path) -> None:
    path = own_folder(tiny_vlm, tmp_path)  # loaded first here, with batch_size=2
    small = get_model(f"hfvlm/{path}", batch_size=2, batch_wait_ms=500, memoize=False)
    big = get_model(f"hfvlm/{path}", batch_size=4, batch_wait_ms=500, memoize=False)
    alike = get_model(f"hfvlm/{path}", batch_size=2, batch_wait_ms=500, chat_template="llava_v1", memoize=False)
    assert small.api.vlm is big.api.vlm is alike.api.vlm  # one copy of the weights
    assert alike.api.batcher is small.api.batcher is not big.api.batcher
    assert (small.api.max_connections(), big.api.max_connections()) == (4, 8)  # two batches each
    greedy = GenerateConfig(max_tokens=6, temperature=0.0)
    prompts = [f"Question {i}?" for i in range(4)]

    async def both():
        return await asyncio.gather(
            *(small.generate([user(p)], config=greedy) for p in prompts),
            *(big.generate([user(p)], config=greedy) for p in prompts),
        )

    outputs = asyncio.run(both())
    assert small.api.batcher.stats.sizes == [2, 2] and big.api.batcher.stats.sizes == [4]
    alone = [run(small, [(user(p), greedy)])[0].completion for p in prompts]
    assert [o.completion for o in outputs] == alone * 2  # taking turns on one model changes no output

    with pytest.raises(PrerequisiteError) as refused:
        get_model(f"hfvlm/{path}", batch_size=8, cache_share=0.1, generation_config="plain", memoize=False)
    message = refused.value.message
    assert "already loaded in this process with cache_share=0.3, generation_config=checkpoint" in message
    assert "this role asks for cache_share=0.1, generation_config=plain" in message
    assert "the same -M cache_share, generation_config values (unset means cache_share=0.3" in message


def test_settings_it_cannot_honour_are_refused_and_outputs_are_timed(tiny_vlm: Path) -> None:
    model = get_model(f"hfvlm/{tiny_vlm}")
    for config, named in [
        (GenerateConfig(num_choices=3), "num_choices"),
        (GenerateConfig(logprobs=True, top_logprobs=3), "logprobs, top_logprobs"),
        (GenerateConfig(frequency_penalty=0.5, logit_bias={5: 1.0}), "frequency_penalty, logit_bias"),
    ]:
        with pytest.raises(RequestError, match=f"cannot honour {named}$"):
            run(model, [(user("Hi"), config)])
    [output] = run(model, [(user("Hi"), GenerateConfig(max_tokens=3, num_choices=1, frequency_penalty=0.0))])
    assert output.time is not None and output.time > 0
