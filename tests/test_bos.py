"""One BOS rule for every prompt, at inference and in training: a prompt's ids start with exactly one BOS when the
checkpoint's tokenizer adds one by default, whether or not its chat template renders one, none when neither does,
never two, and no EOS; training's prompt ids are the provider's, for the same rewriter request and image."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from inspect_ai.model import ChatMessageUser, ContentImage, ContentText, GenerateConfig

from tests.helpers import png_bytes
from vlmguard_eval.models.local_vlm import LoadedVLM, Request, gen_key, load_vlm

BOS, EOS = 1, 2  # the tiny tokenizer's "<s>" and "</s>"
# (what the tokenizer adds to a text, whether the template renders `bos_token`) -> BOS tokens the prompt starts with
CASES = {
    "tokenizer adds BOS, template none": ("<s> $A", False, 1),
    "tokenizer adds BOS and EOS, template none": ("<s> $A </s>", False, 1),
    "tokenizer adds BOS, template renders it": ("<s> $A", True, 1),
    "tokenizer adds none, template none": (None, False, 0),
    "tokenizer adds none, template renders BOS": (None, True, 1),
}
_BUILT: dict[str, Path] = {}


def model_dir(case: str, root: Path) -> Path:
    from vlmguard_eval.models.tiny import build_tiny_vlm

    if case not in _BUILT:
        added, template_bos, _ = CASES[case]
        _BUILT[case] = build_tiny_vlm(root / case.replace(" ", "-"), added_specials=added, template_bos=template_bos)
    return _BUILT[case]


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bos")


def image_uri(color: tuple[int, int, int] = (120, 30, 30)) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(color)).decode()


def generated_inputs(vlm: LoadedVLM, prompts: list[tuple[str, list[Any]]], monkeypatch) -> dict[str, Any]:
    """What the provider's batch hands `generate` for these (prompt, images) requests, run as one call."""
    seen: dict[str, Any] = {}
    generate = vlm.model.generate

    def spy(**kwargs: Any) -> Any:
        seen.update(kwargs)
        return generate(**kwargs)

    key = gen_key(GenerateConfig(max_tokens=1, temperature=0.0))
    with monkeypatch.context() as patch:  # undone at once: a later call spies on the model's own generate
        patch.setattr(vlm.model, "generate", spy)
        results = vlm.run_batch([Request(prompt, images, key) for prompt, images in prompts])
    assert not [r for r in results if isinstance(r, Exception)]
    return seen


def question(text: str = "What is this?", color: tuple[int, int, int] = (120, 30, 30)) -> list[ChatMessageUser]:
    return [ChatMessageUser(content=[ContentImage(image=image_uri(color)), ContentText(text=text)])]


@pytest.mark.parametrize("case", list(CASES))
def test_inference_prompt_starts_with_the_bos_the_rule_asks_for(case: str, models_root: Path, monkeypatch) -> None:
    """Exactly one BOS where the tokenizer adds one (even if the template also renders it: the Mllama/Gemma-3
    case, two before), none where neither does, and never the EOS a tokenizer's template may add."""
    vlm = load_vlm(str(model_dir(case, models_root)), device="cpu")
    prompt, images = vlm.render(question())
    ids = generated_inputs(vlm, [(prompt, images)], monkeypatch)["input_ids"][0].tolist()
    expected_bos = CASES[case][2]
    assert ids[:2].count(BOS) == expected_bos and ids.count(BOS) == expected_bos
    assert ids[-1] != EOS and EOS not in ids
    text = prompt.removeprefix(vlm.tokenizer.bos_token)  # the rest is the rendered text, tokenized as it is
    rest = vlm.processor(text=[text], images=images, add_special_tokens=False)["input_ids"][0]
    assert ids == [BOS] * expected_bos + list(rest)


@pytest.mark.parametrize("case", ["tokenizer adds BOS, template none", "tokenizer adds none, template none"])
def test_a_batch_of_two_lengths_is_left_padded_before_the_bos(case: str, models_root: Path, monkeypatch) -> None:
    vlm = load_vlm(str(model_dir(case, models_root)), device="cpu")
    long_ = vlm.render(question("What is shown in this picture, and why is it there?"))
    short = vlm.render(question("Hi", (10, 200, 10)))
    inputs = generated_inputs(vlm, [long_, short], monkeypatch)
    ids, mask = inputs["input_ids"].tolist(), inputs["attention_mask"].tolist()
    alone = [generated_inputs(vlm, [r], monkeypatch)["input_ids"][0].tolist() for r in (long_, short)]
    pad = vlm.tokenizer.pad_token_id
    assert len(alone[0]) > len(alone[1]) and ids[0] == alone[0] and mask[0] == [1] * len(ids[0])
    padding = len(ids[1]) - len(alone[1])
    assert ids[1] == [pad] * padding + alone[1] and mask[1] == [0] * padding + [1] * len(alone[1])
    assert inputs["pixel_values"].shape[0] == 2


def test_eta_sampler_prompt_follows_the_rule(models_root: Path, monkeypatch) -> None:
    """ETA's white-box sampler continues the very prompt ids the provider would generate from."""
    from vlmguard_eval.models.guided import SentenceSampler

    vlm = load_vlm(str(model_dir("tokenizer adds BOS, template renders it", models_root)), device="cpu")
    ids = SentenceSampler(vlm, question(), "As an AI assistant").inputs["input_ids"][0].tolist()
    assert ids.count(BOS) == 1
    assert ids == generated_inputs(vlm, [vlm.render(question())], monkeypatch)["input_ids"][0].tolist()


def training_batch(model: Path, tmp_path: Path, indices: list[int]) -> tuple[Any, Any]:
    """The training collator's batch for records `request {i}` of tests.test_training, and their dataset."""
    from transformers import AutoProcessor

    from tests.test_training import collate, sft_records
    from vlmguard_eval.training.sft import load_records, sft_dataset, special_strings

    pytest.importorskip("trl", reason="training runs on TRL (install the `train` extra)")
    processor = AutoProcessor.from_pretrained(model)
    dataset = sft_dataset(load_records(sft_records(tmp_path)), special_strings(processor))
    return collate(processor, dataset, indices), processor


@pytest.mark.parametrize(
    "case",
    [
        "tokenizer adds BOS, template none",
        "tokenizer adds BOS, template renders it",
        "tokenizer adds none, template none",
    ],
)
def test_training_prompt_ids_are_the_inference_prompt_ids(
    case: str, models_root: Path, tmp_path: Path, monkeypatch
) -> None:
    """The collator's prompt part (label -100) is what the provider feeds `generate` for the same rewriter
    request and image, BOS included; the labels are the completion's ids alone, with no BOS."""
    from tests.test_training import TARGET
    from vlmguard_eval.rewriter.prompts import rewriter_messages

    model = model_dir(case, models_root)
    batch, processor = training_batch(model, tmp_path, [0])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    vlm = load_vlm(str(model), device="cpu")
    served = generated_inputs(
        vlm, [vlm.render(rewriter_messages([ContentImage(image=image_uri())], "request 0"))], monkeypatch
    )
    prompt = served["input_ids"][0].tolist()
    assert ids[: len(prompt)] == prompt and set(labels[: len(prompt)]) == {-100}
    completion = labels[len(prompt) :]
    assert -100 not in completion and completion == ids[len(prompt) :] and BOS not in completion
    assert processor.tokenizer.decode(completion, skip_special_tokens=True).strip() == TARGET
    assert ids.count(BOS) == CASES[case][2]


def test_a_training_batch_of_two_lengths_keeps_one_bos_per_row(models_root: Path, tmp_path: Path) -> None:
    """Right padding after the completion; each row alone gives the same ids; the BOS is never trained on."""
    model = model_dir("tokenizer adds BOS, template none", models_root)
    records = tmp_path / "records"
    records.mkdir()
    batch, processor = training_batch(model, records, [0, 3])
    rows = [training_batch(model, records, [i])[0] for i in (0, 3)]
    pad = processor.tokenizer.pad_token_id
    for row, alone in enumerate(rows):
        ids, mask = batch["input_ids"][row].tolist(), batch["attention_mask"][row].tolist()
        own = alone["input_ids"][0].tolist()
        assert ids[: len(own)] == own and ids[len(own) :] == [pad] * (len(ids) - len(own))
        assert mask == [1] * len(own) + [0] * (len(ids) - len(own))
        assert batch["labels"][row].tolist()[: len(own)] == alone["labels"][0].tolist()
        assert ids[0] == BOS and ids.count(BOS) == 1 and batch["labels"][row, 0] == -100


def test_a_template_whose_reply_rewrites_the_prompt_is_refused() -> None:
    """TRL would train on the common prefix of the two renderings; ours names the difference instead."""
    from vlmguard_eval.training.sft import render_prompt_completion

    class Processor:
        def apply_chat_template(self, messages: list, add_generation_prompt: bool, tokenize: bool) -> str:
            return "USER: hi\nASSISTANT:" if add_generation_prompt else "USER: hi\nBOT: yes"

    with pytest.raises(ValueError, match="differently from the prompt alone"):
        render_prompt_completion(Processor(), [{"role": "user"}], [{"role": "assistant"}])


def test_truncation_counts_the_bos(models_root: Path, tmp_path: Path) -> None:
    """With --max_length, a row is cut as TRL cuts it, the BOS counted: the first max_length ids of the whole row."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from tests.test_training import sft_records
    from vlmguard_eval.training.sft import TrainingCollator, load_records, sft_dataset, special_strings

    model = model_dir("tokenizer adds BOS, template none", models_root)
    whole, processor = training_batch(model, tmp_path, [0])
    dataset = sft_dataset(load_records(sft_records(tmp_path)), special_strings(processor))
    length = whole["input_ids"].shape[1] - 3
    cut = TrainingCollator(
        DataCollatorForVisionLanguageModeling(processor, max_length=length, completion_only_loss=True)
    )
    batch = cut([dataset[0]])
    for key in ("input_ids", "attention_mask", "labels"):
        assert batch[key].tolist() == whole[key][:, :length].tolist()


def test_the_trainer_trains_on_batches_with_the_bos(models_root: Path, tmp_path: Path, monkeypatch) -> None:
    """SFTTrainer's own collator (its max_length, its pad token) is wrapped alike: every batch it trains on starts
    each row with one BOS, and a LLaVA-1.5-like checkpoint trains and saves."""
    from tests.test_training import CPU_ARGS, sft_records
    from vlmguard_eval.training import sft

    fronts: list[list[int]] = []

    def recording(batch: Any, *args: Any) -> Any:
        batch = with_bos(batch, *args)
        fronts.append(batch["input_ids"][:, :2].tolist())
        return batch

    with_bos = sft.with_bos
    monkeypatch.setattr(sft, "with_bos", recording)
    model = model_dir("tokenizer adds BOS, template none", models_root)
    data, out = sft_records(tmp_path), tmp_path / "run"
    args = ["--data", str(data), "--model_name_or_path", str(model), "--output_dir", str(out), "--max_steps", "1"]
    final = sft.main([*args, "--per_device_train_batch_size", "2", *CPU_ARGS])
    assert (final / "model.safetensors").is_file()
    assert len(fronts) > 4  # the up-front check's four examples, then the trainer's batch
    assert all(row[0] == BOS and row[1] != BOS for batch in fronts for row in batch)
