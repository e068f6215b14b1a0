"""`hfvlm` on VLM families other than LLaVA, each a tiny checkpoint built from its config with the chat template and
generation_config its real checkpoints ship: Qwen2-VL's pixel-budget resize rule, Mllama's cross-attention (no
static cache), system content as each template wants it (or a named refusal), images nested per request so
Gemma-3 and Mllama batch, ETA's sentences ending at every end-of-turn id, greedy-by-default recorded where the
checkpoint samples, and Idefics3's <end_of_utterance> as a stop.
"""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from inspect_ai.model import ChatMessageSystem, ChatMessageUser, ContentImage, ContentText, GenerateConfig, get_model
from PIL import Image

from vlmguard_eval.models.local_vlm import GenKey, LoadedVLM, Request, RequestError, predicted_size


def image_uri(width: int, height: int, seed: int = 0) -> str:
    generator = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(height, width, 3, generator=generator) * 255).to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def user(text: str, *sizes: tuple[int, int]) -> ChatMessageUser:
    images = [ContentImage(image=image_uri(w, h, seed)) for seed, (w, h) in enumerate(sizes)]
    return ChatMessageUser(content=[*images, ContentText(text=text)])


GREEDY = GenKey(max_new_tokens=6, do_sample=False, temperature=None, top_p=None, top_k=None, seed=None, stop_seqs=())


def load(path: Path, decode: str = "dynamic") -> LoadedVLM:
    return LoadedVLM(str(path), None, "cpu", "float32", False, 16, 20, decode=decode)


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vlmguard_eval.models.tiny import build_tiny_gemma3

    return build_tiny_gemma3(tmp_path_factory.mktemp("gemma3") / "tiny-gemma3")


@pytest.fixture(scope="module")
def mllama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vlmguard_eval.models.tiny import build_tiny_mllama

    return build_tiny_mllama(tmp_path_factory.mktemp("mllama") / "tiny-mllama")


# --- 1. Qwen2-VL / Qwen2.5-VL: `size` holds pixel counts (min_pixels, max_pixels), resized by smart_resize


def test_qwen_predicted_size_is_the_processors_own() -> None:
    from transformers import Qwen2VLImageProcessorPil

    # Qwen2-VL-7B-Instruct's preprocessor_config.json: min_pixels 3136, max_pixels 12845056, 14 px patches, merge 2
    processor = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056, patch_size=14, merge_size=2)
    for width, height in [(512, 512), (1024, 512), (1024, 270), (760, 1024), (1920, 1080), (200, 200), (30, 20)]:
        grid = processor(images=[Image.new("RGB", (width, height))], return_tensors="pt")["image_grid_thw"][0]
        real = (int(grid[1]) * 14, int(grid[2]) * 14)
        assert predicted_size(processor, width, height) == real, (width, height)


def test_qwen_check_image_accepts_photos_and_typography() -> None:
    from transformers import Qwen2VLImageProcessorPil

    vlm = LoadedVLM.__new__(LoadedVLM)  # check_image needs only the processor
    vlm.processor = SimpleNamespace(image_processor=Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056))
    for size in [(1024, 270), (1920, 1080), (1024, 512)]:  # an MM-SafetyBench TYPO image, a 16:9 photo, 2:1
        vlm.check_image(Image.new("RGB", size))


# --- 2. Mllama's cross-attention cannot use our static cache: refused at load


def test_static_decoding_is_refused_for_cross_attention_models(mllama: Path) -> None:
    for decode in ("static",):  # graphs is refused on CPU before this check; the check covers both
        with pytest.raises(ValueError, match=r"mllama.*cross-attention.*decode=dynamic"):
            load(mllama, decode)


# --- 3. system content in the form each template reads, and a template's refusal as a RequestError


def test_system_text_reaches_each_template_verbatim(mllama: Path, gemma3: Path) -> None:
    question = [ChatMessageSystem(content="Be careful."), ChatMessageUser(content="Is it safe?")]
    llama = load(mllama)
    prompt, _ = llama.render(question)
    assert "Today Date" in prompt and "\n\nBe careful.<|eot_id|>" in prompt and "'type'" not in prompt
    gemma = load(gemma3)
    prompt, _ = gemma.render(question)
    assert "<start_of_turn>user\nBe careful.\n\nIs it safe?<end_of_turn>" in prompt


def test_a_template_refusing_a_conversation_is_a_request_error(mllama: Path) -> None:
    llama = load(mllama)
    with pytest.raises(RequestError, match=r"tiny-mllama.*incompatible with system messages"):
        llama.render([ChatMessageSystem(content="Be careful."), user("What is this?", (32, 32))])
    # Llama Guard 3 Vision's template takes no system message at all
    guard = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System prompts are not supported') }}{% endif %}"
        "{% for m in messages %}{{ m['role'] }}{% endfor %}"
    )
    with pytest.raises(RequestError, match="System prompts are not supported"):
        llama.render([ChatMessageSystem(content="Be careful."), ChatMessageUser(content="Hi")], guard)


# --- 4. images nested per request: a batch of image requests is one `generate` call on Gemma-3 and Mllama


@pytest.mark.parametrize("family", ["gemma3", "mllama"])
def test_image_requests_batch_in_one_generate_call(family: str, request: pytest.FixtureRequest) -> None:
    vlm = load(request.getfixturevalue(family))
    conversations = [
        [user("What is in this image?", (32, 32))],
        [user("Describe the picture.", (64, 32))],
        [ChatMessageUser(content="Is it safe?")],
        [user("Compare them.", (32, 32), (32, 64))],
    ]
    requests = [Request(*vlm.render(messages), GREEDY) for messages in conversations]
    alone = [vlm._generate([r], GREEDY)[0].token_ids for r in requests]
    calls = []
    generate = vlm._generate
    vlm._generate = lambda batch, key: calls.append(len(batch)) or generate(batch, key)
    results = vlm.run_batch(requests)
    assert calls == [len(requests)]  # one shared call, no fallback to one call each
    assert [r.token_ids for r in results] == alone


# --- 5. ETA's sentences end at every end-of-turn id the checkpoint lists (Gemma-3's <end_of_turn>)


def test_eta_sentences_end_at_the_checkpoints_end_of_turn(gemma3: Path) -> None:
    from vlmguard_eval.models.guided import SentenceSampler, split_sentence

    vlm = load(gemma3)
    end_of_turn = vlm.tokenizer.convert_tokens_to_ids("<end_of_turn>")
    sampler = SentenceSampler(vlm, [ChatMessageUser(content="Is it safe?")], "As an AI assistant")
    assert end_of_turn in sampler.end_ids and vlm.tokenizer.pad_token_id not in sampler.end_ids
    period = sampler.period_id
    assert split_sentence([40, end_of_turn, 41, period], sampler.end_ids, period, 70).end == "eos"
    asked = {}
    generate = vlm.model.generate
    vlm.model.generate = lambda **kwargs: asked.update(kwargs) or generate(**kwargs)
    sampler.sample([], n=2, cap=4, top_k=5, temperature=1.0)
    assert set(asked["eos_token_id"]) == {vlm.tokenizer.eos_token_id, end_of_turn, period}


# --- 6. greedy where the checkpoint samples, recorded


def test_unset_temperature_on_a_sampling_checkpoint_is_recorded(gemma3: Path) -> None:
    model = get_model(f"hfvlm/{gemma3}", memoize=False)

    def metadata(config: GenerateConfig) -> dict:
        output = asyncio.run(model.generate([ChatMessageUser(content="Is it safe?")], config=config))
        return output.metadata or {}

    assert metadata(GenerateConfig(max_tokens=3))["checkpoint_sampling_overridden"] is True
    assert "checkpoint_sampling_overridden" not in metadata(GenerateConfig(max_tokens=3, temperature=0.0))
    assert "checkpoint_sampling_overridden" not in metadata(GenerateConfig(max_tokens=3, temperature=0.7))


def test_a_checkpoint_that_decodes_greedily_records_no_override(tiny_vlm: Path) -> None:
    model = get_model(f"hfvlm/{tiny_vlm}", memoize=False)
    output = asyncio.run(model.generate([ChatMessageUser(content="Is it safe?")], config=GenerateConfig(max_tokens=3)))
    assert "checkpoint_sampling_overridden" not in (output.metadata or {})


# --- 7. Idefics3/SmolVLM: the processor's <end_of_utterance> ends a turn though generation_config omits it


def test_idefics3_end_of_utterance_is_a_stop(tmp_path: Path) -> None:
    from vlmguard_eval.models.tiny import build_tiny_idefics3

    vlm = load(build_tiny_idefics3(tmp_path / "tiny-idefics3"))
    end = vlm.tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    assert end not in [vlm.tokenizer.eos_token_id, vlm.model.generation_config.eos_token_id]
    assert end in vlm.end_ids and end in vlm.stop_ids
    asked = {}
    generate = vlm.model.generate
    vlm.model.generate = lambda **kwargs: asked.update(kwargs) or generate(**kwargs)
    [result] = vlm._generate([Request(*vlm.render([user("What is this?", (32, 32))]), GREEDY)], GREEDY)
    assert end in asked["eos_token_id"] and end not in result.token_ids


SYSTEM_TRIM_TEMPLATE = (  # a system turn rendered as Llama-3.2-Vision's is (`content | trim`), users as LLaVA's
    "{% for message in messages %}{{ message['role'].upper() }}: "
    "{% if message['role'] == 'system' %}{{ message['content'] | trim }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{{ '\\n' }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def records_dir(tmp_path: Path) -> Path:
    (tmp_path / "records").mkdir()
    return tmp_path / "records"


def test_training_renders_the_system_message_as_inference_does(tmp_path: Path) -> None:
    """The rewriter's system prompt reaches a `content | trim` template as text in training as at inference
    (never a printed list of parts), so the trained prompt is the served one."""
    pytest.importorskip("trl", reason="training runs on TRL (install the `train` extra)")
    from transformers import AutoProcessor

    from tests.helpers import png_bytes
    from tests.test_training import sft_records
    from vlmguard_eval.models.local_vlm import load_vlm
    from vlmguard_eval.models.tiny import TINY_LAYERS, _build_llava, tiny_tokenizer
    from vlmguard_eval.rewriter.prompts import rewriter_messages, rewriter_system_prompt
    from vlmguard_eval.training.sft import load_records, sft_dataset, special_strings, training_collator

    vision = dict(**TINY_LAYERS, image_size=30, patch_size=15, projection_dim=16)
    model = _build_llava(tmp_path / "model", tiny_tokenizer(), vision, {}, chat_template=SYSTEM_TRIM_TEMPLATE)
    processor = AutoProcessor.from_pretrained(model)
    dataset = sft_dataset(load_records(sft_records(records_dir(tmp_path))), special_strings(processor))
    trained = training_collator(processor).example(dataset[0])["prompt"]
    vlm = load_vlm(str(model), device="cpu")
    uri = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    served, _ = vlm.render(rewriter_messages([ContentImage(image=uri)], "request 0"))
    first_line = rewriter_system_prompt().strip().splitlines()[0]
    assert trained == served and first_line in served and "'type'" not in served
