"""The `hfvlm` provider: real transformers generation on the tiny LLaVA, batching, safe loading."""

from __future__ import annotations

import asyncio
import base64
import shutil
from pathlib import Path

import pytest
from inspect_ai.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
    ContentImage,
    ContentText,
    GenerateConfig,
    get_model,
)

from tests.helpers import png_bytes
from vlmguard_eval.models.local_vlm import load_vlm

IMAGE_URI = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()


def user(text: str, image: bool = True) -> ChatMessageUser:
    parts = [ContentImage(image=IMAGE_URI)] if image else []
    return ChatMessageUser(content=[*parts, ContentText(text=text)])


def test_generates_text_with_usage_and_respects_max_tokens(tiny_vlm: Path) -> None:
    model = get_model(f"hfvlm/{tiny_vlm}")

    async def go():
        return await model.generate([user("What is in this image?")], config=GenerateConfig(max_tokens=5))

    output = asyncio.run(go())
    assert isinstance(output.completion, str)
    assert output.usage.input_tokens > 0
    assert 0 < output.usage.output_tokens <= 5
    assert output.stop_reason in ("max_tokens", "stop")


def test_renders_with_the_processor_chat_template(tiny_vlm: Path) -> None:
    vlm = load_vlm(str(tiny_vlm))
    prompt, images = vlm.render([ChatMessageSystem(content="Be safe."), user("Hi"), user("Text only", image=False)])
    assert prompt == "SYSTEM: Be safe.\nUSER: <image>\nHi\nUSER: Text only\nASSISTANT:"
    assert len(images) == 1 and images[0].mode == "RGB"


def test_concurrent_requests_share_one_generate_call(tiny_vlm: Path) -> None:
    model = get_model(f"hfvlm/{tiny_vlm}", batch_size=8, batch_wait_ms=2000)
    batcher = model.api.batcher  # this role's (batch_size=8): the weights may be loaded with other settings
    before = batcher.stats.batches
    prompts = [f"Question number {i}?" for i in range(8)]
    config = GenerateConfig(max_tokens=6, temperature=0.0)

    async def batched():
        return await asyncio.gather(*(model.generate([user(p)], config=config) for p in prompts))

    outputs = asyncio.run(batched())
    assert batcher.stats.batches == before + 1 and batcher.stats.sizes[-1] == 8

    async def one_by_one():
        return [await model.generate([user(p)], config=config) for p in prompts]

    singles = asyncio.run(one_by_one())
    # greedy decoding: batching (with left padding) must not change what each sample gets
    assert [o.completion for o in outputs] == [o.completion for o in singles]


def test_mixed_text_only_and_image_requests_in_one_batch(tiny_vlm: Path) -> None:
    model = get_model(f"hfvlm/{tiny_vlm}", batch_size=4, batch_wait_ms=2000)
    config = GenerateConfig(max_tokens=4)

    async def go():
        return await asyncio.gather(
            model.generate([user("with image")], config=config),
            model.generate([user("no image", image=False)], config=config),
            model.generate([user("two", image=True), user("turns")], config=config),
            model.generate([user("sampled")], config=GenerateConfig(max_tokens=4, temperature=0.9, seed=1)),
        )

    outputs = asyncio.run(go())
    assert all(o.usage.output_tokens <= 4 for o in outputs)


def test_sampling_with_a_seed_is_reproducible(tiny_vlm: Path) -> None:
    model = get_model(f"hfvlm/{tiny_vlm}")
    config = GenerateConfig(max_tokens=8, temperature=1.0, seed=123)

    async def go():
        return await model.generate([user("Say something")], config=config)

    assert asyncio.run(go()).completion == asyncio.run(go()).completion


def test_refuses_pickle_checkpoints(tiny_vlm: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_vlm, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(load_file(tiny_vlm / "model.safetensors"), pickled / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors"):
        load_vlm(str(pickled))


def test_unknown_model_args_are_refused(tiny_vlm: Path) -> None:
    with pytest.raises(ValueError, match="does not take model args"):
        get_model(f"hfvlm/{tiny_vlm}", temprature=0.5)


def test_trust_remote_code_is_off_unless_asked(tiny_vlm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    seen: list[bool] = []
    original = transformers.AutoProcessor.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", spy)
    (tmp_path / "link").symlink_to(tiny_vlm, target_is_directory=True)
    load_vlm(str(tmp_path / "link"))  # a new cache key, so it really loads
    assert seen == [False]


def test_llava_v1_template_renders_the_original_llava_prompt(tiny_vlm: Path, tmp_path: Path) -> None:
    model = get_model(f"hfvlm/{tiny_vlm}", chat_template="llava_v1")
    prompt, _ = model.api.vlm.render([user("What is shown?")], model.api.chat_template)
    # haotian-liu/LLaVA llava/conversation.py conv_llava_v1 + get_prompt (SeparatorStyle.TWO)
    assert prompt == (
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the human's questions. USER: <image>\nWhat is shown? ASSISTANT:"
    )
    turns = [user("Hi"), ChatMessageAssistant(content="Hello."), user("More", image=False)]
    prompt, _ = model.api.vlm.render(turns, model.api.chat_template)
    assert prompt.endswith("USER: <image>\nHi ASSISTANT: Hello.</s>USER: More ASSISTANT:")
    # a defense's system message takes LLaVA's one system slot
    prompt, _ = model.api.vlm.render([ChatMessageSystem(content="Be safe."), user("Hi")], model.api.chat_template)
    assert prompt == "Be safe. USER: <image>\nHi ASSISTANT:"
    template = tmp_path / "plain.jinja"
    template.write_text(
        "{% for m in messages %}[{{ m['role'] }}]{% for p in m['content'] %}"
        "{% if p['type'] == 'image' %}<image>{% endif %}{% endfor %}{% endfor %}"
    )
    model = get_model(f"hfvlm/{tiny_vlm}", chat_template=str(template))
    assert model.api.vlm.render([user("Hi")], model.api.chat_template)[0] == "[user]<image>"
    output = asyncio.run(model.generate([user("Hi")], config=GenerateConfig(max_tokens=3)))
    assert output.usage.input_tokens > 0


def test_an_unknown_chat_template_is_refused(tiny_vlm: Path) -> None:
    with pytest.raises(ValueError, match="llava_v1"):
        get_model(f"hfvlm/{tiny_vlm}", chat_template="vicuna_v9")


def test_an_eval_loads_the_weights_once_whatever_the_model_args(tiny_vlm: Path, tmp_path: Path) -> None:
    """Inspect resolves each model event's name to a context window for its live session (`get_model_info`);
    for a name it does not know, that builds the provider anew with default args. That must not load a second
    copy of the weights (on a GPU: twice the memory for every local model given non-default `-M` args)."""
    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.solver import generate

    from vlmguard_eval.models import local_vlm

    path = shutil.copytree(tiny_vlm, tmp_path / "own-copy")  # a folder no other test has loaded
    [log] = eval(
        Task(dataset=[Sample(input="Hello?"), Sample(input="Why?")], solver=generate()),
        model=f"hfvlm/{path}",
        model_args={"device": "cpu", "decode": "static", "batch_size": 2},
        max_tokens=3,
        log_dir=str(tmp_path / "logs"),
        display="none",
    )
    assert log.status == "success"
    loaded = [key for key in local_vlm._LOADED if key[0] == str(path)]
    assert len(loaded) == 1, loaded


def test_auto_device_and_dtype_name_the_load_they_resolve_to(tiny_vlm: Path) -> None:
    import torch

    device, dtype = ("cuda", "bfloat16") if torch.cuda.is_available() else ("cpu", "float32")
    assert load_vlm(str(tiny_vlm), device="auto", dtype="auto") is load_vlm(str(tiny_vlm), device=device, dtype=dtype)
