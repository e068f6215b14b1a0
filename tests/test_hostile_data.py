"""Hostile records, paths and images: each fails its own sample (or stops the load naming the file).

Every loader is tried with the same classes of bad input: wrong types, invalid Unicode, repeated keys,
colliding ids, overlong names and ids, paths escaping the data root (`..`, absolute, links), and images
that are corrupt, missing, oversized or of extreme shape.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import gen_record, png_bytes
from vlmguard_eval.core.messages import MAX_ASPECT_RATIO, MAX_IMAGE_SIDE, check_image_size, decode_image
from vlmguard_eval.data import common
from vlmguard_eval.data.common import INPUT_HASH_KEY, LOAD_ERROR_KEY, DataError
from vlmguard_eval.data.mm_safetybench import load_mm_safetybench
from vlmguard_eval.data.siuo import load_siuo
from vlmguard_eval.data.vlguard import load_vlguard

REPO = Path(__file__).resolve().parents[1]


def errors_of(dataset) -> dict[object, str | None]:
    return {s.id: s.metadata.get(LOAD_ERROR_KEY) for s in dataset}


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (the pixel data is a stub): only its header is read."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


# --- SIUO ---------------------------------------------------------------------------------------------


def write_raw(tmp_path: Path, text: str, images: dict[str, bytes] | None = None) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "siuo_gen.json").write_text(text, encoding="utf-8")
    for name, data in (images or {"a.png": png_bytes()}).items():
        (tmp_path / "images" / name).write_bytes(data)
    return tmp_path


def test_siuo_bad_text_ids_and_keys_fail_alone(tmp_path: Path) -> None:
    good = json.dumps(gen_record(1))
    records = [
        good,
        json.dumps(gen_record(2, question="lone \ud800 surrogate")),  # json.dumps escapes it: loads back unpaired
        '{"question_id": 3, "question_id": 33, "image": "a.png", "question": "q", "category": "c",'
        ' "safety_warning": "w", "reference_answer": "r"}',
        '{"question_id": ' + "9" * 5000 + ', "image": "a.png", "question": "q", "category": "c",'
        ' "safety_warning": "w", "reference_answer": "r"}',
        json.dumps(gen_record(10**30)),
        json.dumps(gen_record(6, image="x" * 5000)),
        json.dumps(gen_record(7, reference_answer=None)),
        json.dumps(gen_record(8, category=["a", {"b": 1}])),
    ]
    dataset = load_siuo("gen", str(write_raw(tmp_path, "[" + ",".join(records) + "]")))
    errors = errors_of(dataset)
    assert errors[1] is None and len(dataset) == 8
    assert "record #1 (id 2): field 'question': not valid Unicode" in errors[2]
    assert "duplicate key(s) 'question_id'" in errors[33]
    assert "field 'question_id': expected int, got str" in errors["record-3"]  # thousands of digits
    assert "record #4: field 'question_id'" in errors["record-4"]  # beyond 64 bits
    assert "field 'image': image path 'xxxx" in errors[6] and "unusable" in errors[6]
    assert "field 'reference_answer': expected str, got NoneType" in errors[7]
    assert "field 'category': expected str, got list" in errors[8]


def test_siuo_nested_duplicate_key_and_colliding_ids(tmp_path: Path) -> None:
    mcqa = {
        "question_id": 1,
        "image": "a.png",
        "question": "q",
        "category": "morality",
        "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
        "correct_option": "A",
    }
    text = json.dumps([mcqa, {**mcqa, "question_id": 2}, {**mcqa, "question_id": 1}, {**mcqa, "question_id": 4}])
    text = text.replace('"D": "d"}, "correct_option": "A"}]', '"D": "d", "A": "z"}, "correct_option": "A"}]')
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png_bytes())
    (tmp_path / "siuo_mcqa.json").write_text(text)
    dataset = load_siuo("mcqa", str(tmp_path))
    errors = errors_of(dataset)
    assert errors[1] is None and errors[2] is None
    assert "duplicate id 1" in errors["1#duplicate-2"]
    assert "in 'options': duplicate key(s) 'A'" in errors[4]
    assert len({s.id for s in dataset}) == 4


def test_siuo_paths_escaping_the_root_fail_alone(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes())
    root = tmp_path / "siuo"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(png_bytes())
    (root / "images" / "link.png").symlink_to(outside)
    (root / "images" / "loop.png").symlink_to(root / "images" / "loop.png")
    records = [
        gen_record(1),
        gen_record(2, image="../../outside.png"),
        gen_record(3, image=str(outside)),
        gen_record(4, image="link.png"),
        gen_record(5, image="loop.png"),
        gen_record(6, image=""),
    ]
    (root / "siuo_gen.json").write_text(json.dumps(records))
    errors = errors_of(load_siuo("gen", str(root)))
    assert errors[1] is None
    assert "escapes the data root" in errors[2] and "escapes the data root" in errors[4]
    assert "is absolute" in errors[3]
    assert "unusable" in errors[5] or "escapes" in errors[5] or "not found" in errors[5]
    assert "empty or invalid image path" in errors[6]


def test_oversized_image_file_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vlmguard_eval.core import messages

    monkeypatch.setattr(messages, "MAX_IMAGE_BYTES", 1000)  # the bound the loaders check against
    root = write_raw(tmp_path, json.dumps([gen_record(1), gen_record(2, image="big.png")]))
    (root / "images" / "big.png").write_bytes(b"\x00" * 5000)
    errors = errors_of(load_siuo("gen", str(root)))
    assert errors[1] is None and "5,000 bytes (limit 1,000)" in errors[2]


def test_whole_file_problems_stop_the_load_naming_the_file(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    write_raw(tmp_path, deep)
    with pytest.raises(DataError, match="siuo_gen.json: .*(nested too deeply|expected a JSON list)"):
        load_siuo("gen", str(tmp_path))
    write_raw(tmp_path, '[{"question_id": 1, "nested": ' + "[" * 100_000 + "]" * 100_000 + "}]")
    with pytest.raises(DataError, match="siuo_gen.json"):
        load_siuo("gen", str(tmp_path))


def test_every_sample_records_a_hash_of_its_inputs(tmp_path: Path) -> None:
    root = write_raw(tmp_path, json.dumps([gen_record(1), gen_record(2)]))
    first = {s.id: s.metadata[INPUT_HASH_KEY] for s in load_siuo("gen", str(root))}
    (root / "images" / "a.png").write_bytes(png_bytes(color=(1, 2, 3)))
    second = {s.id: s.metadata[INPUT_HASH_KEY] for s in load_siuo("gen", str(root))}
    assert first[1] != first[2] and first[1] != second[1]  # the text and the image bytes both count


# --- VLGuard -------------------------------------------------------------------------------------------


def vlguard_record(record_id: str, **overrides: object) -> dict:
    record = {
        "id": record_id,
        "image": "a.png",
        "safe": True,
        "instr-resp": [{"safe_instruction": "describe", "response": "ok"}, {"unsafe_instruction": "harm"}],
    }
    record.update(overrides)
    return record


def test_vlguard_wrong_types_and_colliding_ids_fail_alone(tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "a.png").write_bytes(png_bytes())
    records = [
        vlguard_record("ok"),
        vlguard_record("nullresp", **{"instr-resp": [{"safe_instruction": "d", "response": None}]}),
        vlguard_record("badcat", safe=False, harmful_category=7, **{"instr-resp": [{"instruction": "x"}]}),
        vlguard_record("ok"),
        vlguard_record("x" * 5000),
        vlguard_record("#record-6"),  # the name a broken record would get: still never two samples with one id
        {"id": ["not", "text"], "image": "a.png", "safe": True, "instr-resp": []},
        vlguard_record("notdict", **{"instr-resp": ["just text"]}),
    ]
    (tmp_path / "test.json").write_text(json.dumps(records))
    (tmp_path / "gpt4_safe_safes.json").write_text(json.dumps([{"id": "ok", "response": "r"}]))
    dataset = load_vlguard(data_dir=tmp_path)
    errors = errors_of(dataset)
    assert len(errors) == len(dataset)  # ids unique
    assert errors["safe_safes/ok"] is None and errors["safe_unsafes/ok"] is None
    assert "field 'response': expected str, got NoneType" in errors["safe_safes/nullresp"]
    assert "field 'harmful_category': expected str, got int" in errors["unsafes/badcat"]
    assert any("duplicate id 'safe_safes/ok'" in (e or "") for e in errors.values())
    # a bad record fails as the samples it would have given: a safe image gives two, under their subsets
    assert "field 'id': id must be 1-200 printable characters" in errors["safe_safes/#record-4"]
    assert "field 'id': id must be 1-200 printable characters" in errors["safe_unsafes/#record-4"]
    # the record without a usable id is named like record 5: it fails as a duplicate, keeping its own error
    (renamed,) = [e for i, e in errors.items() if str(i).startswith("safe_unsafes/#record-6#duplicate")]
    assert "duplicate id 'safe_unsafes/#record-6'" in renamed
    assert "; and: " in renamed and "record #6: field 'id': expected str, got list" in renamed
    assert "field 'instr-resp[0]': expected a JSON object" in errors["safe_safes/notdict"]


def test_vlguard_duplicate_reference_fails_only_its_sample(tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "a.png").write_bytes(png_bytes())
    (tmp_path / "test.json").write_text(json.dumps([vlguard_record("ok")]))
    (tmp_path / "gpt4_safe_safes.json").write_text('[{"id": "ok", "response": "a"}, {"id": "ok", "response": "b"}]')
    errors = errors_of(load_vlguard(data_dir=tmp_path))
    assert "gpt4_safe_safes.json: record #1 (id ok): field 'id': duplicate id 'ok'" in errors["safe_safes/ok"]
    assert errors["safe_unsafes/ok"] is None


# --- MM-SafetyBench -----------------------------------------------------------------------------------


def mmsb_record(phrase: str = "a phrase") -> dict:
    return {"Question": "q", "Key Phrase": phrase, "Rephrased Question": "rq", "Rephrased Question(SD)": "rqsd"}


def make_mmsb(root: Path, records_json: str, sd: dict[str, bytes] | None = None) -> Path:
    (root / "processed_questions").mkdir(parents=True)
    (root / "processed_questions" / "01-Illegal_Activitiy.json").write_text(records_json)
    folder = root / "imgs" / "01-Illegal_Activitiy" / "SD"
    folder.mkdir(parents=True)
    for name, data in (sd or {}).items():
        (folder / name).write_bytes(data)
    return root


def load_mmsb(root: Path, cache: Path, image_type: str = "all"):
    return load_mm_safetybench("01-Illegal_Activitiy", image_type, data_dir=root, cache_dir=cache)


def test_mmsb_keys_are_confined_to_the_data_root(tmp_path: Path) -> None:
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(png_bytes())
    root = tmp_path / "mmsb"
    records = {
        "0": mmsb_record(),
        "../../../../secret": mmsb_record(),
        str(tmp_path / "secret"): mmsb_record(),
        "2": mmsb_record(),
    }
    make_mmsb(root, json.dumps(records), {"0.jpg": png_bytes()})
    (root / "imgs" / "01-Illegal_Activitiy" / "SD" / "2.jpg").symlink_to(secret)  # a link leading outside
    dataset = load_mmsb(root, tmp_path / "cache", "SD")
    errors = errors_of(dataset)
    assert errors["01-Illegal_Activitiy/SD/0"] is None
    assert "is not a plain name" in errors["01-Illegal_Activitiy/SD/#record-1"]
    assert "is not a plain name" in errors["01-Illegal_Activitiy/SD/#record-2"]
    assert "escapes the data root" in errors["01-Illegal_Activitiy/SD/2"]
    assert not any(str(secret) == s.metadata.get("image_path") for s in dataset)


def test_mmsb_bad_images_and_phrases_fail_alone_in_every_image_type(tmp_path: Path) -> None:
    buffer = png_bytes(size=(16, 16))
    records = {
        "0": mmsb_record(),
        "1": mmsb_record(),  # corrupt SD: SD fails, and so does SD_TYPO stacked from it
        "2": mmsb_record(),  # SD of extreme shape
        "3": mmsb_record("two\nlines"),
        "4": mmsb_record("x" * 100_000),
        "5": mmsb_record(),  # no SD image at all
    }
    sd = {"0.jpg": buffer, "1.jpg": b"\xff\xd8 not a jpeg", "2.jpg": png_header(20_000, 10), "3.jpg": buffer}
    sd["4.jpg"] = buffer
    root = make_mmsb(tmp_path / "mmsb", json.dumps(records), sd)
    errors = errors_of(load_mmsb(root, tmp_path / "cache"))
    for image_type in ("SD", "SD_TYPO", "TYPO", "text"):
        assert errors[f"01-Illegal_Activitiy/{image_type}/0"] is None
    assert "unreadable image" in errors["01-Illegal_Activitiy/SD/1"]
    assert "unreadable image" in errors["01-Illegal_Activitiy/SD_TYPO/1"]
    assert errors["01-Illegal_Activitiy/TYPO/1"] is None
    assert "image side too long" in errors["01-Illegal_Activitiy/SD/2"]
    assert "image side too long" in errors["01-Illegal_Activitiy/SD_TYPO/2"]
    assert "one non-empty line" in errors["01-Illegal_Activitiy/TYPO/3"]
    assert "one non-empty line" in errors["01-Illegal_Activitiy/SD_TYPO/3"]
    assert errors["01-Illegal_Activitiy/SD/3"] is None and errors["01-Illegal_Activitiy/text/3"] is None
    assert "100,000 characters (limit 500" in errors["01-Illegal_Activitiy/TYPO/4"]
    assert "SD image not found" in errors["01-Illegal_Activitiy/SD/5"]
    assert "SD_TYPO image not found" in errors["01-Illegal_Activitiy/SD_TYPO/5"]


def test_mmsb_repeated_id_stops_the_load_naming_the_file(tmp_path: Path) -> None:
    text = '{"0": ' + json.dumps(mmsb_record()) + ', "0": ' + json.dumps(mmsb_record("other")) + "}"
    root = make_mmsb(tmp_path / "mmsb", text)
    with pytest.raises(DataError, match="01-Illegal_Activitiy.json: duplicate id\\(s\\) '0'"):
        load_mmsb(root, tmp_path / "cache", "text")


# --- image bounds -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, problem",
    [
        ((MAX_IMAGE_SIDE + 1, 100), "side too long"),
        ((1, 100), "aspect ratio"),
        ((9500, 9500), "decompression bomb"),
        ((200_000, 200_000), "decompression bomb"),
    ],
)
def test_images_out_of_bounds_are_refused_from_the_header(size: tuple[int, int], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_image(data_uri(png_header(*size)))


def test_image_bounds_accept_real_shapes() -> None:
    for size in [(1024, 1024), (1024, 1400), (760, 760), (4000, 3000), (int(MAX_ASPECT_RATIO) * 10, 10)]:
        check_image_size(*size)
    assert decode_image(data_uri(png_bytes(size=(64, 8)))).size == (64, 8)


def test_extreme_images_are_refused_under_a_memory_cap(tmp_path: Path) -> None:
    """Decoding these would need gigabytes; under a cap of current use + 200 MB each is refused cleanly."""
    for index, size in enumerate([(20_000, 4_000), (1, 16_000), (100_000, 100_000)]):
        (tmp_path / f"{index}.png").write_bytes(png_header(*size))
    script = textwrap.dedent(
        f"""
        import base64, resource, sys
        from pathlib import Path
        from vlmguard_eval.core.messages import decode_image
        used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + 200_000_000, used + 200_000_000))
        for path in sorted(Path({str(tmp_path)!r}).glob("*.png")):
            uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
            try:
                decode_image(uri)
                print("DECODED", path.name)
            except ValueError as ex:
                print("REFUSED", path.name, ex)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("REFUSED") == 3 and "MemoryError" not in done.stdout + done.stderr


# --- image formats, bit depth and byte size -----------------------------------------------------------

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(hostile PostScript) print\nshowpage\n%%EOF\n"


def encoded(mode: str, image_format: str, size: tuple[int, int] = (8, 8), **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def test_postscript_never_reaches_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow picks its plugin by the bytes, not the name: a `.jpg` holding PostScript would run Ghostscript."""
    from PIL import EpsImagePlugin

    from vlmguard_eval.core.messages import check_image_file

    commands: list[object] = []

    def spy(command: object, *args: object, **kwargs: object) -> None:
        commands.append(command)
        raise OSError("spy: no external program runs in this test")

    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs")
    monkeypatch.setattr(subprocess, "check_call", spy)
    monkeypatch.setattr(subprocess, "Popen", spy)
    with pytest.raises(ValueError, match="image format EPS is not accepted"):
        decode_image("data:image/jpeg;base64," + base64.b64encode(EPS).decode())
    (tmp_path / "photo.jpg").write_bytes(EPS)
    with pytest.raises(ValueError, match="image format EPS is not accepted"):
        check_image_file(tmp_path / "photo.jpg")
    assert commands == []


def test_only_the_accepted_formats_open_and_others_are_refused_by_name() -> None:
    accepted = {
        "PNG": encoded("RGB", "PNG"),
        "JPEG": encoded("RGB", "JPEG"),
        "GIF": encoded("P", "GIF"),
        "WEBP": encoded("RGB", "WEBP"),
        "BMP": encoded("RGB", "BMP"),
        # a phone's multi-picture JPEG, which Pillow's JPEG opener reads
        "MPO": encoded("RGB", "MPO", save_all=True, append_images=[Image.new("RGB", (8, 8))]),
    }
    for name, data in accepted.items():
        image = decode_image(data_uri(data))
        assert (image.mode, image.size) == ("RGB", (8, 8)), name
    for name in ("TIFF", "PCX", "PPM", "ICO"):
        with pytest.raises(ValueError, match=f"image format {name} is not accepted"):
            decode_image(data_uri(encoded("RGB", name, (16, 16))))


def test_images_of_more_than_8_bits_a_channel_are_refused_by_mode(tmp_path: Path) -> None:
    """PIL's convert("RGB") clips a 16-bit grey image (near-white for most of its range) instead of rescaling."""
    from vlmguard_eval.core.messages import check_image_file

    gradient = Image.frombytes("I;16", (64, 64), bytes(range(256)) * 32)
    buffer = io.BytesIO()
    gradient.save(buffer, format="PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode == "I;16"
    with pytest.raises(ValueError, match="image mode I;16 .PNG. has more than 8 bits a channel"):
        decode_image(data_uri(buffer.getvalue()))
    (tmp_path / "deep.png").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="image mode I;16"):
        check_image_file(tmp_path / "deep.png")


def test_image_bytes_are_bounded_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vlmguard_eval.core import messages

    noise = random.Random(0).randbytes(64 * 64 * 3)  # incompressible: the PNG holds every byte
    data = io.BytesIO()
    Image.frombytes("RGB", (64, 64), noise).save(data, format="PNG")
    assert len(data.getvalue()) > 4000
    assert messages.MAX_IMAGE_BYTES == 20 * 1024 * 1024  # Inspect's own 20 MiB
    monkeypatch.setattr(messages, "MAX_IMAGE_BYTES", 4000)
    decoded: list[object] = []
    real_b64decode = messages.base64.b64decode
    monkeypatch.setattr(messages.base64, "b64decode", lambda *a, **k: decoded.append(a) or real_b64decode(*a, **k))
    with pytest.raises(ValueError, match="image data URI holds more than 4,000 bytes"):
        messages.decode_image(data_uri(data.getvalue()))
    assert decoded == []  # refused from the payload's length, never decoded
    path = tmp_path / "big.png"
    path.write_bytes(data.getvalue())
    with pytest.raises(ValueError, match=r"image has [\d,]+ bytes \(limit 4,000\)"):
        messages.check_image_file(path)
    with pytest.raises(ValueError, match=r"image has [\d,]+ bytes \(limit 4,000\)"):
        messages.read_image(path)
    assert common.check_image_bytes is messages.check_image_bytes  # the loaders keep the same bound


def test_an_eps_image_fails_only_its_sample_naming_its_file(tmp_path: Path) -> None:
    from inspect_ai import eval as inspect_eval

    from solvers import none
    from tasks.siuo import siuo

    root = write_raw(
        tmp_path,
        json.dumps([gen_record(1, "ok.png"), gen_record(2, "photo.png")]),
        {"ok.png": png_bytes(), "photo.png": EPS},
    )
    (log,) = inspect_eval(
        siuo(data_dir=str(root), epochs=1),
        solver=none(),
        model="scripted/comply",
        model_roles={"grader": "scripted/judge"},
        fail_on_error=False,
        log_dir=str(tmp_path / "logs"),
        display="none",
    )
    errors = {s.id: s.error.message for s in log.samples if s.error}
    assert list(errors) == [2]
    assert "photo.png" in errors[2] and "record #1 (id 2): field 'image': image format EPS is not accepted" in errors[2]


# --- -T data_dir=REL ----------------------------------------------------------------------------------


def test_relative_data_dir_resolves_against_the_launch_folder_not_pwd(tmp_path: Path) -> None:
    """A launcher whose $PWD names another folder must not change which dataset a relative path names."""
    for name, question in (("here", "the right data"), ("decoy", "the wrong data")):
        (tmp_path / name / "data" / "images").mkdir(parents=True)
        (tmp_path / name / "data" / "images" / "a.png").write_bytes(png_bytes())
        (tmp_path / name / "data" / "siuo_gen.json").write_text(json.dumps([gen_record(1, question=question)]))
    script = textwrap.dedent(
        """
        import json, os
        from inspect_ai import eval as inspect_eval
        (log,) = inspect_eval(
            os.environ["TASK_FILE"] + "@siuo", task_args={"data_dir": "data", "epochs": 1}, solver=None,
            model="scripted/echo", model_roles={"grader": "scripted/echo"}, limit=1, log_dir="logs",
            display="none",
        )
        print(json.dumps({"question": log.samples[0].metadata["question"], "location": log.eval.dataset.location}))
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PWD": str(tmp_path / "decoy"),
        "TASK_FILE": str(REPO / "tasks" / "siuo.py"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path / "here", env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["question"] == "the right data"
    assert result["location"] == str(tmp_path / "here" / "data" / "siuo_gen.json")  # absolute, in the log
