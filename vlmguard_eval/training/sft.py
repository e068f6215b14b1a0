"""Supervised fine-tuning of the rewriter with TRL's SFTTrainer (vision-language, prompt-completion).

Each row is `{"images": [image], "prompt": <the rewriter's inference input>, "completion": <its
trained output>}`. Training feeds the model what the local provider (`hfvlm`) feeds it at inference:
- the prompt is built by the inference path itself (`rewriter.rewriter_messages`, turned into
  chat-template dicts by `models.local_vlm.to_hf_messages` with the processor's special-token strings),
  so one system prompt and one user turn go through the model's own chat template, and a special-token
  string in the user's text ("</s>", "<image>", a role marker) is broken by an invisible joiner;
- the completion gets the same neutralisation: at inference the rewriter's output is plain decoded text,
  so a teacher's "</s>" must not become a real end-of-sequence label (nor "<image>" an image slot);
- each image is read by `core.messages.read_image`, the provider's own decoder (the same size bounds,
  PIL's RGB conversion of a transparent or palette image, no EXIF rotation).
Every neutralised string and every dropped example is counted in OUTPUT_DIR/data_report.json.
TRL's collator processes each example once per visit (no cached tokenized copy) and puts the loss
on the completion tokens only (`completion_only_loss`, TRL's default for prompt-completion rows).
It is handed text we render ourselves (the prompt exactly as `LoadedVLM.prepare` renders it), and its
batch gets the BOS rule of `models.chat_templates` (one BOS where the tokenizer adds one), so the prompt's
token ids are the ones `hfvlm` feeds the model at inference.

Arguments are TRL's own: `TrlParser((RewriterDataArguments, SFTConfig, ModelConfig))`, so every
SFTConfig / ModelConfig flag and `--config FILE.yaml` work; launches are TRL's / accelerate's
(`accelerate launch --config_file trl/accelerate_configs/zero3.yaml -m vlmguard_eval.cli train ...`,
or `torchrun`). Before any model is loaded, every line of the data is checked (a malformed one is
named by file and line); before training, every example is built once by the training collator: one
it cannot build (an unreadable image, say) is named by line, and one longer than `--max_length` is
named up front (an error, or dropped with a warning under `--skip_overlong`), never truncated
mid-image during training. `--resume` continues from the newest readable `checkpoint-*` (an
unreadable one is skipped with a warning). The final checkpoint, LoRA merged, is saved as
safetensors with its processor in OUTPUT_DIR/final: `hfvlm/<output_dir>/final` serves as the
`rewriter` role.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmguard_eval.core.messages import read_image
from vlmguard_eval.models.chat_templates import tokenizer_bos_id, with_bos
from vlmguard_eval.models.local_vlm import as_data, special_strings, system_as_text, to_hf_messages, wants_system_text
from vlmguard_eval.rewriter.prompts import rewriter_messages

logger = logging.getLogger(__name__)

# LoRA on the language model's projections only (the vision tower stays frozen), unless
# --lora_target_modules says otherwise
DEFAULT_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
REQUIRED_FIELDS = ("image", "prompt", "completion")
# dataset columns kept for our own reports, removed before the trainer sees the rows
BOOKKEEPING_COLUMNS = ("line", "neutralised_prompt", "neutralised_completion")
DATA_REPORT = "data_report.json"


@dataclass
class RewriterDataArguments:
    """Our arguments beside TRL's SFTConfig and ModelConfig."""

    data: str = field(metadata={"help": "a `vlmguard-eval synth` output folder (its sft.jsonl) or an sft.jsonl"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest readable checkpoint"})
    skip_overlong: bool = field(
        default=False,
        metadata={"help": "drop examples longer than --max_length (named in a warning) instead of failing"},
    )


class TrainingDataError(ValueError):
    """Training data that cannot be used, naming file and line of every problem."""


def _placeholder_image_uri() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def rewriter_prompt(user_text: str, specials: tuple[str, ...]) -> tuple[list[dict[str, Any]], int]:
    """The rewriter's inference input for one image and `user_text`, as chat-template dicts, and how many
    special-token strings in it were neutralised: exactly what the local provider renders at inference
    (`LoadedVLM.prepare` passes the processor's `special_strings`; the image becomes an `{"type": "image"}` slot)."""
    from inspect_ai.model import ContentImage

    placeholder = [ContentImage(image=_placeholder_image_uri())]
    messages, _, neutralised = to_hf_messages(rewriter_messages(placeholder, user_text), specials)
    return messages, neutralised


def data_file(data: str | Path) -> Path:
    """The sft.jsonl that `--data` names (a `vlmguard-eval synth` output folder, or the file itself)."""
    path = Path(data)
    return path / "sft.jsonl" if path.is_dir() else path


def load_records(data: str | Path, max_errors: int = 20) -> list[dict[str, Any]]:
    """The SFT records of `data`, each with its `line`; every bad line is named (file and line) in one error."""
    path = data_file(data)
    try:
        raw = path.read_bytes()
    except OSError as ex:
        raise TrainingDataError(f"{path}: cannot read: {ex}") from None
    records, problems = [], []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as ex:
            problems.append(f"{path}:{number}: not valid UTF-8 at byte {ex.start}")
            continue
        except json.JSONDecodeError as ex:
            problems.append(f"{path}:{number}: not valid JSON: {ex}")
            continue
        if not isinstance(record, dict):
            problems.append(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            continue
        missing = [k for k in REQUIRED_FIELDS if not isinstance(record.get(k), str) or not record[k].strip()]
        if missing:
            problems.append(f"{path}:{number}: field(s) {', '.join(missing)} missing, empty or not text")
            continue
        invalid = [k for k in REQUIRED_FIELDS if not _valid_unicode(record[k])]
        if invalid:  # a lone surrogate (a JSON escape) can be neither tokenized nor neutralised
            problems.append(f"{path}:{number}: field(s) {', '.join(invalid)} not valid Unicode text")
            continue
        image = Path(record["image"])
        image = image if image.is_absolute() else path.parent / image
        if not image.is_file():
            problems.append(f"{path}:{number}: field 'image': file not found: {image}")
            continue
        records.append({**record, "image": str(image), "line": number})
    if problems:
        shown = "\n".join(problems[:max_errors])
        more = f"\n... and {len(problems) - max_errors} more" if len(problems) > max_errors else ""
        raise TrainingDataError(f"{len(problems)} bad line(s) in the training data:\n{shown}{more}")
    if not records:
        raise TrainingDataError(f"{path}: no SFT records")
    return records


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def sft_dataset(records: list[dict[str, Any]], specials: tuple[str, ...]) -> Any:  # -> datasets.Dataset
    """TRL's vision prompt-completion rows, prompt and completion text neutralised against `specials` (the
    processor's `special_strings`) as inference does, with how many strings each had. Images stay file
    paths: `TrainingCollator` reads them as inference does when a batch is built."""
    import datasets

    rows = []
    for record in records:
        prompt, in_prompt = rewriter_prompt(record["prompt"], specials)
        completion, in_completion = as_data(record["completion"], specials)
        rows.append(
            {
                "images": [record["image"]],
                "prompt": prompt,
                "completion": [{"role": "assistant", "content": [{"type": "text", "text": completion}]}],
                "line": record["line"],
                "neutralised_prompt": in_prompt,
                "neutralised_completion": in_completion,
            }
        )
    return datasets.Dataset.from_list(rows)


def _strip_nulls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Arrow gives every content part every key (text: None on an image slot); drop the empty ones."""
    return [
        {**m, "content": [{k: v for k, v in part.items() if v is not None} for part in m["content"]]} for m in messages
    ]


class TrainingCollator:
    """TRL's vision collator, fed each example as the local provider feeds the model at inference: its image
    read by `core.messages.read_image` (not datasets' decoder, which keeps an alpha channel for the processor
    to composite and applies EXIF rotation), its prompt rendered by the processor's chat template exactly as
    `LoadedVLM.prepare` renders it, and the batch given the provider's BOS rule (`with_bos`).

    TRL tokenizes prompt and completion with add_special_tokens=False "to avoid adding the BOS twice", so a
    checkpoint whose tokenizer adds a BOS (LLaVA-1.5's) would train with none and be served with one; the BOS
    goes in as an id after TRL's collation, as at inference (as text it would retokenize the first word of a
    Llama prompt). TRL's output is flushed left, so the BOS takes the front of each row, labelled -100."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.processor = collator.processor
        self.bos_id = tokenizer_bos_id(self.processor.tokenizer)
        self.system_text = wants_system_text(self.processor)  # the system message's form `prepare` gives it

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.collator([self.example(e) for e in examples])
        batch = with_bos(batch, self.bos_id, self.processor.tokenizer.pad_token_id, "right")
        max_length = getattr(self.collator, "max_length", None)
        shape = tuple(batch["input_ids"].shape)
        if max_length is not None and shape[1] > max_length:  # TRL's truncation, counting the BOS
            for key, tensor in list(batch.items()):
                if torch.is_tensor(tensor) and not tensor.is_floating_point() and tuple(tensor.shape[:2]) == shape:
                    batch[key] = tensor[:, :max_length]
        return batch

    def example(self, row: dict[str, Any]) -> dict[str, Any]:
        messages = _strip_nulls(row["prompt"])
        if self.system_text:
            messages = [system_as_text(message) for message in messages]
        prompt, completion = render_prompt_completion(self.processor, messages, _strip_nulls(row["completion"]))
        return {"images": [read_image(path) for path in row["images"]], "prompt": prompt, "completion": completion}


def render_prompt_completion(
    processor: Any, prompt: list[dict[str, Any]], completion: list[dict[str, Any]]
) -> tuple[str, str]:
    """The prompt as inference renders it (add_generation_prompt) and the completion as the rest of the whole
    conversation's rendering. TRL would cut the prompt to the common prefix of the two renderings, silently
    training on a prompt inference never sends; a template whose whole rendering does not start with the
    prompt's is an error here instead."""
    rendered = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    whole = processor.apply_chat_template(prompt + completion, add_generation_prompt=False, tokenize=False)
    if not whole.startswith(rendered):
        at = next((i for i, (a, b) in enumerate(zip(rendered, whole, strict=False)) if a != b), len(whole))
        raise ValueError(
            "the chat template renders the prompt with the reply differently from the prompt alone (they part at "
            f"character {at}: {rendered[at : at + 40]!r} vs {whole[at : at + 40]!r}), so training could not "
            "give the prompt inference gives; use a template whose assistant turn extends the generation prompt"
        )
    return rendered, whole[len(rendered) :]


def training_collator(processor: Any) -> TrainingCollator:
    """The training collator with no truncation (`train` wraps SFTTrainer's own collator the same way)."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    return TrainingCollator(
        DataCollatorForVisionLanguageModeling(processor, max_length=None, completion_only_loss=True)
    )


def example_lengths(dataset: Any, processor: Any, source: str = "training data") -> list[int]:
    """Each example's full token count, measured by the training collator with no truncation; an example it
    cannot build is named by line (every one of them, in one error)."""
    measure = training_collator(processor)
    lengths, problems = [], []
    for row in dataset:
        try:
            lengths.append(int(measure([row])["input_ids"].shape[1]))
        except Exception as ex:  # the processor and image decoders raise many types
            problems.append(f"{source}:{row['line']}: {type(ex).__name__}: {str(ex)[:300]}")
    if problems:
        shown = "\n".join(problems[:20]) + (f"\n... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise TrainingDataError(f"{len(problems)} example(s) the training collator cannot build:\n{shown}")
    return lengths


def check_examples(dataset: Any, processor: Any, max_length: int | None, skip: bool, source: str) -> Any:
    """Build every example once with the training collator before training: one that cannot be built is an
    error naming its line; one longer than `max_length` is an error, or (with `skip`) a warning and dropped."""
    lengths = example_lengths(dataset, processor, source)
    if max_length is None:
        return dataset
    over = [(line, n) for line, n in zip(dataset["line"], lengths, strict=True) if n > max_length]
    if not over:
        return dataset
    listed = ", ".join(f"line {line} ({n} tokens)" for line, n in over[:20]) + (" ..." if len(over) > 20 else "")
    message = f"{source}: {len(over)} example(s) longer than max_length {max_length}: {listed}"
    if not skip:
        raise TrainingDataError(message + " (raise --max_length, or pass --skip_overlong to drop them)")
    logger.warning("%s: dropped (--skip_overlong)", message)
    keep = [i for i, n in enumerate(lengths) if n <= max_length]
    if not keep:
        raise TrainingDataError(f"{source}: every example is longer than max_length {max_length}")
    return dataset.select(keep)


def data_report(records: list[dict[str, Any]], dataset: Any, specials: tuple[str, ...], source: str) -> dict:
    """What training made of the data: examples trained on, dropped by reason (with their lines), and the
    special-token strings neutralised in prompts and completions (examples touched, strings broken)."""
    kept = set(dataset["line"])
    overlong = [r["line"] for r in records if r["line"] not in kept]

    def neutralised(column: str) -> dict[str, Any]:
        counts = [(line, n) for line, n in zip(dataset["line"], dataset[column], strict=True) if n]
        return {"examples": len(counts), "strings": sum(n for _, n in counts), "lines": [line for line, _ in counts]}

    return {
        "data": source,
        "records": len(records),
        "trained": len(dataset),
        "dropped": {"overlong": {"examples": len(overlong), "lines": overlong}} if overlong else {},
        "special_strings": list(specials),
        "neutralised": {
            "prompt": neutralised("neutralised_prompt"),
            "completion": neutralised("neutralised_completion"),
        },
    }


def _readable_checkpoint(folder: Path) -> str | None:
    """Why `folder` cannot be resumed from, or None when it can."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        if not isinstance(state, dict) or "global_step" not in state:
            return "trainer_state.json has no global_step"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as ex:
        return f"trainer_state.json unreadable: {ex}"
    weights = [folder / n for n in ("model.safetensors", "adapter_model.safetensors") if (folder / n).is_file()]
    weights += sorted(folder.glob("model-*.safetensors"))
    if not weights:
        return "no safetensors weights"
    from safetensors import safe_open

    for file in weights:
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as ex:  # safetensors raises its own error types for bad headers
            return f"{file.name} unreadable: {ex}"
    return None


def resume_checkpoint(output_dir: Path) -> str | None:
    """The newest readable checkpoint-N under `output_dir`; unreadable newer ones are skipped with a warning."""
    found = []
    for folder in output_dir.glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", folder.name)
        if match and folder.is_dir():
            found.append((int(match.group(1)), folder))
    for _, folder in sorted(found, reverse=True):
        problem = _readable_checkpoint(folder)
        if problem is None:
            return str(folder)
        logger.warning("skipping checkpoint %s: %s", folder, problem)
    return None


def parse_arguments(argv: list[str] | None) -> tuple[RewriterDataArguments, Any, Any]:
    from trl import ModelConfig, SFTConfig, TrlParser

    parser = TrlParser((RewriterDataArguments, SFTConfig, ModelConfig), prog="vlmguard-eval train")
    data_args, sft_args, model_args = parser.parse_args_and_config(args=argv)
    return data_args, sft_args, model_args


def train(data_args: RewriterDataArguments, sft_args: Any, model_args: Any) -> Path:
    """Fine-tune with SFTTrainer; checkpoints under OUTPUT_DIR, the merged final rewriter in OUTPUT_DIR/final."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, set_seed
    from trl import SFTTrainer, get_peft_config

    if model_args.model_name_or_path is None:
        raise ValueError("--model_name_or_path is required (the base VLM: a local folder or a hub id)")
    if getattr(model_args, "trust_remote_code", False):
        raise ValueError("trust_remote_code is off in this project: use a model transformers supports natively")
    records = load_records(data_args.data)  # fails on a bad line before anything heavy is loaded
    set_seed(sft_args.seed)
    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    specials = special_strings(processor)
    dataset = sft_dataset(records, specials)
    source = str(data_file(data_args.data))
    dataset = check_examples(dataset, processor, sft_args.max_length, data_args.skip_overlong, source)
    report = data_report(records, dataset, specials, source)
    if report["neutralised"]["completion"]["examples"]:
        logger.warning(
            "%s: special-token strings in %d completion(s) trained as plain text, as the rewriter writes them at "
            "inference (lines in %s)",
            source,
            report["neutralised"]["completion"]["examples"],
            DATA_REPORT,
        )
    dtype = model_args.dtype if model_args.dtype not in (None, "auto") else None
    if dtype is None:
        dtype = torch.bfloat16 if sft_args.bf16 and torch.cuda.is_available() else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        dtype=dtype,
        attn_implementation=model_args.attn_implementation,
        use_safetensors=True,
    )
    peft_config = get_peft_config(model_args)
    if peft_config is not None and peft_config.target_modules is None:
        peft_config.target_modules = DEFAULT_LORA_TARGETS
    sft_args.remove_unused_columns = False  # the collator reads images/prompt/completion itself
    trainer = SFTTrainer(
        model=model,
        args=sft_args,
        train_dataset=dataset.remove_columns(list(BOOKKEEPING_COLUMNS)),
        processing_class=processor,
        peft_config=peft_config,
    )
    trainer.data_collator = TrainingCollator(trainer.data_collator)  # TRL's collator, built with all its settings
    output_dir = Path(sft_args.output_dir)
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / DATA_REPORT).write_text(json.dumps(report, indent=1), encoding="utf-8")
    resume = resume_checkpoint(output_dir) if data_args.resume else None
    if data_args.resume and resume is None:
        logger.warning("--resume: no readable checkpoint in %s; starting from the base model", output_dir)
    trainer.train(resume_from_checkpoint=resume)
    final = output_dir / "final"
    if trainer.is_world_process_zero():
        merged = trainer.model.merge_and_unload() if peft_config is not None else trainer.model
        merged.save_pretrained(final, safe_serialization=True)
        processor.save_pretrained(final)
        (output_dir / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    trainer.accelerator.wait_for_everyone()
    return final


def main(argv: list[str] | None = None) -> Path:
    return train(*parse_arguments(argv))


if __name__ == "__main__":
    print(main())
