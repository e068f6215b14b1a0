"""Conversation templates a target can be rendered with instead of its processor's own (`-M chat_template=`).

`llava_v1` is the original LLaVA conversation template (haotian-liu/LLaVA, `llava/conversation.py`,
`conv_llava_v1` at lines 325-335, key "llava_v1" at line 387; `get_prompt`, SeparatorStyle.TWO, lines
54-63): the system text below (a fixed input, exact), then `USER: ` and `ASSISTANT: ` turns, a space
after a user turn and `</s>` after an assistant turn, `<image>\\n` before the question, and an open
`ASSISTANT:` for the reply. VLGuard, ECSO, MLLM-Protector and ETA evaluated LLaVA-1.5 with it; the
HF checkpoint `llava-hf/llava-1.5-7b-hf` renders the same turns with no system text. LLaVA has one
system slot: a defense's system message replaces this text, as it would in the original code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

# jinja as HF renders chat templates (trim_blocks, lstrip_blocks); content is a list of typed parts
LLAVA_V1 = (
    "{%- set ns = namespace(system='" + LLAVA_V1_SYSTEM.replace("'", "\\'") + "') -%}"
    "{%- set loop_messages = messages -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set ns.system = messages[0]['content'] if messages[0]['content'] is string"
    " else messages[0]['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- endif -%}"
    "{{ ns.system }}{{ ' ' }}"
    "{%- for message in loop_messages -%}"
    "{%- if message['content'] is string -%}{%- set text = message['content'] -%}{%- set images = 0 -%}"
    "{%- else -%}"
    "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') -%}"
    "{%- set images = message['content'] | selectattr('type', 'equalto', 'image') | list | length -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{{ 'ASSISTANT: ' + text + '</s>' }}"
    "{%- else -%}{{ 'USER: ' }}{{ '<image>\\n' * images }}{{ text + ' ' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)

NAMED_TEMPLATES = {"llava_v1": LLAVA_V1}


def resolve_chat_template(name_or_path: str | None) -> str | None:
    """The jinja text of a named template or a template file; None keeps the processor's own."""
    if not name_or_path:
        return None
    if name_or_path in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(
            f"chat_template {name_or_path!r} is neither a known template {sorted(NAMED_TEMPLATES)} nor a file"
        )
    return path.read_text(encoding="utf-8")


# One BOS rule for every prompt this project tokenizes, at inference (hfvlm, ETA's sampler, the benches) and in
# training (TRL's collator): a rendered prompt's ids start with exactly one BOS when the checkpoint's tokenizer adds
# one by default, whether or not the chat template renders it, and with none when it adds none (unless the
# template renders it). The text is tokenized with add_special_tokens=False (as TRL's collator does, "to avoid
# adding the BOS twice", and as Mllama's model card does, its template rendering `{{- bos_token }}`) so the tokenizer
# adds no EOS or other special token either; the BOS is then put in as an id. Not as text: a Metaspace tokenizer
# with prepend_scheme="first" (what transformers 5 builds for a LlamaTokenizer with legacy=False, LLaVA-1.5's) gives
# the first word no "▁" after a special token read from text, so "<s>USER" is not the ids of BOS + "USER".
PROBE_TEXT = "Hello"


def tokenizer_bos_id(tokenizer: Any) -> int | None:
    """The BOS id `tokenizer` puts in front of text by default (LLaVA-1.5's Llama tokenizer, Mllama's, Gemma's),
    or None where it adds none (Qwen's). Probed, not read from a flag: what counts is what encoding does."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    added = tokenizer(PROBE_TEXT, add_special_tokens=True)["input_ids"]
    plain = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    return bos if added[:1] == [bos] and plain[:1] != [bos] else None


def with_bos(batch: Any, bos_id: int | None, pad_id: int | None, padding_side: str) -> Any:
    """`batch` (a processor's or TRL's collator's output, tokenized without special tokens) with `bos_id` put in
    front of each row's first token, unless the row already starts with it (the template rendered it): one
    column more, every sequence-aligned integer tensor (ids, masks, labels, token types) widened alike; a row
    that needs no BOS gets a pad on its `padding_side`. Nothing changes when `bos_id` is None."""
    import torch

    if bos_id is None:
        return batch
    ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    rows, length = ids.shape
    has_tokens = mask.any(dim=1)
    first = torch.where(has_tokens, mask.long().argmax(dim=1), length if padding_side == "left" else 0).tolist()
    needs = [not (has_tokens[r] and int(ids[r, first[r]]) == bos_id) for r in range(rows)]
    if not any(needs):
        return batch
    at_bos = {"input_ids": bos_id, "attention_mask": 1, "labels": -100}  # other keys (token types): 0, text
    at_pad = {"input_ids": 0 if pad_id is None else pad_id, "attention_mask": 0, "labels": -100}
    for key, tensor in list(batch.items()):
        if not torch.is_tensor(tensor) or torch.is_floating_point(tensor) or tuple(tensor.shape[:2]) != (rows, length):
            continue
        widened = []
        for r in range(rows):
            row = tensor[r]
            if needs[r]:
                cell = torch.full_like(row[:1], at_bos.get(key, 0))
                widened.append(torch.cat([row[: first[r]], cell, row[first[r] :]]))
            else:
                cell = torch.full_like(row[:1], at_pad.get(key, 0))
                widened.append(torch.cat([cell, row] if padding_side == "left" else [row, cell]))
        batch[key] = torch.stack(widened)
    return batch


def prompt_inputs(
    processor: Any, prompts: list[str], images: list[list[Any]] | None, bos_id: int | None, **kwargs: Any
) -> Any:
    """The model inputs (left padded) for rendered prompts and their images, under the BOS rule above; `bos_id`
    is tokenizer_bos_id(processor.tokenizer), probed once by the caller. `images` holds one list per prompt (empty
    for a text-only one): Gemma-3's, Mllama's and SmolVLM's processors need images nested by prompt to batch,
    and LLaVA's, LLaVA-NeXT's, Idefics3's and Qwen2-VL's accept it; no image at all is None."""
    if images is not None and len(images) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} image lists: give one list per prompt")
    inputs = processor(
        text=prompts,
        images=[list(own) for own in images] if images and any(images) else None,
        return_tensors="pt",
        padding=True,
        padding_side="left",
        add_special_tokens=False,
        **kwargs,
    )
    return with_bos(inputs, bos_id, processor.tokenizer.pad_token_id, "left")
