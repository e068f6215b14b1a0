"""Tiny random-weight models built from configs: a LLaVA VLM and the defenses' side models.

They run the real transformers code paths (processor, chat template, `generate`, classification,
CLIP embeddings) in seconds on a CPU, so tests and the offline demo exercise everything a real
checkpoint would, with no download. The VLM's replies are random text: a judge or rewriter role
filled by it produces unparseable output, which the project must count and report, not hide.
"""

from __future__ import annotations

from pathlib import Path

# The tokenizer is trained on these few lines; any text still encodes (byte-level BPE).
_CORPUS = [
    "USER: What is in this image? ASSISTANT: The image shows a person on a roof.",
    "Verdict: SAFE. Verdict: UNSAFE. Rating: VERY EFFECTIVE, PARTIALLY EFFECTIVE, INEFFECTIVE.",
    "<analysis> Foresight: Text: Image: Together: </analysis> <refined_prompt> </refined_prompt>",
    "I'm sorry, I can't help with that. Please be careful and stay safe.",
    "A B C D. The answer is B. Options: knife, medicine, bridge, fire, money, cake.",
]

# HF renders chat templates with trim_blocks, so newlines are written as {{ '\\n' }}
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'].upper() }}: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{{ '\\n' }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


# every tiny transformer here has the same shape: one layer, 16 wide
TINY_LAYERS = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)


def tiny_image_processor(image_size: int):  # -> CLIPImageProcessor
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def tiny_llama_config(tokenizer, with_special_ids: bool = True, **extra):  # -> LlamaConfig
    """The tiny Llama every tiny model here shares (text tower, classifier, ArmoRM backbone, causal LM)."""
    from transformers import LlamaConfig

    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id} if with_special_ids else {}
    shape = {"vocab_size": len(tokenizer), **TINY_LAYERS, "num_key_value_heads": 1, **extra}
    return LlamaConfig(**shape, max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id, **ids)


def tiny_tokenizer(
    extra_specials: tuple[str, ...] = (),
    corpus: list[str] | None = None,
    vocab_size: int = 320,
    added_specials: str | None = None,
):  # -> PreTrainedTokenizerFast
    """A byte-level BPE tokenizer trained on a few lines (any text still encodes). It adds no special tokens to
    text unless `added_specials` is a `tokenizers` TemplateProcessing pattern for one text, such as "<s> $A" (the
    BOS Llama's tokenizers add) or "<s> $A </s>"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>", *extra_specials]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus or _CORPUS, trainer)
    if added_specials is not None:
        named = [t for t in ("<s>", "</s>") if t in added_specials.split()]
        bpe.post_processor = processors.TemplateProcessing(
            single=added_specials, special_tokens=[(t, bpe.token_to_id(t)) for t in named]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )


def build_tiny_vlm(
    path: str | Path,
    seed: int = 0,
    image_size: int = 30,
    patch_size: int = 15,
    added_specials: str | None = None,
    template_bos: bool = False,
) -> Path:
    """Write a tiny LLaVA checkpoint (safetensors, processor, chat template) to `path`. By default its tokenizer
    adds no BOS and its template renders none; `added_specials="<s> $A"` makes the tokenizer add one (as
    LLaVA-1.5's Llama tokenizer does) and `template_bos` makes the template render `bos_token` first (as
    Mllama's and Gemma-3's do): the cases of the BOS rule (models.chat_templates)."""
    vision = dict(**TINY_LAYERS, image_size=image_size, patch_size=patch_size, projection_dim=16)
    tokenizer = tiny_tokenizer(added_specials=added_specials)
    template = "{{ bos_token }}" + _CHAT_TEMPLATE if template_bos else _CHAT_TEMPLATE
    return _build_llava(Path(path), tokenizer, vision, {}, seed=seed, chat_template=template)


# Real VLM shapes with random weights, for GPU benchmarks (nothing to download): LLaVA-1.5's CLIP ViT-L/14-336
# tower and projector with Llama text towers. 7B/13B: the llava-hf/llava-1.5-{7b,13b}-hf configs (576 image
# tokens from the second-last layer, vocabulary 32,064); 3B: Llama-3.2-3B's text shape (grouped KV heads).
CLIP_L14_336 = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=336,
    patch_size=14,
    projection_dim=768,
)
TEXT_SHAPES = {
    "llava-1.5-7b": dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32
    ),
    "llava-1.5-13b": dict(
        hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=40
    ),
    "llava-3b": dict(
        hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8
    ),
}


def build_shaped_vlm(
    path: str | Path, shape: str, corpus: list[str], device: str = "cpu", dtype: str = "bfloat16", seed: int = 0
) -> Path:
    """Write a random-weight LLaVA of a real model's shape; its tokenizer is trained on `corpus` (up to LLaVA's
    32,064 entries; the model keeps that vocabulary size, so ids past the tokenizer's decode to nothing)."""
    if shape not in TEXT_SHAPES:
        raise ValueError(f"shape {shape!r} is not one of {', '.join(TEXT_SHAPES)}")
    tokenizer = tiny_tokenizer(corpus=corpus, vocab_size=32000)
    text = {**TEXT_SHAPES[shape], "vocab_size": 32064, "rms_norm_eps": 1e-5}
    return _build_llava(
        Path(path), tokenizer, CLIP_L14_336, text, seed=seed, device=device, dtype=dtype, feature_layer=-2
    )


def _build_llava(
    path: Path,
    tokenizer,
    vision_shape: dict,
    text_shape: dict,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "float32",
    feature_layer: int = -1,
    chat_template: str = _CHAT_TEMPLATE,
) -> Path:
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    processor = LlavaProcessor(
        image_processor=tiny_image_processor(vision_shape["image_size"]),
        tokenizer=tokenizer,
        patch_size=vision_shape["patch_size"],
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=chat_template,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision_shape),
        text_config=tiny_llama_config(tokenizer, **text_shape),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=feature_layer,
    )
    torch.manual_seed(seed)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(default_dtype)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path


def build_tiny_classifier(path: str | Path, seed: int = 0, with_head: bool = True) -> Path:
    """A one-logit Llama sequence classifier: the shape of MLLM-Protector's harm detector.
    `with_head=False` leaves the `score` head out of the safetensors (a loader must refuse it)."""
    import torch
    from transformers import LlamaForSequenceClassification

    tokenizer = tiny_tokenizer()
    config = tiny_llama_config(tokenizer, with_special_ids=False, num_labels=1)
    torch.manual_seed(seed)
    path = Path(path)
    LlamaForSequenceClassification(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    if not with_head:
        _drop_tensors(path / "model.safetensors", "score.")
    return path


def _drop_tensors(file: Path, prefix: str) -> None:
    from safetensors.torch import load_file, save_file

    tensors = {k: v for k, v in load_file(str(file)).items() if not k.startswith(prefix)}
    save_file(tensors, str(file), metadata={"format": "pt"})


# the chat template of Llama-3 tokenizers (ArmoRM-Llama3-8B-v0.1's tokenizer_config.json): a fixed input
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
LLAMA3_SPECIALS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


def build_tiny_armorm(path: str | Path, seed: int = 0, objectives: int = 4, gating_width: int = 8) -> Path:
    """A tiny checkpoint shaped like RLHFlow/ArmoRM-Llama3-8B-v0.1: Llama backbone under `model.*`,
    regression layer, gating MLP (2 hidden layers), a non-identity reward transform and a logit scale,
    a Llama-3-style tokenizer and chat template. Heads are random, so scores are arbitrary but fixed."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaModel

    tokenizer = tiny_tokenizer(LLAMA3_SPECIALS)
    tokenizer.bos_token = "<|begin_of_text|>"
    tokenizer.eos_token = "<|eot_id|>"
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    n_hidden = 2
    config = tiny_llama_config(
        tokenizer,
        num_labels=1,
        num_objectives=objectives,
        gating_temperature=10,
        gating_hidden_dim=gating_width,
        gating_n_hidden=n_hidden,
        architectures=["LlamaForRewardModelWithGating"],
    )
    torch.manual_seed(seed)
    backbone = LlamaModel(config).eval()
    hidden = config.hidden_size
    tensors = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    tensors["regression_layer.weight"] = torch.randn(objectives, hidden)
    tensors["reward_transform_matrix"] = torch.eye(objectives) + 0.3 * torch.randn(objectives, objectives)
    tensors["gating.logit_scale"] = torch.tensor([1.7])
    inputs = hidden
    for index in range(n_hidden):
        tensors[f"gating.layers.{index}.weight"] = torch.randn(gating_width, inputs)
        tensors[f"gating.layers.{index}.bias"] = torch.randn(gating_width)
        inputs = gating_width
    tensors[f"gating.layers.{n_hidden}.weight"] = torch.randn(objectives, inputs) * 5
    tensors[f"gating.layers.{n_hidden}.bias"] = torch.randn(objectives)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_causal_lm(path: str | Path, seed: int = 0) -> Path:
    """A tiny text-only Llama causal LM with no chat template: the shape of MLLM-Protector's detoxifier."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    config = tiny_llama_config(tokenizer)
    torch.manual_seed(seed)
    path = Path(path)
    LlamaForCausalLM(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_clip(path: str | Path, seed: int = 0, image_size: int = 30, patch_size: int = 15) -> Path:
    """A tiny CLIP (text and vision towers), with its tokenizer and image processor."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    tokenizer = tiny_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            **TINY_LAYERS,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=dict(
            **TINY_LAYERS,
            image_size=image_size,
            patch_size=patch_size,
        ),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    path = Path(path)
    CLIPModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    tiny_image_processor(image_size).save_pretrained(path)
    return path


# Other VLM families, tiny, with the chat templates their checkpoints ship (where they differ from LLaVA's in what a
# provider must get right: system content, images nested per prompt, end-of-turn ids, cross-attention).
# Gemma-3's (google/gemma-3-4b-it chat_template.json): a system message's content is indexed as a list of parts
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n"
    "\n"
    "' -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n"
    '\' + (first_user_prefix if loop.first else "") }}\n'
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n"
    "' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n"
    "'}}\n"
    "{%- endif -%}\n"
)
# Llama-3.2-11B-Vision-Instruct's: `messages[0]['content'] | trim` (system content as a string), no system message
# beside an image (trailing spaces of one line dropped; `{%-` strips them anyway)
LLAMA32_VISION_CHAT_TEMPLATE = (
    "{{- bos_token }}\n"
    "{%- if custom_tools is defined %}\n"
    "    {%- set tools = custom_tools %}\n"
    "{%- endif %}\n"
    "{%- if not tools_in_user_message is defined %}\n"
    "    {%- set tools_in_user_message = true %}\n"
    "{%- endif %}\n"
    "{%- if not date_string is defined %}\n"
    "    {%- if strftime_now is defined %}\n"
    '        {%- set date_string = strftime_now("%d %b %Y") %}\n'
    "    {%- else %}\n"
    '        {%- set date_string = "26 Jul 2024" %}\n'
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    "\n"
    "{#- This block extracts the system message, so we can slot it into the right place. #}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    '    {%- set system_message = "" %}\n'
    "{%- endif %}\n"
    "\n"
    "{#- Find out if there are any images #}\n"
    "{% set image_ns = namespace(has_images=false) %}\n"
    "{%- for message in messages %}\n"
    "    {%- for content in message['content'] %}\n"
    "        {%- if content['type'] == 'image' %}\n"
    "            {%- set image_ns.has_images = true %}\n"
    "        {%- endif %}\n"
    "    {%- endfor %}\n"
    "{%- endfor %}\n"
    "\n"
    "{#- Error out if there are images and system message #}\n"
    '{%- if image_ns.has_images and not system_message == "" %}\n'
    '    {{- raise_exception("Prompting with images is incompatible with system messages.") }}\n'
    "{%- endif %}\n"
    "\n"
    "{#- System message if there are no images #}\n"
    "{%- if not image_ns.has_images %}\n"
    '    {{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}\n'
    "    {%- if tools is not none %}\n"
    '        {{- "Environment: ipython\\n" }}\n'
    "    {%- endif %}\n"
    '    {{- "Cutting Knowledge Date: December 2023\\n" }}\n'
    '    {{- "Today Date: " + date_string + "\\n\\n" }}\n'
    "    {{- system_message }}\n"
    '    {{- "<|eot_id|>" }}\n'
    "{%- endif %}\n"
    "\n"
    "{%- for message in messages %}\n"
    "    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}\n"
    "        {%- if message['content'] is string %}\n"
    "            {{- message['content'] }}\n"
    "        {%- else %}\n"
    "            {%- for content in message['content'] %}\n"
    "                {%- if content['type'] == 'image' %}\n"
    "                    {{- '<|image|>' }}\n"
    "                {%- elif content['type'] == 'text' %}\n"
    "                    {{- content['text'] }}\n"
    "                {%- endif %}\n"
    "            {%- endfor %}\n"
    "        {%- endif %}\n"
    "        {{- '<|eot_id|>' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n"
)
# HuggingFaceM4/Idefics3-8B-Llama3's
IDEFICS3_CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def family_tokenizer(
    specials: list[str], attributes: dict[str, str], bos: str, eos: str, pad: str, vocab_size: int = 400
):
    """A byte-level BPE tokenizer with a family's own special tokens (and the processor attributes naming them)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    every = list(dict.fromkeys(["<unk>", bos, eos, pad, *specials]))
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=every, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        extra_special_tokens=attributes,
    )


def _save(path: str | Path, model, processor, generation: dict, seed: int) -> Path:  # noqa: ANN001
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(**generation)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path


def build_tiny_gemma3(path: str | Path, seed: int = 0) -> Path:
    """A tiny Gemma-3 (SigLIP tower, 4 tokens an image) with gemma-3-it's chat template and generation_config
    (EOS ids [<eos>, <end_of_turn>], do_sample with top_k 64, top_p 0.95)."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor

    names = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"}
    tokenizer = family_tokenizer(
        ["<start_of_turn>", "<end_of_turn>", *names.values()], names, bos="<bos>", eos="<eos>", pad="<pad>"
    )
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=4,
    )
    ids = {name: getattr(tokenizer, f"{name}_id") for name in ("bos_token", "eos_token", "pad_token")}
    ids = {f"{name}_id": value for name, value in ids.items()}
    config = Gemma3Config(
        text_config=dict(
            vocab_size=len(tokenizer),
            **TINY_LAYERS | {"num_hidden_layers": 2},
            num_key_value_heads=1,
            head_dim=8,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention"],
            max_position_embeddings=4096,
            **ids,
        ),
        vision_config=dict(model_type="siglip_vision_model", **TINY_LAYERS, image_size=32, patch_size=8),
        mm_tokens_per_image=4,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    ends = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    generation = dict(ids, eos_token_id=ends, do_sample=True, top_k=64, top_p=0.95)
    return _save(path, model, processor, generation, seed)


def build_tiny_mllama(path: str | Path, seed: int = 0) -> Path:
    """A tiny Mllama (Llama-3.2-Vision: cross-attention layers) with Llama-3.2-11B-Vision-Instruct's chat template
    and generation_config (EOS ids [<|end_of_text|>, <|eom_id|>, <|eot_id|>], do_sample, temperature 0.6)."""
    import torch
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessorPil, MllamaProcessor

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    specials += ["<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>", "<|image|>"]
    tokenizer = family_tokenizer(
        specials, {}, bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>"
    )
    processor = MllamaProcessor(
        image_processor=MllamaImageProcessorPil(size={"height": 32, "width": 32}, max_image_tiles=2),
        tokenizer=tokenizer,
        chat_template=LLAMA32_VISION_CHAT_TEMPLATE,
    )
    ids = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    config = MllamaConfig(
        text_config=dict(
            vocab_size=len(tokenizer) + 8,
            **TINY_LAYERS | {"num_hidden_layers": 3},
            num_key_value_heads=1,
            cross_attention_layers=[1],
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
            **ids,
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_global_layers=1,
            attention_heads=2,
            image_size=32,
            patch_size=16,
            max_num_tiles=2,
            intermediate_layers_indices=[0],
            vision_output_dim=32,
            supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"),
    )
    torch.manual_seed(seed)
    model = MllamaForConditionalGeneration(config).eval()
    ends = [tokenizer.convert_tokens_to_ids(t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]
    generation = dict(ids, eos_token_id=ends, do_sample=True, temperature=0.6, top_p=0.9)
    return _save(path, model, processor, generation, seed)


def build_tiny_idefics3(path: str | Path, seed: int = 0) -> Path:
    """A tiny Idefics3 with its chat template, whose turns end at <end_of_utterance>; its tokenizer's EOS and its
    generation_config name another token (</s>), as SmolVLM/Idefics3 checkpoints may."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    specials = ["<|begin_of_text|>", "<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
    specials += [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    tokenizer = family_tokenizer(specials, {}, bos="<|begin_of_text|>", eos="</s>", pad="<pad>")
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}),
        tokenizer=tokenizer,
        image_seq_len=4,
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )
    config = Idefics3Config(
        vision_config=dict(**TINY_LAYERS, image_size=32, patch_size=8),
        text_config=tiny_llama_config(tokenizer).to_dict(),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    generation = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    return _save(path, model, processor, generation, seed)
