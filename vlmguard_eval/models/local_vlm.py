"""`hfvlm/<dir or hub id>`: any transformers image-text-to-text model as an Inspect provider.

Loads AutoModelForImageTextToText and AutoProcessor (safetensors only; `trust_remote_code` off
unless `-M trust_remote_code=true`), renders Inspect messages with the processor's chat template
(or `-M chat_template=llava_v1`, the original LLaVA template, or a jinja file),
and batches concurrent requests into one `generate` call (`-M batch_size=16 -M batch_wait_ms=20`).
Runs on CUDA when present, else CPU. Weights are loaded once per process and shared by every role that names
the same checkpoint; roles asking for the same batch_size and batch_wait_ms share a batcher, others get their
own over the same weights (one batch at a time runs on them), and roles asking for another cache_share or
generation_config than the loaded weights have are refused (load_vlm). Each batcher is its own Inspect connection
pool of two batches (max_connections), on Inspect's static path unless the user sets max_connections or
adaptive_connections: adaptive concurrency learns a remote API's rate limit, and a local model has none.

Seeds: torch samples every row of a `generate` call from one random stream, so a seeded sampled request runs
in a `generate` call of its own, seeded with its seed: its output is the same alone or among other requests,
and the same in every run (and every epoch). Seeded sampling therefore gets no batching. Greedy requests
ignore the seed; unseeded sampled requests are batched. A seeded call holds its device's generators alone and
puts them back as they were (sampling_rng); unseeded sampling never waits for it, so it stays concurrent across
models (an unseeded call sampling on the same device at that very moment could draw from the seeded stream).

The checkpoint's generation_config.json (top_k, top_p, repetition_penalty, ...) applies to every setting a
request leaves unset, except sampling itself: a request without a temperature is decoded greedily even where
the checkpoint says do_sample=True (Gemma-3, Llama-3.2-Vision), so an eval is deterministic by default, unlike
transformers and Inspect's `hf/` provider; such an output's metadata says `checkpoint_sampling_overridden`.
Each output's metadata names the checkpoint settings that applied (`checkpoint_generation_config`).
`-M generation_config=plain` drops them (token ids kept):
transformers' own defaults apply instead (top_k=50 when sampling without a top_k).

Decoding (`-M decode=...`): eager decoding of a 7B model is bound by Python and kernel launches, not by the
GPU. `graphs` (CUDA) decodes with a static KV cache and transformers' compiled decoding step (torch.compile,
CUDA graphs); `static` is the same cache without compiling; `dynamic` (the default) is plain `generate`.
With a static cache, batches are padded to a power of two rows and the cache length to a multiple of
CACHE_LENGTH_STEP, so a run compiles a few shapes and then replays them; each shape's cache is kept and
reused, within `-M cache_share=0.3` of the GPU memory free when the first cache is made (per model: lower
it when several local models share a GPU; least recently used dropped first). Greedy outputs are the same
in every mode (tested on CPU). CUDA graph trees work from one thread only (pytorch/pytorch#123177), so every
`graphs` model in a process runs its GPU work on its device's thread; its own batcher thread runs the
processor meanwhile, so one model's CPU preparation overlaps another's decoding.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspect_ai._util.error import PrerequisiteError
from inspect_ai.model import (
    ChatMessage,
    ContentImage,
    GenerateConfig,
    ModelAPI,
    ModelInfo,
    ModelOutput,
    ModelUsage,
    set_model_info,
)
from inspect_ai.tool import ToolChoice, ToolInfo
from PIL import Image

from vlmguard_eval.core.messages import check_image_size, decode_image
from vlmguard_eval.models.batching import MicroBatcher
from vlmguard_eval.models.chat_templates import prompt_inputs, resolve_chat_template, tokenizer_bos_id

DEFAULT_MAX_NEW_TOKENS = 512
# the most pixels one image may become inside the processor (after its own resizing rule)
MAX_PROCESSED_PIXELS = 4096 * 4096
# placed inside a special-token string that occurs in text, so the tokenizer reads it as plain text
NEUTRALISER = "\u2060"  # WORD JOINER: invisible, never part of a special token
DECODE_MODES = ("dynamic", "static", "graphs")
# static caches grow in steps of this many tokens: fewer distinct shapes to compile
CACHE_LENGTH_STEP = 256
# `-M generation_config=`: the checkpoint's generation_config.json fills what a request leaves unset, or not
GENERATION_CONFIGS = ("checkpoint", "plain")
# generation_config.json entries that name tokens or steer bookkeeping, not which token comes next; `plain` keeps
# the token ids. do_sample, max_length and max_new_tokens are set by every request.
_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
_NOT_DECODING = {
    *_TOKEN_IDS,
    *("transformers_version", "_from_model_config", "use_cache", "cache_implementation", "cache_config"),
    *("compile_config", "disable_compile", "output_attentions", "output_hidden_states", "output_scores"),
    *("output_logits", "return_dict_in_generate", "do_sample", "max_length", "max_new_tokens"),
}
# generation_config.json entries transformers applies only when sampling
_SAMPLING_ONLY = {"temperature", "top_k", "top_p", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff"}


class RequestError(ValueError):
    """A request this provider refuses; it fails only the sample that sent it."""


@dataclass(frozen=True)
class GenKey:
    """Generation settings; only requests with equal keys share a `generate` call."""

    max_new_tokens: int
    do_sample: bool
    temperature: float | None
    top_p: float | None
    top_k: int | None
    seed: int | None
    stop_seqs: tuple[str, ...]
    keep_stop: bool = False  # keep the stop string in the text (sentence-by-sentence decoding)

    @property
    def seeded_sampling(self) -> bool:
        """Sampled with a seed: runs in a `generate` call of its own (one random stream serves a whole call)."""
        return self.do_sample and self.seed is not None


@dataclass
class Request:
    prompt: str
    images: list[Image.Image]
    key: GenKey


@dataclass
class Result:
    text: str
    input_tokens: int
    output_tokens: int
    hit_limit: bool  # ended at max_new_tokens (not at EOS or a stop string)
    time: float = 0.0  # seconds the `generate` call that produced it took (with the processor and decoding)
    # the new token ids up to the first stop token: what greedy-equality checks compare (a text hides ids the
    # tokenizer cannot spell, and different ids can spell one text)
    token_ids: list[int] = dataclasses.field(default_factory=list)


def as_data(text: str, specials: tuple[str, ...]) -> tuple[str, int]:
    """Text with every special-token string broken by an invisible joiner, so text can add no image slot,
    role marker or end of turn; returns the text and how many strings were broken. Invalid Unicode
    (a lone surrogate) cannot be tokenized: it is a RequestError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as ex:
        raise RequestError(f"message text is not valid Unicode ({ex.reason} at position {ex.start})") from None
    count = 0
    for special in specials:
        if special in text:
            count += text.count(special)
            text = text.replace(special, special[0] + NEUTRALISER + special[1:])
    return text, count


def system_as_text(message: dict[str, Any]) -> dict[str, Any]:
    """A system message with its text parts joined into one string (images, if any, keep the parts form)."""
    parts = message["content"]
    if message["role"] != "system" or not isinstance(parts, list) or any(p["type"] != "text" for p in parts):
        return message
    return {**message, "content": "".join(p["text"] for p in parts)}


def wants_system_text(processor: Any, chat_template: str | None = None) -> bool:
    """Whether a chat template wants a system message's content as a string, found by rendering a marker both
    ways: Llama-3.2-Vision's does `content | trim`, which prints a list of parts as Python syntax; Gemma-3's,
    LLaVA-NeXT's and Idefics3's index the list. Parts are kept unless only the string renders the marker
    verbatim (as do templates rejecting system messages: their error then names it). Inference (`prepare`) and
    training (`training.sft`) both follow it."""
    marker = "SYSTEM-MARKER-7431"
    user = {"role": "user", "content": [{"type": "text", "text": "Hello"}]}

    def renders(content: Any) -> bool:
        try:
            prompt = processor.apply_chat_template(
                [{"role": "system", "content": content}, user],
                add_generation_prompt=True,
                tokenize=False,
                chat_template=chat_template,
            )
        except Exception:  # a template refusing system messages renders neither form
            return False
        return marker in prompt and "'type'" not in prompt and '"type"' not in prompt

    return not renders([{"type": "text", "text": marker}]) and renders(marker)


def to_hf_messages(
    input: list[ChatMessage], specials: tuple[str, ...] = ()
) -> tuple[list[dict[str, Any]], list[Image.Image], int]:
    """Inspect messages as chat-template dicts, their images decoded in order, and how many special-token
    strings in their text were neutralised."""
    messages: list[dict[str, Any]] = []
    images: list[Image.Image] = []
    neutralised = 0
    for message in input:
        role = "user" if message.role == "tool" else message.role
        if isinstance(message.content, str):
            text, count = as_data(message.content, specials)
            neutralised += count
            parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
        else:
            parts = []
            for content in message.content:
                if isinstance(content, ContentImage):
                    try:
                        images.append(decode_image(content.image))
                    except ValueError as ex:
                        raise RequestError(str(ex)) from None
                    parts.append({"type": "image"})
                elif content.type == "text":
                    text, count = as_data(content.text, specials)
                    neutralised += count
                    parts.append({"type": "text", "text": text})
                elif content.type == "reasoning":
                    continue
                else:
                    raise ValueError(f"hfvlm accepts text and images only, got {content.type!r} content")
        messages.append({"role": role, "content": parts})
    return messages, images, neutralised


def processed_size(size_config: dict[str, Any] | None, width: int, height: int) -> tuple[int, int]:
    """The size an image becomes under a transformers image processor's `size` rule (the common rules:
    fixed height/width, shortest edge with an optional longest edge, longest edge, max_pixels)."""
    size = dict(size_config or {})
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    scale = 1.0
    if "shortest_edge" in size:
        scale = size["shortest_edge"] / min(width, height)
        if "longest_edge" in size:
            scale = min(scale, size["longest_edge"] / max(width, height))
    elif "longest_edge" in size:
        scale = size["longest_edge"] / max(width, height)
    elif "max_pixels" in size:
        scale = min(1.0, (size["max_pixels"] / (width * height)) ** 0.5)
    return round(height * scale), round(width * scale)


def pixel_budget_rule(image_processor: Any) -> bool:
    """Whether `image_processor` resizes by Qwen2-VL's rule (Qwen2-VL, Qwen2.5-VL): its `size` holds pixel
    counts (shortest_edge = min_pixels, longest_edge = max_pixels), not edge lengths."""
    has_merge = hasattr(image_processor, "merge_size") and hasattr(image_processor, "temporal_patch_size")
    return has_merge or hasattr(image_processor, "min_pixels") or hasattr(image_processor, "max_pixels")


def predicted_size(image_processor: Any, width: int, height: int) -> tuple[int, int]:
    """(height, width) an image becomes in `image_processor`: Qwen's own smart_resize (imported from
    transformers, so it cannot drift) for pixel-budget processors, else processed_size's edge rules."""
    size = dict(getattr(image_processor, "size", None) or {})
    if not pixel_budget_rule(image_processor):
        return processed_size(size, width, height)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    min_pixels = size.get("shortest_edge", size.get("min_pixels", getattr(image_processor, "min_pixels", None)))
    max_pixels = size.get("longest_edge", size.get("max_pixels", getattr(image_processor, "max_pixels", None)))
    factor = int(getattr(image_processor, "patch_size", 14)) * int(getattr(image_processor, "merge_size", 2))
    bounds = {k: int(v) for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    try:
        return smart_resize(height, width, factor=factor, **bounds)
    except ValueError as ex:  # its own refusals (an aspect ratio over 200)
        raise RequestError(f"image {width}x{height}: {ex}") from None


def _resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_decode(decode: str, device: str) -> str:
    if decode not in DECODE_MODES:
        raise ValueError(f"hfvlm decode={decode!r} is not one of {', '.join(DECODE_MODES)}")
    if decode == "graphs" and not device.startswith("cuda"):
        raise ValueError(f"hfvlm decode=graphs records CUDA graphs; this model runs on {device}: use decode=static")
    return decode


def check_static_cache_support(config: Any, decode: str) -> None:
    """Refuse `static`/`graphs` for models with cross-attention layers (mllama: Llama-3.2-Vision, Llama Guard 3
    Vision): our StaticCache is sized for self-attention only and bypasses the model's own cross-attention
    sizing, so every image request would crash. Refused at load, never silently run another way."""
    if decode == "dynamic":
        return
    text = config.get_text_config(decoder=True)
    if getattr(text, "cross_attention_layers", None) or getattr(config, "cross_attention_layers", None):
        raise ValueError(
            f"hfvlm decode={decode} keeps a static self-attention cache, which {config.model_type} (a model with "
            "cross-attention layers) cannot use: load it with -M decode=dynamic"
        )


def padded_rows(rows: int) -> int:
    """Rows of the static cache a batch of `rows` requests runs in (a power of two)."""
    return 1 << (rows - 1).bit_length()


def load_key(
    path: str, revision: str | None, device: str, dtype: str, trust_remote_code: bool, decode: str
) -> tuple[Any, ...]:
    """What names one load of a checkpoint in this process (`device` already resolved, `dtype` may be auto)."""
    return (path, revision, device, str(_resolve_dtype(dtype, device)), trust_remote_code, decode)


def _resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    except KeyError:
        raise ValueError(f"dtype {dtype!r} is not one of auto, bfloat16, float16, float32") from None


class LoadedVLM:
    """One checkpoint in memory, with the batchers that feed it (one per batch_size and batch_wait_ms asked for)."""

    def __init__(
        self,
        path: str,
        revision: str | None,
        device: str,
        dtype: str,
        trust_remote_code: bool,
        batch_size: int,
        batch_wait_ms: float,
        decode: str = "dynamic",
        cache_share: float = 0.3,
        generation_config: str = "checkpoint",
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, GenerationConfig

        if generation_config not in GENERATION_CONFIGS:
            raise ValueError(
                f"hfvlm generation_config={generation_config!r} is not one of {', '.join(GENERATION_CONFIGS)}"
            )
        # settings of the weights themselves, which every role on this checkpoint must ask for alike (load_vlm)
        self.shared_settings: dict[str, Any] = dict(cache_share=cache_share, generation_config=generation_config)
        self.device = _resolve_device(device)
        self.decode = _check_decode(decode, self.device)
        self.load_key = load_key(path, revision, self.device, dtype, trust_remote_code, decode)
        self._static_caches: dict[int, tuple[int, Any]] = {}  # padded rows -> (length, StaticCache), reused
        # static caches made so far: a benchmark reads it around each timed pass, since a cache made inside one
        # (a new shape, or one dropped for the budget) puts its allocation and CUDA-graph recording in the time
        self.cache_creations = 0
        self.torch_dtype = _resolve_dtype(dtype, self.device)
        check_static_cache_support(
            AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code), self.decode
        )
        self.name = path
        self.processor = AutoProcessor.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
        self.model = (
            AutoModelForImageTextToText.from_pretrained(
                path,
                revision=revision,
                dtype=self.torch_dtype,
                use_safetensors=True,
                trust_remote_code=trust_remote_code,
            )
            .to(self.device)
            .eval()
        )
        if generation_config == "plain":  # transformers' defaults, with the checkpoint's token ids
            checkpoint = self.model.generation_config
            self.model.generation_config = GenerationConfig(
                **{name: getattr(checkpoint, name) for name in _TOKEN_IDS if getattr(checkpoint, name) is not None}
            )
        # the checkpoint asks for sampling (Gemma-3, Llama-3.2-Vision): a request leaving temperature unset is
        # decoded greedily all the same (our documented default), and its output's metadata says so
        self.checkpoint_samples = bool(self.model.generation_config.do_sample)
        # the checkpoint's settings that steer decoding wherever a request leaves them unset
        self.checkpoint_decoding: dict[str, Any] = {
            name: value
            for name, value in self.model.generation_config.to_diff_dict().items()
            if name not in _NOT_DECODING
        }
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"  # batched generation continues from the right edge
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # the BOS the tokenizer adds by default (None: none), probed once: model_inputs puts it in front of prompts
        self.bos_id = tokenizer_bos_id(self.tokenizer)
        self._torch = torch
        # bytes the kept static caches may take (None: no limit), set at the first cache: a share of the GPU
        # memory then free, after every model of the run (all roles load before the first sample) is in
        self.cache_share = cache_share
        self.cache_budget: int | None = None
        # CUDA graph trees serve one thread: every compiled model on a device runs its GPU work on that device's
        # thread, while each model's batcher thread prepares its inputs (the processor's CPU work) meanwhile
        self._device_runner = _device_thread(self.device) if self.decode == "graphs" else None
        # held for each batch, whichever batcher sent it, and by ETA's SentenceSampler: one piece of work at a
        # time on these weights (they share the model, its processor and its static caches)
        self.run_lock = threading.Lock()
        self._batchers: dict[tuple[int, float], MicroBatcher[Request, Result]] = {}
        # chat template -> whether its system messages take a string (system_as_text), probed once each
        self._system_forms: dict[str, bool] = {}
        self._batchers_lock = threading.Lock()
        # the batcher of the first load's settings; a role takes its own settings' from batcher_for
        self.batcher = self.batcher_for(batch_size, batch_wait_ms)

    def batcher_for(self, batch_size: int, batch_wait_ms: float) -> MicroBatcher[Request, Result]:
        """The batcher with these settings, made at the first asking: roles asking alike share it (and their
        requests share `generate` calls), a role asking otherwise gets its own over these same weights."""
        with self._batchers_lock:
            key = (int(batch_size), float(batch_wait_ms))
            if key not in self._batchers:
                self._batchers[key] = MicroBatcher(self.run_batch, key[0], key[1] / 1000)
            return self._batchers[key]

    def check_shared_settings(self, name: str, asked: dict[str, Any]) -> None:
        """Refuse a second load of this checkpoint that asks for other settings of the weights themselves: one
        copy in memory serves every role, so it cannot hold both."""
        differ = [key for key, value in asked.items() if value != self.shared_settings[key]]
        if differ:
            loaded = ", ".join(f"{key}={self.shared_settings[key]}" for key in differ)
            wanted = ", ".join(f"{key}={asked[key]}" for key in differ)
            raise PrerequisiteError(
                f"hfvlm/{name} is already loaded in this process with {loaded}; this role asks for {wanted}. Roles "
                "naming one checkpoint share one copy of its weights: give every one of them the same -M "
                f"{', '.join(self.shared_settings)} values (unset means cache_share=0.3, "
                "generation_config=checkpoint); batch_size and batch_wait_ms may differ"
            )

    def applied_checkpoint_settings(self, key: GenKey) -> dict[str, Any]:
        """The checkpoint's generation_config.json settings that steered this request: those it leaves unset
        (temperature, top_k, top_p and the like only when sampling)."""
        own = {"temperature": key.temperature, "top_k": key.top_k, "top_p": key.top_p}
        own["stop_strings"] = key.stop_seqs or None
        return {
            name: value
            for name, value in self.checkpoint_decoding.items()
            if (key.do_sample or name not in _SAMPLING_ONLY) and own.get(name) is None
        }

    @property
    def context_length(self) -> int | None:
        """Tokens the text model's positions cover, where its config says."""
        text = self.model.config.get_text_config(decoder=True)
        return getattr(text, "max_position_embeddings", None)

    @property
    def end_ids(self) -> set[int]:
        """Token ids that end the model's turn: the tokenizer's EOS, the checkpoint's generation_config EOS ids
        (Gemma-3's <end_of_turn>, Llama-3's <|eot_id|>) and the processor's end-of-turn token where it names
        one (Idefics3/SmolVLM's <end_of_utterance>, which their generation_config may not list)."""
        found = {self.tokenizer.eos_token_id, *_as_list(self.model.generation_config.eos_token_id)}
        end_of_turn = getattr(self.processor, "end_of_utterance_token", None)
        if isinstance(end_of_turn, str) and end_of_turn in self.tokenizer.get_vocab():
            found.add(self.tokenizer.convert_tokens_to_ids(end_of_turn))
        return found - {None}

    @property
    def stop_ids(self) -> set[int]:
        """Token ids that end a row: a row's output is its new tokens before the first of them (the end ids,
        and the pad that fills a finished row)."""
        return (self.end_ids | {self.tokenizer.pad_token_id}) - {None}

    @property
    def image_token(self) -> str | None:
        return getattr(self.processor, "image_token", None)

    @property
    def special_strings(self) -> tuple[str, ...]:
        return special_strings(self.processor)

    def check_image(self, image: Image.Image) -> None:
        """Refuse an image this checkpoint's processor would blow up (its own resize rule, not only ours)."""
        check_image_size(*image.size)
        image_processor = getattr(self.processor, "image_processor", None)
        if image_processor is None or getattr(image_processor, "do_resize", True) is False:
            return
        height, width = predicted_size(image_processor, *image.size)
        if height * width > MAX_PROCESSED_PIXELS:
            raise RequestError(
                f"image {image.size[0]}x{image.size[1]} would become {width}x{height} in this model's processor "
                f"(limit {MAX_PROCESSED_PIXELS:,} px)"
            )

    def render(self, input: list[ChatMessage], chat_template: str | None = None) -> tuple[str, list[Image.Image]]:
        """The prompt text and its images, as the model receives them."""
        prompt, images, _ = self.prepare(input, chat_template)
        return prompt, images

    def prepare(self, input: list[ChatMessage], chat_template: str | None = None) -> tuple[str, list[Image.Image], int]:
        """The prompt text (by the processor's chat template, or by `chat_template` (jinja) when given), the
        images, and how many special-token strings in the text were neutralised."""
        messages, images, neutralised = to_hf_messages(input, self.special_strings)
        for image in images:
            self.check_image(image)
        if chat_template is None and getattr(self.processor, "chat_template", None) is None:
            raise ValueError("this checkpoint's processor has no chat template; add chat_template.jinja to it")
        if self.system_as_text(chat_template):
            messages = [system_as_text(message) for message in messages]
        prompt = self._render(messages, chat_template)
        token = self.image_token
        if token and prompt.count(token) != len(images):  # the template itself misplaced images
            raise RequestError(f"prompt holds {prompt.count(token)} image slots for {len(images)} images")
        return prompt, images, neutralised

    def _render(self, messages: list[dict[str, Any]], chat_template: str | None) -> str:
        """The prompt by the chat template; a template refusing the conversation (Llama-3.2-Vision: a system
        message beside an image; Llama Guard 3 Vision: any system message) fails the request, named."""
        from jinja2 import TemplateError

        try:
            return self.processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False, chat_template=chat_template
            )
        except TemplateError as ex:
            raise RequestError(f"hfvlm/{self.name}: its chat template refuses this conversation: {ex}") from None

    def system_as_text(self, chat_template: str | None = None) -> bool:
        """Whether this template wants a system message's content as a string (`wants_system_text`), probed
        once per template."""
        template = chat_template if chat_template is not None else getattr(self.processor, "chat_template", None)
        key = template if isinstance(template, str) else repr(template)
        if key not in self._system_forms:
            self._system_forms[key] = wants_system_text(self.processor, chat_template)
        return self._system_forms[key]

    def model_inputs(self, prompts: list[str], images: list[list[Image.Image]] | None = None, **kwargs: Any) -> Any:
        """The processor's batch (left padded, on the CPU) for rendered prompts and each prompt's images (one list
        per prompt, as Gemma-3's, Mllama's and SmolVLM's processors require and the others accept): every
        prompt tokenized as training tokenizes it, with exactly one BOS where this tokenizer adds one
        (chat_templates.prompt_inputs). Every path that feeds this model a prompt goes through here."""
        return prompt_inputs(self.processor, prompts, images, self.bos_id, **kwargs)

    def run_batch(self, requests: list[Request]) -> list[Result | Exception]:
        """Generate for a batch (one at a time on these weights): requests with equal settings share a
        `generate` call, except seeded sampled ones, which run one by one (each call samples all its rows from
        one random stream, so a row's output would depend on its batch-mates). If a shared call fails, its
        requests run one by one so a bad one fails alone."""
        with self.run_lock:
            return self._run_batch(requests)

    def _run_batch(self, requests: list[Request]) -> list[Result | Exception]:
        results: dict[int, Result | Exception] = {}
        groups: dict[GenKey, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.key, []).append(index)
        for key, indices in groups.items():
            calls = [[index] for index in indices] if key.seeded_sampling else [indices]
            for call in calls:
                outputs = self._generate_apart_on_failure([requests[i] for i in call], key)
                results.update(zip(call, outputs, strict=True))
        return [results[i] for i in range(len(requests))]

    def _generate_apart_on_failure(self, requests: list[Request], key: GenKey) -> list[Result | Exception]:
        """One `generate` call for the requests; if it fails, one call each, so each gets its own result or error."""
        try:
            return list(self._generate(requests, key))
        except Exception as ex:
            if len(requests) == 1:
                return [ex]
        outputs: list[Result | Exception] = []
        for request in requests:
            try:
                outputs += self._generate([request], key)
            except Exception as single:
                outputs.append(single)
        return outputs

    def _cache_bytes(self, rows: int, length: int) -> int:
        text = self.model.config.get_text_config(decoder=True)
        heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        return 2 * text.num_hidden_layers * heads * head_dim * rows * length * self.torch_dtype.itemsize

    def _static_cache(self, rows: int, length: int) -> Any:
        """The reusable static cache for `rows` rows holding at least `length` tokens, emptied. A cache is
        replaced only when a longer one is needed; the new length is a multiple of CACHE_LENGTH_STEP and at
        least the longest kept, so the shapes stay few. Least recently used caches of other row counts are
        dropped while the kept ones would exceed the cache budget."""
        from transformers import StaticCache

        kept = self._static_caches.pop(rows, None)
        if kept is not None and kept[0] >= length:
            self._static_caches[rows] = kept  # most recently used last
            kept[1].reset()
            return kept[1]
        if self.cache_budget is None and self.device.startswith("cuda"):
            self.cache_budget = int(
                self.cache_share * self._torch.cuda.mem_get_info(self._torch.device(self.device))[0]
            )
        longest = max((size for size, _ in self._static_caches.values()), default=0)
        size = -(-max(length, longest) // CACHE_LENGTH_STEP) * CACHE_LENGTH_STEP
        while (
            self._static_caches
            and self.cache_budget is not None
            and (
                sum(self._cache_bytes(r, n) for r, (n, _) in self._static_caches.items())
                + self._cache_bytes(rows, size)
                > self.cache_budget
            )
        ):
            self._static_caches.pop(next(iter(self._static_caches)))
        cache = StaticCache(config=self.model.config.get_text_config(decoder=True), max_cache_len=size)
        self._static_caches[rows] = (size, cache)
        self.cache_creations += 1
        return cache

    def _generate(self, requests: list[Request], key: GenKey) -> list[Result]:
        torch = self._torch
        started = time.monotonic()
        real_rows = len(requests)
        if self.decode != "dynamic":  # pad to the cache's row count with copies; their outputs are dropped
            requests = requests + [requests[-1]] * (padded_rows(real_rows) - real_rows)
        inputs = self.model_inputs([r.prompt for r in requests], [r.images for r in requests])
        sampling: dict[str, Any] = {}
        if key.do_sample:
            sampling = {
                k: v
                for k, v in (("temperature", key.temperature), ("top_p", key.top_p), ("top_k", key.top_k))
                if v is not None
            }
        if key.stop_seqs:
            sampling.update(stop_strings=list(key.stop_seqs), tokenizer=self.tokenizer)
        if self.end_ids - set(_as_list(self.model.generation_config.eos_token_id)):  # an end the checkpoint omits
            sampling["eos_token_id"] = sorted(self.end_ids)
        prompt_length = inputs["input_ids"].shape[1]
        input_tokens = inputs["attention_mask"].sum(dim=1).tolist()

        def on_device() -> Any:
            with torch.inference_mode():  # the cache's tensors are inference tensors: reset them in this mode
                on = inputs.to(self.device)  # a BatchFeature moves in place
                for name, tensor in on.items():
                    if torch.is_floating_point(tensor):
                        on[name] = tensor.to(self.torch_dtype)
                if self.decode != "dynamic":
                    sampling["past_key_values"] = self._static_cache(len(requests), prompt_length + key.max_new_tokens)
                    sampling["disable_compile"] = self.decode == "static"
                with sampling_rng(self.device, key.seed) if key.do_sample else nullcontext():
                    return self.model.generate(
                        **on,
                        max_new_tokens=key.max_new_tokens,
                        do_sample=key.do_sample,
                        pad_token_id=self.tokenizer.pad_token_id,
                        **sampling,
                    ).cpu()

        output = self._device_runner.submit(on_device).result() if self._device_runner else on_device()
        stops = self.stop_ids
        results = []
        for row, request in enumerate(requests[:real_rows]):
            new_tokens = output[row, prompt_length:].tolist()
            length = next((i for i, t in enumerate(new_tokens) if t in stops), len(new_tokens))
            text = self.tokenizer.decode(new_tokens[:length], skip_special_tokens=True)
            # generation ends a row at its first stop string, so a text holding one ended there, even on the
            # last token allowed
            stopped = any(stop in text for stop in key.stop_seqs)
            if not key.keep_stop:
                for stop in key.stop_seqs:
                    text = text.split(stop, 1)[0]
            results.append(
                Result(
                    text=text,
                    input_tokens=int(input_tokens[row]),
                    output_tokens=length,
                    hit_limit=length >= key.max_new_tokens and not stopped,
                    time=time.monotonic() - started,
                    token_ids=new_tokens[:length],
                )
            )
        return results


def special_strings(processor: Any) -> tuple[str, ...]:
    """Every string `processor` (its tokenizer, or the processor itself) would read as a special token, longest
    first (ties in a fixed order): what a prompt's text is neutralised against, at inference and in training."""
    tokenizer = processor.tokenizer
    found = {*tokenizer.all_special_tokens}
    found |= {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    found |= {getattr(processor, n, None) or "" for n in ("image_token", "video_token", "audio_token")}
    return tuple(sorted((t for t in found if len(t) > 1), key=lambda t: (-len(t), t)))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# torch's default random generators serve the whole process, one per device: a seeded call holds its device's
_RNG_LOCKS: dict[str, threading.Lock] = {}
_RNG_LOCKS_GUARD = threading.Lock()


@contextmanager
def sampling_rng(device: str, seed: int | None = None) -> Iterator[None]:
    """Seed torch's generators for one seeded sampled `generate` call (the CPU generator and the model's GPU's),
    held for that device alone and put back as they were afterwards (torch.random.fork_rng), so other code's
    random streams go on undisturbed. Unseeded (seed None): nothing to hold, so sampling without a seed never
    waits, on any device. Taken on the thread that runs the GPU work (the device thread for `graphs`), never
    around a wait for another thread."""
    import torch

    if seed is None:
        yield
        return
    with _RNG_LOCKS_GUARD:
        lock = _RNG_LOCKS.setdefault(device, threading.Lock())
    with lock:
        gpus = []
        if device.startswith("cuda"):
            index = torch.device(device).index
            gpus = [torch.cuda.current_device() if index is None else index]
        with torch.random.fork_rng(devices=gpus):
            torch.random.default_generator.manual_seed(seed)
            for gpu in gpus:
                with torch.cuda.device(gpu):
                    torch.cuda.manual_seed(seed)
            yield


_LOAD_LOCK = threading.Lock()  # held while a checkpoint loads
_DEVICE_THREADS: dict[str, ThreadPoolExecutor] = {}
_DEVICE_THREADS_LOCK = threading.Lock()  # its own lock: a loading checkpoint asks for its device's thread


def _device_thread(device: str) -> ThreadPoolExecutor:
    with _DEVICE_THREADS_LOCK:
        if device not in _DEVICE_THREADS:
            _DEVICE_THREADS[device] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=device)
        return _DEVICE_THREADS[device]


_LOADED: dict[tuple[Any, ...], LoadedVLM] = {}


def load_vlm(
    path: str,
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    batch_size: int = 16,
    batch_wait_ms: float = 20.0,
    decode: str = "dynamic",
    cache_share: float = 0.3,
    generation_config: str = "checkpoint",
) -> LoadedVLM:
    """Load a checkpoint once per process: roles naming the same one share its weights (one copy in memory), so
    they must ask for the same cache_share and generation_config (a PrerequisiteError names the difference);
    batch_size and batch_wait_ms set the first load's `batcher` (a role takes its own from batcher_for). `auto`
    is resolved first, so `device=auto` and the device it picks name one load."""
    device = _resolve_device(device)
    key = load_key(path, revision, device, dtype, trust_remote_code, decode)
    weights = dict(cache_share=cache_share, generation_config=generation_config)
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = LoadedVLM(
                path, revision, device, dtype, trust_remote_code, batch_size, batch_wait_ms, decode, **weights
            )
        loaded = _LOADED[key]
    loaded.check_shared_settings(path, weights)
    return loaded


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample `index` among several drawn for one seeded request (continue_assistant): derived
    from both by SHA-256, so the samples differ from one another and from any other seed's, run after run."""
    digest = hashlib.sha256(f"{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits: any torch seed


def _refuse_unsupported(config: GenerateConfig) -> None:
    """Settings this provider cannot honour fail the request, named, rather than being ignored."""
    asked = {
        "num_choices": (config.num_choices or 1) > 1,
        "best_of": (config.best_of or 1) > 1,
        "logprobs": bool(config.logprobs),
        "top_logprobs": config.top_logprobs is not None,
        "prompt_logprobs": config.prompt_logprobs is not None,
        "frequency_penalty": bool(config.frequency_penalty),
        "presence_penalty": bool(config.presence_penalty),
        "logit_bias": bool(config.logit_bias),
        "response_schema": config.response_schema is not None,
    }
    refused = [name for name, set_ in asked.items() if set_]
    if refused:
        raise RequestError(
            f"hfvlm returns one text choice per request, without logprobs, penalties or schemas; it cannot honour "
            f"{', '.join(refused)}"
        )


def gen_key(config: GenerateConfig, keep_stop: bool = False) -> GenKey:
    """The request's generation settings; settings no model could honour are a RequestError."""
    if config.max_tokens is not None and config.max_tokens < 1:
        raise RequestError(f"max_tokens must be at least 1, got {config.max_tokens}")
    if any(not isinstance(stop, str) or not stop for stop in config.stop_seqs or ()):
        raise RequestError(f"stop sequences must be non-empty strings, got {config.stop_seqs!r}")
    _refuse_unsupported(config)
    do_sample = config.temperature is not None and config.temperature > 0
    return GenKey(
        max_new_tokens=config.max_tokens or DEFAULT_MAX_NEW_TOKENS,
        do_sample=do_sample,
        temperature=config.temperature if do_sample else None,
        top_p=config.top_p if do_sample else None,
        top_k=config.top_k if do_sample else None,
        seed=config.seed if do_sample else None,  # greedy decoding draws nothing
        stop_seqs=tuple(config.stop_seqs or ()),
        keep_stop=keep_stop,
    )


def check_model_location(location: str) -> None:
    """A location that can only be a local folder must exist (transformers would call it a bad repo id).

    A hub id has the form `org/name`; anything absolute, starting with `.` or `~`, or with more than one
    `/` is a path. Raised as Inspect's PrerequisiteError: one line, no traceback.
    """
    path = Path(location).expanduser()
    looks_local = location.startswith(("/", ".", "~")) or location.count("/") > 1
    if looks_local and not path.is_dir():
        raise PrerequisiteError(
            f"hfvlm/{location}: no such model folder. Give an existing local folder (a saved checkpoint with "
            "config.json) or a hub id org/name; `vlmguard-eval build-tiny-vlm PATH` writes the tiny test model"
        )


class TransformersVLM(ModelAPI):
    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        model_path: str | None = None,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        batch_size: int = 16,
        batch_wait_ms: float = 20.0,
        chat_template: str | None = None,
        decode: str = "dynamic",
        cache_share: float = 0.3,
        generation_config: str = "checkpoint",
        **unknown: Any,
    ) -> None:
        config = GenerateConfig() if config is None else config  # never a shared default: it is set below
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)
        if unknown:
            raise ValueError(
                f"hfvlm does not take model args {sorted(unknown)}; it takes model_path, revision, device, "
                "dtype, trust_remote_code, batch_size, batch_wait_ms, chat_template, decode, cache_share, "
                "generation_config"
            )
        # `llava_v1` (the original LLaVA conversation template) or a jinja file; None: the processor's own
        self.chat_template = resolve_chat_template(chat_template)
        check_model_location(model_path or model_name)
        self.vlm = load_vlm(
            model_path or model_name,
            revision,
            device,
            dtype,
            bool(trust_remote_code),
            int(batch_size),
            float(batch_wait_ms),
            str(decode),
            float(cache_share),
            str(generation_config),
        )
        # this role's own batch settings: a batcher of its own unless another role asked alike
        self.batch_settings = (int(batch_size), float(batch_wait_ms))
        self.batcher = self.vlm.batcher_for(*self.batch_settings)
        # Inspect's connection pools default to adaptive concurrency, made to learn a remote API's rate limit: it
        # starts every pool at 20 requests in flight, whatever max_connections() says, and grows only after clean
        # rounds, so a first burst of 32 ran as batches of 20 and 12. A local model has no rate limit to learn:
        # unless the user set max_connections or adaptive_connections, take Inspect's static path, which holds
        # max_connections() below (and makes it a local target's default max_samples). `config` is the very
        # object get_model makes this model's Model.config, which is what Inspect reads for both (models named
        # together in one `inspect eval --model a,b` share that object, so all take the static path there; our grid and
        # `run` resolve each model with a config of its own).
        if config.max_connections is None and config.adaptive_connections is None:
            config.adaptive_connections = False
        # Inspect looks up each model event's name for a context window (its live session's usage chip); a name
        # it does not know, it resolves by building the provider anew with default args, which would load a
        # second copy of these weights. Registering the name answers the lookup from what is loaded.
        set_model_info(f"hfvlm/{model_name}", ModelInfo(context_length=self.vlm.context_length))

    def max_connections(self) -> int:
        """Two batches in flight: the next batch fills while one runs, so the model never waits for Inspect.
        As a target's default max_samples it lets the samples of a defended run (rewriter, target, then judge,
        each a model of its own) keep two full batches moving through the three models."""
        return 2 * self.batcher.max_batch

    def connection_key(self) -> str:
        """One connection pool per batcher (checkpoint load, batch_size, batch_wait_ms): roles sharing a batcher
        share its pool and every other hfvlm model has its own (Inspect's default key put all in one pool)."""
        batch_size, batch_wait_ms = self.batch_settings
        return "|".join(map(str, self.vlm.load_key)) + f"|batch_size={batch_size}|batch_wait_ms={batch_wait_ms:g}"

    async def generate(
        self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice, config: GenerateConfig
    ) -> ModelOutput:
        if tools:
            raise ValueError("hfvlm does not support tool calls")
        key = gen_key(config)
        prompt, images, neutralised = self.vlm.prepare(input, self.chat_template)
        result = await self.batcher.submit(Request(prompt, images, key))
        # the checkpoint asks for sampling but the request left temperature unset: decoded greedily (our default)
        overridden = config.temperature is None and self.vlm.checkpoint_samples
        return self._output(result, key, neutralised, sampling_overridden=overridden)

    def _output(
        self, result: Result, key: GenKey, neutralised: int = 0, sampling_overridden: bool = False
    ) -> ModelOutput:
        output = ModelOutput.from_content(
            model=self.model_name, content=result.text, stop_reason="max_tokens" if result.hit_limit else "stop"
        )
        metadata: dict[str, Any] = {}
        if neutralised:  # recorded: the model saw these strings as text, not as special tokens
            metadata["neutralised_special_tokens"] = neutralised
        if checkpoint := self.vlm.applied_checkpoint_settings(key):  # recorded: they steered this output
            metadata["checkpoint_generation_config"] = checkpoint
        if sampling_overridden:  # recorded: greedy, where the checkpoint's generation_config says do_sample=True
            metadata["checkpoint_sampling_overridden"] = True
        output.metadata = metadata or None
        output.usage = ModelUsage(
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            total_tokens=result.input_tokens + result.output_tokens,
        )
        output.time = result.time
        return output

    async def continue_assistant(
        self, input: list[ChatMessage], prefix: str, n: int, config: GenerateConfig
    ) -> list[Result]:
        """White-box decoding for defenses such as ETA: `n` samples continuing an assistant turn that
        starts with `prefix`, stop strings kept in the text. Goes through this role's batcher. With a seed,
        sample i is drawn with sample_seed(seed, i): the n samples differ, and each is the same in every
        run (each runs in a `generate` call of its own, as every seeded sampled request does)."""
        key = gen_key(config, keep_stop=True)
        keys = [key] * n
        if key.seed is not None:
            keys = [dataclasses.replace(key, seed=sample_seed(key.seed, index)) for index in range(n)]
        prompt, images = self.vlm.render(input, self.chat_template)
        return list(await asyncio.gather(*(self.batcher.submit(Request(prompt + prefix, images, k)) for k in keys)))
