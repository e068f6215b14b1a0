"""Rewriter fine-tuning on TRL's SFTTrainer with the tiny VLM: loss falls on the completion only, the
training prompt is the inference prompt, LoRA + resume, the checkpoint serves as the rewriter, and bad
training input is named up front."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.model import get_model

from tests.helpers import png_bytes

pytest.importorskip("trl", reason="training runs on TRL (install the `train` extra)")

REPO = Path(__file__).resolve().parents[1]
TARGET = "<analysis>\nForesight: risky.\n</analysis>\n<refined_prompt>\nBe careful.\n</refined_prompt>"
# the tiny tokenizer spends about one token per byte: our system prompt alone is ~1,100 tokens
CPU_ARGS = [
    "--bf16",
    "false",
    "--gradient_checkpointing",
    "false",
    "--report_to",
    "none",
    "--use_cpu",
    "true",
    "--max_length",
    "4096",
    "--dataloader_num_workers",
    "0",
    "--disable_tqdm",
    "true",
]


def sft_records(tmp_path: Path, count: int = 4, extra_lines: list[bytes] = ()) -> Path:
    image = tmp_path / "img.png"
    image.write_bytes(png_bytes())
    lines = [
        json.dumps({"image": str(image), "prompt": f"request {i}", "completion": TARGET}).encode() for i in range(count)
    ]
    path = tmp_path / "sft.jsonl"
    path.write_bytes(b"\n".join([*lines, *extra_lines]) + b"\n")
    return path


def collate(processor, dataset, indices):
    """A batch as training builds it (the training collator: TRL's, fed images as inference reads them)."""
    from vlmguard_eval.training.sft import training_collator

    return training_collator(processor)([dataset[i] for i in indices])


def batch_loss(model_dir: Path | str, batch) -> float:
    import torch
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return float(model(**batch).loss)


def test_training_prompt_is_the_inference_prompt(tiny_vlm: Path, tmp_path: Path) -> None:
    """One rendering: TRL's collator input equals what the hfvlm provider renders for the rewriter."""
    from inspect_ai.model import ContentImage

    from vlmguard_eval.models.local_vlm import load_vlm
    from vlmguard_eval.rewriter.prompts import rewriter_messages
    from vlmguard_eval.training.sft import (
        _placeholder_image_uri,
        _strip_nulls,
        load_records,
        sft_dataset,
        special_strings,
    )

    vlm = load_vlm(str(tiny_vlm), device="cpu")
    processor = vlm.processor
    dataset = sft_dataset(load_records(sft_records(tmp_path)), special_strings(processor))
    expected = vlm.render(rewriter_messages([ContentImage(image=_placeholder_image_uri())], "request 0"))[0]
    trained = processor.apply_chat_template(
        _strip_nulls(dataset[0]["prompt"]), add_generation_prompt=True, tokenize=False
    )
    assert trained == expected and re.search(r"<<<REQUEST-(\w+)>>>\nrequest 0\n<<<END-REQUEST-\1>>>", trained)


def test_sft_loss_falls_and_masks_the_prompt(tiny_vlm: Path, tmp_path: Path) -> None:
    from transformers import AutoProcessor

    from vlmguard_eval.training.sft import load_records, main, sft_dataset, special_strings

    data = sft_records(tmp_path)
    processor = AutoProcessor.from_pretrained(tiny_vlm)
    dataset = sft_dataset(load_records(data), special_strings(processor))
    batch = collate(processor, dataset, [0, 1])
    labels = batch["labels"][0]
    decoded = processor.tokenizer.decode(labels[labels != -100], skip_special_tokens=True)
    assert decoded.strip() == TARGET  # loss on the rewriter's output only
    before = batch_loss(tiny_vlm, collate(processor, dataset, [0, 1, 2, 3]))
    final = main(
        [
            "--data",
            str(data),
            "--model_name_or_path",
            str(tiny_vlm),
            "--output_dir",
            str(tmp_path / "run"),
            "--max_steps",
            "40",
            "--learning_rate",
            "5e-3",
            "--per_device_train_batch_size",
            "2",
            "--save_steps",
            "20",
            "--logging_steps",
            "5",
            *CPU_ARGS,
        ]
    )
    after = batch_loss(final, collate(processor, dataset, [0, 1, 2, 3]))
    assert after < before * 0.8, (before, after)
    assert (final / "model.safetensors").is_file() and any((tmp_path / "run").glob("checkpoint-*"))


def test_lora_resume_skips_a_broken_checkpoint_and_serves_as_rewriter(tiny_vlm, tmp_path, demo_dir, caplog) -> None:
    from vlmguard_eval.training.sft import main

    data = sft_records(tmp_path)
    out = tmp_path / "lora"
    args = [
        "--data",
        str(data),
        "--model_name_or_path",
        str(tiny_vlm),
        "--output_dir",
        str(out),
        "--use_peft",
        "true",
        "--lora_r",
        "4",
        "--lora_alpha",
        "8",
        "--per_device_train_batch_size",
        "1",
        "--save_steps",
        "2",
        *CPU_ARGS,
    ]
    main([*args, "--max_steps", "2"])
    # a newer checkpoint that was cut off mid-write: resume must skip it, with a warning
    broken = out / "checkpoint-3"
    broken.mkdir()
    (broken / "trainer_state.json").write_text("{trunc")
    with caplog.at_level(logging.WARNING, logger="vlmguard_eval.training.sft"):
        final = main([*args, "--max_steps", "4", "--resume", "true"])
    assert "skipping checkpoint" in caplog.text and "checkpoint-3" in caplog.text
    log_history = json.loads((out / "train_log.json").read_text())
    assert log_history[-1]["step"] == 4
    assert (final / "model.safetensors").is_file() and not (final / "adapter_config.json").exists()  # merged
    from solvers import vlmguard
    from tasks.siuo import siuo

    judge = get_model("scripted/j", responder=lambda m, c: "Verdict: SAFE", memoize=False)
    (log,) = inspect_eval(
        siuo(data_dir=str(demo_dir), epochs=1),
        solver=vlmguard(max_tokens=8),
        model="scripted/echo",
        model_roles={"rewriter": get_model(f"hfvlm/{final}"), "grader": judge},
        limit=1,
        log_dir=str(tmp_path / "logs"),
        display="none",
    )
    assert log.status == "success"
    assert log.samples[0].store["defense_calls"][0]["model"] == f"hfvlm/{final}"


def test_bad_lines_are_named_by_file_and_line(tmp_path: Path) -> None:
    from vlmguard_eval.training.sft import TrainingDataError, load_records

    data = sft_records(tmp_path, 2, [b"{not json", b'{"image": "x.png", "prompt": "p"}', b"\xff\xfe", b"[1, 2]"])
    with pytest.raises(TrainingDataError) as error:
        load_records(data)
    text = str(error.value)
    assert "4 bad line(s)" in text
    assert f"{data}:3: not valid JSON" in text and f"{data}:4: field(s) completion missing" in text
    assert f"{data}:5: not valid UTF-8" in text and f"{data}:6: expected a JSON object" in text


def test_overlong_examples_are_named_up_front(tiny_vlm: Path, tmp_path: Path, caplog) -> None:
    from vlmguard_eval.training.sft import TrainingDataError, main

    image = tmp_path / "img.png"
    long_line = json.dumps({"image": str(image), "prompt": "x " * 3000, "completion": TARGET}).encode()
    data = sft_records(tmp_path, 2, [long_line])
    args = [
        "--data",
        str(data),
        "--model_name_or_path",
        str(tiny_vlm),
        "--output_dir",
        str(tmp_path / "run"),
        "--max_steps",
        "1",
        *CPU_ARGS,
    ]
    with pytest.raises(TrainingDataError, match=r"1 example\(s\) longer than max_length 4096: line 3 \("):
        main(args)
    assert not (tmp_path / "run").exists()  # nothing ran
    with caplog.at_level(logging.WARNING, logger="vlmguard_eval.training.sft"):
        final = main([*args, "--skip_overlong", "true"])
    assert "line 3" in caplog.text and (final / "model.safetensors").is_file()


def test_cli_train_uses_trl_parser(tiny_vlm: Path, tmp_path: Path) -> None:
    data = sft_records(tmp_path)
    config = tmp_path / "train.yaml"
    config.write_text(f"data: {data}\nmodel_name_or_path: {tiny_vlm}\nmax_steps: 1\nlogging_steps: 1\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlmguard_eval.cli",
            "train",
            "--config",
            str(config),
            "--output_dir",
            str(tmp_path / "run"),
            *CPU_ARGS,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_torchrun_two_processes_on_cpu_start_training(tiny_vlm: Path, tmp_path: Path) -> None:
    """The multi-process launch (gloo on CPU): both ranks train 2 steps and rank 0 saves the final model."""
    data = sft_records(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "vlmguard_eval.cli",
            "train",
            "--data",
            str(data),
            "--model_name_or_path",
            str(tiny_vlm),
            "--output_dir",
            str(tmp_path / "run"),
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "1",
            "--logging_steps",
            "1",
            "--ddp_backend",
            "gloo",
            *CPU_ARGS,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert history[-1]["step"] == 2
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
