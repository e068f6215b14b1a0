"""Audit findings in the loaders, each pinned: a bad record, image or list entry fails only its own samples,
under the right ids and subsets, and every problem is named (file, record, field), never dropped unsaid."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import gen_record, png_bytes
from vlmguard_eval.core import messages
from vlmguard_eval.data.common import INPUT_HASH_KEY, LOAD_ERROR_KEY, DataError, choose
from vlmguard_eval.data.figstep import load_figstep
from vlmguard_eval.data.mm_safetybench import load_mm_safetybench
from vlmguard_eval.data.siuo import load_siuo
from vlmguard_eval.data.vlguard import load_vlguard


def errors_of(dataset) -> dict[object, str | None]:
    return {s.id: s.metadata.get(LOAD_ERROR_KEY) for s in dataset}


def refuse_to_read(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make the file called `name` unreadable, as `chmod 000` would for a user other than root."""
    read_bytes = Path.read_bytes

    def guarded(path: Path) -> bytes:
        if path.name == name:
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", guarded)


# --- options ------------------------------------------------------------------------------------------


def test_an_option_value_given_twice_counts_once(shared_data: Path, tmp_path: Path) -> None:
    assert choose("text,SD,text", ("SD", "text"), "image_type") == ["text", "SD"]
    assert choose(["b", "a", "b"], ("a", "b"), "x") == ["b", "a"]
    mmsb = load_mm_safetybench(
        "01-Illegal_Activitiy,01-Illegal_Activitiy", "text,text", data_dir=shared_data / "mm-safetybench"
    )
    assert len(mmsb) == 97 and not any(LOAD_ERROR_KEY in s.metadata for s in mmsb)
    root = vlguard_copy(tmp_path / "vlguard", real_vlguard(shared_data)[:20], shared_data)
    vlguard = load_vlguard("unsafes,unsafes", data_dir=root)
    assert len(vlguard) == sum(not r["safe"] for r in real_vlguard(shared_data)[:20])
    assert not any(LOAD_ERROR_KEY in s.metadata for s in vlguard)
    figstep = load_figstep("tiny", "baseline,baseline", str(figstep_copy(tmp_path / "figstep", shared_data)))
    assert len(figstep) == 50 and not any(LOAD_ERROR_KEY in s.metadata for s in figstep)


# --- unreadable images --------------------------------------------------------------------------------


def test_an_unreadable_siuo_image_fails_its_record_alone(
    make_siuo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_siuo(
        [gen_record(1), gen_record(2, image="locked.png")], {"a.png": png_bytes(), "locked.png": png_bytes()}
    )
    refuse_to_read(monkeypatch, "locked.png")
    errors = errors_of(load_siuo("gen", str(root)))
    assert errors[1] is None
    assert f"{root / 'siuo_gen.json'}: record #1 (id 2): field 'image': image file" in errors[2]
    assert "locked.png unreadable: Permission denied" in errors[2]


def test_an_unreadable_vlguard_image_fails_its_record_alone(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = real_vlguard(shared_data)[:10]
    root = vlguard_copy(tmp_path, records, shared_data)
    locked = next(r for r in records if r["safe"])
    refuse_to_read(monkeypatch, Path(locked["image"]).name)
    dataset = load_vlguard(data_dir=root)
    errors = errors_of(dataset)
    assert len(dataset) == sum(1 if not r["safe"] else 2 for r in records)
    for subset in ("safe_safes", "safe_unsafes"):
        assert "field 'image': image file" in errors[f"{subset}/{locked['id']}"]
        assert "unreadable: Permission denied" in errors[f"{subset}/{locked['id']}"]
    assert sum(e is not None for e in errors.values()) == 2


# --- SIUO ---------------------------------------------------------------------------------------------


def test_siuo_category_and_options_follow_the_published_format(make_siuo, shared_data: Path) -> None:
    mcqa = json.loads((shared_data / "siuo" / "siuo_mcqa.json").read_text())[:3]
    mcqa[0]["options"]["E"] = "an extra option"
    mcqa[1]["category"] = "Self-Harm "
    root = make_siuo([], {r["image"]: png_bytes() for r in mcqa})
    (root / "siuo_mcqa.json").write_text(json.dumps(mcqa))
    errors = errors_of(load_siuo("mcqa", str(root)))
    first, second, third = (r["question_id"] for r in mcqa)
    assert "field 'options': unexpected option(s) 'E': SIUO's options are A-D" in errors[first]
    assert "field 'category': 'Self-Harm ' is not one of SIUO's categories: 'self-harm'" in errors[second]
    assert errors[third] is None


def test_siuo_real_records_pass_the_category_and_option_checks(siuo_dir: Path) -> None:
    for format in ("gen", "mcqa"):
        dataset = load_siuo(format, str(siuo_dir))
        assert len(dataset) == 167 and not any(LOAD_ERROR_KEY in s.metadata for s in dataset)


# --- FigStep ------------------------------------------------------------------------------------------


def figstep_lines(shared_data: Path) -> list[str]:
    return (shared_data / "figstep" / "SafeBench-Tiny.csv").read_text(encoding="utf-8").splitlines()


def figstep_copy(root: Path, shared_data: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copy(shared_data / "figstep" / "SafeBench-Tiny.csv", root / "SafeBench-Tiny.csv")
    return root


def write_csv(root: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "safebench.csv").write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return root


def load_rows(root: Path, query_type: str = "figstep", images: str = "render"):
    return load_figstep("safebench", query_type, str(root), images=images, font="dejavu", cache=root / "cache")


def test_figstep_official_images_are_confined_to_their_folder_and_bounded(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = figstep_lines(shared_data)
    root = write_csv(tmp_path / "figstep", lines[:4])
    folder = root / "images" / "SafeBench"
    folder.mkdir(parents=True)
    (folder / "query_ForbidQI_1_1_6.png").write_bytes(png_bytes())
    (tmp_path / "outside.png").write_bytes(png_bytes())
    (folder / "query_ForbidQI_1_2_6.png").symlink_to(tmp_path / "outside.png")
    (folder / "query_ForbidQI_1_3_6.png").write_bytes(b"\x00" * 5000)
    monkeypatch.setattr(messages, "MAX_IMAGE_BYTES", 1000)  # the bound the loaders check against
    for images in ("official", "auto"):
        errors = errors_of(load_rows(root, images=images))
        assert errors["figstep/1_1"] is None
        assert (
            "record #1 (id 1_2): field 'image': image path 'query_ForbidQI_1_2_6.png' escapes" in errors["figstep/1_2"]
        )
        assert "record #2 (id 1_3): field 'image': image file has 5,000 bytes (limit 1,000)" in errors["figstep/1_3"]


def test_figstep_image_folder_may_link_to_another_disk(shared_data: Path, tmp_path: Path) -> None:
    root = write_csv(tmp_path / "figstep", figstep_lines(shared_data)[:2])
    elsewhere = tmp_path / "other-disk" / "SafeBench"
    elsewhere.mkdir(parents=True)
    (elsewhere / "query_ForbidQI_1_1_6.png").write_bytes(png_bytes())
    (root / "images").mkdir()
    (root / "images" / "SafeBench").symlink_to(elsewhere)
    (sample,) = load_rows(root, images="official")
    assert LOAD_ERROR_KEY not in sample.metadata and sample.metadata["image_render"] == "official"


def test_figstep_samples_carry_a_hash_of_their_inputs(shared_data: Path, tmp_path: Path) -> None:
    lines = figstep_lines(shared_data)
    root = write_csv(tmp_path / "figstep", lines[:3])
    first = {s.id: s.metadata[INPUT_HASH_KEY] for s in load_rows(root, "all")}
    assert len(first) == 4 and len(set(first.values())) == 4
    changed = lines[1].replace("How can someone", "How could someone")  # the question: the baseline's input
    write_csv(root, [lines[0], changed, lines[2]])
    second = {s.id: s.metadata[INPUT_HASH_KEY] for s in load_rows(root, "all")}
    assert second["baseline/1_1"] != first["baseline/1_1"] and second["figstep/1_1"] == first["figstep/1_1"]
    folder = root / "images" / "SafeBench"
    folder.mkdir(parents=True)
    (folder / "query_ForbidQI_1_1_6.png").write_bytes(png_bytes(color=(1, 2, 3)))  # another image, same text
    third = {s.id: s.metadata[INPUT_HASH_KEY] for s in load_rows(root, "all", images="auto")}
    assert third["figstep/1_1"] != second["figstep/1_1"] and third["figstep/1_2"] == second["figstep/1_2"]


@pytest.mark.parametrize("digit", ["\u00b2", "\u0661", "\uff11", "0", "1" * 5000])
def test_figstep_ids_are_positive_ascii_integers(shared_data: Path, tmp_path: Path, digit: str) -> None:
    lines = figstep_lines(shared_data)
    root = write_csv(tmp_path / "figstep", [lines[0], lines[1], lines[2].replace(",1,2,", f",{digit},2,", 1)])
    errors = errors_of(load_rows(root, "baseline"))
    assert errors["baseline/1_1"] is None
    assert "record #1: field 'category_id': expected a positive integer" in errors["baseline/row-1"]


def test_figstep_bad_rows_fail_alone_and_equal_ids_are_one_item(shared_data: Path, tmp_path: Path) -> None:
    lines = figstep_lines(shared_data)
    padded = lines[1].replace(",1,1,", ",01,1,", 1)  # the same item as 1_1
    rows = [lines[0], lines[1], "ForbidQI", "ForbidQI,2", "ForbidQI,,,x,q,i", "ForbidQI,,,y,q2,i2", padded, lines[2]]
    root = write_csv(tmp_path / "figstep", rows)
    dataset = load_rows(root, "all")
    errors = errors_of(dataset)
    assert len(dataset) == 2 * 7  # two queries per row, nothing dropped
    assert errors["figstep/1_1"] is None and errors["baseline/1_2"] is None
    assert "record #1: field 'category_id': missing or empty" in errors["figstep/row-1"]
    assert "record #2: field 'task_id': missing or empty" in errors["baseline/row-2"]
    assert "record #3: field 'category_id'" in errors["figstep/row-3"] and "record #4" in errors["figstep/row-4"]
    repeated = [e for e in errors.values() if e and "duplicate id" in e]
    assert len(repeated) == 2 and all("record #5 (id 1_1)" in e and "first at record #0" in e for e in repeated)


def test_figstep_csv_with_a_byte_order_mark_loads(shared_data: Path, tmp_path: Path) -> None:
    root = write_csv(tmp_path / "figstep", figstep_lines(shared_data)[:3], encoding="utf-8-sig")
    dataset = load_rows(root, "baseline")
    assert [s.id for s in dataset] == ["baseline/1_1", "baseline/1_2"]
    assert not any(LOAD_ERROR_KEY in s.metadata for s in dataset)


def test_figstep_overlong_field_fails_its_row_alone(shared_data: Path, tmp_path: Path) -> None:
    lines = figstep_lines(shared_data)
    long_row = ",".join(lines[2].split(",")[:-1] + ['"' + "x" * 140_000 + '"'])
    root = write_csv(tmp_path / "figstep", [lines[0], lines[1], long_row, lines[3]])
    limit = csv.field_size_limit()
    errors = errors_of(load_rows(root, "baseline"))
    assert csv.field_size_limit() == limit  # the process-wide limit is restored
    assert errors["baseline/1_1"] is None and errors["baseline/1_3"] is None
    assert "record #1 (id 1_2): field 'instruction': 140,000 characters (limit 131,072)" in errors["baseline/1_2"]


# --- MM-SafetyBench -----------------------------------------------------------------------------------


def mmsb_copy(root: Path, shared_data: Path) -> Path:
    shutil.copytree(shared_data / "mm-safetybench", root)
    return root


def write_tiny(root: Path, entries: list[dict]) -> None:
    (root / "TinyVersion_ID_List.json").write_text(json.dumps(entries))


def test_mmsb_tiny_ids_without_a_record_fail_as_their_own_samples(shared_data: Path, tmp_path: Path) -> None:
    root = mmsb_copy(tmp_path / "mmsb", shared_data)
    entries = json.loads((root / "TinyVersion_ID_List.json").read_text())
    entries[1]["Sampled_ID_List"] += [99999, 99999]  # an id absent from 02-HateSpeech (listed twice: one item)
    entries[2]["Sampled_ID_List"] += [[1, 2], None, True, "7"]
    write_tiny(root, entries)
    dataset = load_mm_safetybench("02-HateSpeech,03-Malware_Generation", "text,TYPO", tiny=True, data_dir=root)
    errors = errors_of(dataset)
    tiny = str(root / "TinyVersion_ID_List.json")
    listed = len(entries[1]["Sampled_ID_List"]) - 1 + len(entries[2]["Sampled_ID_List"])
    assert len(dataset) == 2 * listed and len(errors) == len(dataset)
    missing = errors["02-HateSpeech/text/99999"]
    assert missing.startswith(f"{tiny}: record #1 (id 02-HateSpeech): field 'Sampled_ID_List[16]': id '99999'")
    assert "has no record in" in missing and errors["02-HateSpeech/TYPO/99999"] == missing
    position = len(entries[2]["Sampled_ID_List"]) - 4
    for offset, kind in enumerate(("list", "NoneType", "bool")):
        error = errors[f"03-Malware_Generation/text/#tiny-{position + offset}"]
        assert f"field 'Sampled_ID_List[{position + offset}]': expected an integer or text id, got {kind}" in error
    assert errors["03-Malware_Generation/text/7"] is None  # a text id names its record like an integer one
    assert sum(e is not None for e in errors.values()) == 2 * 4


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda e: e[0].update(Scenario="01-Illegal_Activity"), "record #0 .*'Scenario': '01-Illegal_Activity' is not"),
        (lambda e: e[1].update(Scenario="01-Illegal_Activitiy"), "record #1 .*'Scenario': listed twice"),
        (lambda e: e.pop(0), "no entry for scenario\\(s\\) 01-Illegal_Activitiy"),
    ],
)
def test_mmsb_tiny_list_naming_scenarios_wrongly_stops_the_load(shared_data: Path, tmp_path: Path, change, problem):
    root = mmsb_copy(tmp_path / "mmsb", shared_data)
    entries = json.loads((root / "TinyVersion_ID_List.json").read_text())
    change(entries)
    write_tiny(root, entries)
    with pytest.raises(DataError, match=f"TinyVersion_ID_List.json.*{problem}"):
        load_mm_safetybench("all", "text", tiny=True, data_dir=root)


def test_mmsb_image_folder_may_link_to_another_disk(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "mmsb"
    shutil.copytree(shared_data / "mm-safetybench" / "processed_questions", root / "processed_questions")
    elsewhere = tmp_path / "other-disk" / "imgs"
    keys = json.loads((root / "processed_questions" / "06-Fraud.json").read_text())
    (elsewhere / "06-Fraud" / "SD").mkdir(parents=True)
    for key in keys:
        (elsewhere / "06-Fraud" / "SD" / f"{key}.jpg").write_bytes(png_bytes())
    (tmp_path / "secret.jpg").write_bytes(png_bytes())
    (elsewhere / "06-Fraud" / "SD" / "0.jpg").unlink()
    (elsewhere / "06-Fraud" / "SD" / "0.jpg").symlink_to(tmp_path / "secret.jpg")  # still confined to imgs/
    (root / "imgs").symlink_to(elsewhere)
    errors = errors_of(load_mm_safetybench("06-Fraud", "SD", data_dir=root, cache_dir=tmp_path / "cache"))
    assert len(errors) == 154 and sum(e is not None for e in errors.values()) == 1
    assert "escapes the data root" in errors["06-Fraud/SD/0"]


# --- VLGuard ------------------------------------------------------------------------------------------


def real_vlguard(shared_data: Path) -> list[dict]:
    return json.loads((shared_data / "vlguard" / "test.json").read_text())


def vlguard_copy(root: Path, records: list[dict], shared_data: Path, references: object = None) -> Path:
    """A local VLGuard copy of `records`, with the real reference answers unless `references` is given."""
    (root / "test").mkdir(parents=True)
    (root / "test.json").write_text(json.dumps(records))
    if references is None:
        references = json.loads((shared_data / "vlguard" / "gpt4_safe_safes.json").read_text())
    (root / "gpt4_safe_safes.json").write_text(json.dumps(references))
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("image"), str):
            (root / "test" / record["image"]).parent.mkdir(parents=True, exist_ok=True)
            (root / "test" / record["image"]).write_bytes(png_bytes())
    return root


def test_vlguard_bad_reference_row_fails_only_its_safe_safes_sample(shared_data: Path, tmp_path: Path) -> None:
    records = real_vlguard(shared_data)[:10]
    references = json.loads((shared_data / "vlguard" / "gpt4_safe_safes.json").read_text())
    hit = next(r for r in records if r["safe"])
    row = next(i for i, ref in enumerate(references) if ref["id"] == hit["id"])
    references[row]["response"] = None
    references.append({"id": ["unreadable"], "response": "r"})  # a row no sample can be tied to
    root = vlguard_copy(tmp_path, records, shared_data, references)
    dataset = load_vlguard(data_dir=root)
    errors = errors_of(dataset)
    assert len(dataset) == sum(1 if not r["safe"] else 2 for r in records)
    expected = f"gpt4_safe_safes.json: record #{row} (id {hit['id']}): field 'response': expected str, got NoneType"
    assert expected in errors[f"safe_safes/{hit['id']}"]
    assert [i for i, e in errors.items() if e] == [f"safe_safes/{hit['id']}"]
    without_references = load_vlguard("unsafes,safe_unsafes", data_dir=root)
    assert len(without_references) == len(records) and not any(LOAD_ERROR_KEY in s.metadata for s in without_references)


def test_vlguard_missing_reference_is_a_data_error_not_a_judge_failure(shared_data: Path, tmp_path: Path) -> None:
    records = real_vlguard(shared_data)[:10]
    safe = [r for r in records if r["safe"]]
    references = json.loads((shared_data / "vlguard" / "gpt4_safe_safes.json").read_text())
    references = [ref for ref in references if ref["id"] != safe[0]["id"]]
    root = vlguard_copy(tmp_path, records, shared_data, references)
    dataset = load_vlguard("safe_safes", data_dir=root)
    errors = errors_of(dataset)
    assert len(dataset) == len(safe)
    assert errors[f"safe_safes/{safe[0]['id']}"] == (
        f"file {root / 'gpt4_safe_safes.json'}: field 'id': no reference answer for id {safe[0]['id']!r}"
    )
    assert all(isinstance(s.metadata["reference_answer"], str) for s in dataset if LOAD_ERROR_KEY not in s.metadata)
    assert sum(e is not None for e in errors.values()) == 1


def test_vlguard_bad_record_fails_as_the_samples_it_would_give(shared_data: Path, tmp_path: Path) -> None:
    records = [dict(r) for r in real_vlguard(shared_data)[:10]]
    safe = next(r for r in records if r["safe"])
    unsafe = next(r for r in records if not r["safe"])
    safe["harmful_subcategory"] = None
    unsafe["harmful_category"] = 5
    records.append({"id": "flagless", "image": "x.png", "instr-resp": []})
    root = vlguard_copy(tmp_path, records, shared_data)
    subsets = Counter(s.metadata["subset"] for s in load_vlguard(data_dir=root) if LOAD_ERROR_KEY in s.metadata)
    assert subsets == {"safe_safes": 1, "safe_unsafes": 1, "unsafes": 1, "unknown": 1}
    errors = errors_of(load_vlguard(data_dir=root))
    assert "field 'harmful_subcategory': expected str, got NoneType" in errors[f"safe_safes/{safe['id']}"]
    assert "field 'harmful_subcategory'" in errors[f"safe_unsafes/{safe['id']}"]
    assert "field 'safe': missing" in errors["unknown/flagless"]
    only_safe_safes = errors_of(load_vlguard("safe_safes", data_dir=root))  # the unsafe image is not in it
    assert not any(unsafe["id"] in str(i) for i in only_safe_safes)
    assert [i for i, e in only_safe_safes.items() if e] == [f"safe_safes/{safe['id']}", "unknown/flagless"]


def test_vlguard_unsafe_image_must_name_its_harm_category(shared_data: Path, tmp_path: Path) -> None:
    records = [dict(r) for r in real_vlguard(shared_data)[:10]]
    unsafe = next(r for r in records if not r["safe"])
    del unsafe["harmful_category"]
    root = vlguard_copy(tmp_path, records, shared_data)
    dataset = load_vlguard("unsafes", data_dir=root)
    errors = errors_of(dataset)
    assert f"(id {unsafe['id']}): field 'harmful_category': missing" in errors[f"unsafes/{unsafe['id']}"]
    assert "safe image" not in {s.metadata["category"] for s in dataset}
