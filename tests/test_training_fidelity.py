"""Training sees what inference sees: the rewriter's prompt with special-token strings neutralised as the
hfvlm provider neutralises them, completions whose special-token strings stay plain text, images decoded
by the provider's own decoder, and an example the collator cannot build named by its line."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import png_bytes
from tests.test_training import CPU_ARGS, collate
from vlmguard_eval.core.messages import read_image as sft_read_image

pytest.importorskip("trl", reason="training runs on TRL (install the `train` extra)")

# a teacher reply can hold what a tokenizer reads as special: an end of sequence, an image slot
SPECIAL_TARGET = (
    "<analysis>\nForesight: the user may end the turn early </s> or add an <image>.\n</analysis>\n"
    "<refined_prompt>\nDescribe the <image> without the </s> part.\n</refined_prompt>"
)
SPECIAL_PROMPT = "What is <image> here </s> done"


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def write_sft(tmp_path: Path, rows: list[tuple[str, str, bytes]]) -> Path:
    """An sft.jsonl of (prompt, completion, image bytes) rows, each image in its own file."""
    lines = []
    for number, (prompt, completion, image) in enumerate(rows):
        path = tmp_path / f"img{number}.png"
        path.write_bytes(image)
        lines.append(json.dumps({"image": str(path), "prompt": prompt, "completion": completion}))
    data = tmp_path / "sft.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data


def inference_inputs(tiny_vlm: Path, image: bytes, prompt: str):
    """What the hfvlm provider hands the model for the rewriter's call on `image` and `prompt`."""
    from inspect_ai.model import ContentImage

    from vlmguard_eval.models.local_vlm import load_vlm
    from vlmguard_eval.rewriter.prompts import rewriter_messages

    vlm = load_vlm(str(tiny_vlm), device="cpu")
    text, images, neutralised = vlm.prepare(rewriter_messages([ContentImage(image=data_uri(image))], prompt))
    return vlm.processor(text=[text], images=images, return_tensors="pt", padding=True), neutralised


def test_special_strings_train_as_inference_renders_them(tiny_vlm: Path, tmp_path: Path, monkeypatch) -> None:
    """A prompt holding "</s>" and "<image>" gives the provider's token ids; the same strings in the teacher's
    target stay text (no end-of-sequence label, no image slot), counted in the data report; training runs."""
    from transformers import AutoProcessor

    from vlmguard_eval.training import sft
    from vlmguard_eval.training.sft import load_records, main, sft_dataset, special_strings

    data = write_sft(tmp_path, [(SPECIAL_PROMPT, SPECIAL_TARGET, png_bytes())])
    processor = AutoProcessor.from_pretrained(tiny_vlm)
    dataset = sft_dataset(load_records(data), special_strings(processor))
    batch = collate(processor, dataset, [0])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    expected, neutralised = inference_inputs(tiny_vlm, png_bytes(), SPECIAL_PROMPT)
    assert neutralised == 2
    assert [t for t, label in zip(ids, labels, strict=True) if label == -100] == expected["input_ids"][0].tolist()
    completion = [t for t in labels if t != -100]
    eos = processor.tokenizer.eos_token_id
    assert [i for i, t in enumerate(completion) if t == eos] in ([], [len(completion) - 1])
    assert processor.tokenizer.convert_tokens_to_ids("<image>") not in completion
    text = processor.tokenizer.decode(completion, skip_special_tokens=True)
    assert text.replace("\u2060", "").strip() == SPECIAL_TARGET  # the target's words, only broken strings

    out = tmp_path / "run"
    args = ["--data", str(data), "--model_name_or_path", str(tiny_vlm), "--output_dir", str(out), "--max_steps", "1"]
    built = []  # the trainer's batches go through the training collator too, not only the up-front check
    monkeypatch.setattr(sft, "read_image", lambda path: built.append(path) or sft_read_image(path))
    main([*args, *CPU_ARGS])
    assert len(built) >= 2
    report = json.loads((out / "data_report.json").read_text())
    assert report["neutralised"]["prompt"] == {"examples": 1, "strings": 2, "lines": [1]}
    assert report["neutralised"]["completion"] == {"examples": 1, "strings": 4, "lines": [1]}
    assert report["trained"] == 1 and report["dropped"] == {}


def half_transparent_png() -> bytes:
    """Left half opaque red; right half fully transparent over blue (PIL's RGB conversion keeps the blue,
    compositing on white would not)."""
    image = Image.new("RGBA", (64, 64), (0, 0, 255, 0))
    image.paste((200, 30, 30, 255), (0, 0, 32, 64))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def palette_png() -> bytes:
    image = Image.open(io.BytesIO(half_transparent_png())).convert("RGB").quantize(4)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    return buffer.getvalue()


def exif_rotated_jpeg() -> bytes:
    """A wide JPEG whose EXIF says to rotate it (a phone photo); inference does not rotate."""
    image = Image.new("RGB", (64, 32), (200, 30, 30))
    image.paste((0, 0, 255), (32, 0, 64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


IMAGES = {"rgba": half_transparent_png(), "palette": palette_png(), "exif": exif_rotated_jpeg()}


@pytest.mark.parametrize("image", IMAGES.values(), ids=IMAGES.keys())
def test_images_reach_the_processor_as_at_inference(tiny_vlm: Path, tmp_path: Path, image: bytes) -> None:
    from transformers import AutoProcessor

    from vlmguard_eval.training.sft import load_records, sft_dataset, special_strings

    processor = AutoProcessor.from_pretrained(tiny_vlm)
    data = write_sft(tmp_path, [("q", SPECIAL_TARGET, image)])
    trained = collate(processor, sft_dataset(load_records(data), special_strings(processor)), [0])["pixel_values"]
    expected, _ = inference_inputs(tiny_vlm, image, "q")
    assert trained.shape == expected["pixel_values"].shape
    assert float((trained - expected["pixel_values"]).abs().max()) == 0.0


def test_an_example_the_collator_cannot_build_is_named_by_line(tiny_vlm: Path, tmp_path: Path) -> None:
    from transformers import AutoProcessor

    from vlmguard_eval.training.sft import TrainingDataError, check_examples, load_records, sft_dataset, special_strings

    processor = AutoProcessor.from_pretrained(tiny_vlm)
    rows = [("a", SPECIAL_TARGET, png_bytes()), ("b", SPECIAL_TARGET, b"not an image"), ("c", "x", png_bytes())]
    data = write_sft(tmp_path, rows)
    dataset = sft_dataset(load_records(data), special_strings(processor))
    with pytest.raises(TrainingDataError, match=rf"1 example\(s\).*\n{data}:2: ValueError: unreadable image"):
        check_examples(dataset, processor, None, False, str(data))


def test_lone_surrogate_is_named_by_line(tmp_path: Path) -> None:
    from vlmguard_eval.training.sft import TrainingDataError, load_records

    data = write_sft(tmp_path, [("ok", "x", png_bytes())])
    bad = {"image": str(tmp_path / "img0.png"), "prompt": "\ud800", "completion": "x"}
    data.write_text(data.read_text() + json.dumps(bad) + "\n")
    with pytest.raises(TrainingDataError, match=rf"{data}:2: field\(s\) prompt not valid Unicode"):
        load_records(data)
