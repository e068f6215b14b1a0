"""Sentence-by-sentence sampling on a local target, for ETA's guided decoding (white-box).

ETA (DripNowhy/ETA, `generate/eta_generation.py:148-238`) works on token ids: the prompt ids, then
the ids of its forced prefix (tokenised on their own, BOS dropped: `:649-660`), then the committed
answer; each candidate sentence is sampled from top-k logits at a temperature, and ends when the
token of "." (Llama id 29889, `:184-187`) or EOS is sampled (`base_class.py:257-259`), or at the
per-sentence cap. Working on ids (never re-tokenising decoded text) keeps every candidate a
continuation of exactly the committed tokens.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from inspect_ai.model import ChatMessage

SentenceEnd = Literal["eos", "period", "cap"]


@dataclass
class Sentence:
    ids: list[int]  # the new tokens, the end token (EOS or ".") included
    end: SentenceEnd


def split_sentence(new_ids: list[int], eos_id: int | Collection[int], period_id: int, cap: int) -> Sentence:
    """The first sentence of freshly sampled ids: up to and including the first end-of-turn token (`eos_id`: one
    id, or every id that ends the model's turn) or "." token, else the first `cap` ids (generation pads finished
    rows after their end token)."""
    ends = {eos_id} if isinstance(eos_id, int) else set(eos_id)
    for index, token in enumerate(new_ids[:cap]):
        if token in ends:
            return Sentence(new_ids[: index + 1], "eos")
        if token == period_id:
            return Sentence(new_ids[: index + 1], "period")
    return Sentence(new_ids[:cap], "cap")


class SentenceSampler:
    """One prompt (rendered, images encoded) plus a forced prefix, from which candidate sentences are sampled."""

    def __init__(self, vlm: Any, input: list[ChatMessage], prefix: str, chat_template: str | None = None) -> None:
        self.vlm = vlm
        tokenizer = vlm.tokenizer
        prompt, images = vlm.render(input, chat_template)
        self.inputs = vlm.model_inputs([prompt], [images])  # the BOS rule of every hfvlm prompt
        self.prefix_ids: list[int] = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        self.eos_id: int = tokenizer.eos_token_id
        # every id that ends the target's turn, as its own generation stops (the checkpoint's EOS list: Gemma-3's
        # <end_of_turn>, Llama-3's <|eot_id|>), not only the tokenizer's EOS; the pad is not an end
        self.end_ids: list[int] = sorted(vlm.end_ids)
        self.period_id: int = tokenizer.convert_tokens_to_ids(".")
        if self.period_id is None or self.period_id == tokenizer.unk_token_id:
            raise ValueError("the target's tokenizer has no '.' token, which ends a sentence in ETA's decoding")

    def text(self, committed: list[int]) -> str:
        """The answer so far as ETA decodes it: prefix and committed ids, special tokens skipped, stripped."""
        return self.vlm.tokenizer.decode(self.prefix_ids + committed, skip_special_tokens=True).strip()

    def sentence_text(self, sentence: Sentence) -> str:
        return self.vlm.tokenizer.decode(sentence.ids, skip_special_tokens=True).strip()

    def sample(self, committed: list[int], n: int, cap: int, top_k: int, temperature: float) -> list[Sentence]:
        """`n` candidate sentences continuing prompt + prefix + `committed` (top-k, temperature, no top-p)."""
        torch = self.vlm._torch
        device = self.vlm.device
        ids = torch.cat([self.inputs["input_ids"], torch.tensor([self.prefix_ids + committed])], dim=1).to(device)
        extra = {
            name: tensor.to(device=device, dtype=self.vlm.torch_dtype if torch.is_floating_point(tensor) else None)
            for name, tensor in self.inputs.items()
            if name not in ("input_ids", "attention_mask")
        }
        # the model to itself (no batch of the target's meanwhile); unseeded, so torch's generators as they are
        with self.vlm.run_lock, torch.inference_mode():
            output = self.vlm.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                **extra,
                do_sample=True,
                top_k=top_k,
                top_p=1.0,
                temperature=temperature,
                repetition_penalty=1.0,
                max_new_tokens=cap,
                num_return_sequences=n,
                eos_token_id=[*self.end_ids, self.period_id],  # replaces the checkpoint's list: it holds it all
                pad_token_id=self.vlm.tokenizer.pad_token_id,
            )
        start = ids.shape[1]
        return [split_sentence(row[start:].tolist(), self.end_ids, self.period_id, cap) for row in output]
