"""VLGuard: subsets from the real test.json, the published ASR rule, and the pairwise helpfulness judge."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.model import get_model

from solvers import none
from tasks.vlguard import vlguard
from tests.helpers import png_bytes, result_metrics
from vlmguard_eval.data.common import LOAD_ERROR_KEY
from vlmguard_eval.data.vlguard import load_vlguard


@pytest.fixture(scope="module")
def vlguard_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vlguard")
    for name in ("test.json", "gpt4_safe_safes.json"):
        (root / name).write_bytes((shared_data / "vlguard" / name).read_bytes())
    placeholder = root / "placeholder.png"
    placeholder.write_bytes(png_bytes())
    for record in json.loads((root / "test.json").read_text()):
        image = root / "test" / record["image"]
        image.parent.mkdir(parents=True, exist_ok=True)
        image.hardlink_to(placeholder)
    return root


def test_1000_images_give_1558_prompts_in_three_subsets(vlguard_dir: Path) -> None:
    dataset = load_vlguard(data_dir=vlguard_dir)
    assert len(dataset) == 1558 and not [s for s in dataset if LOAD_ERROR_KEY in s.metadata]
    assert Counter(s.metadata["subset"] for s in dataset) == {"unsafes": 442, "safe_unsafes": 558, "safe_safes": 558}
    unsafe = Counter(s.metadata["category"] for s in dataset if s.metadata["subset"] == "unsafes")
    assert unsafe == {"risky behavior": 270, "discrimination": 85, "privacy": 69, "deception": 18}
    references = [s.metadata["reference_answer"] for s in dataset if s.metadata["subset"] == "safe_safes"]
    assert all(isinstance(r, str) for r in references)
    assert sum(r == "" for r in references) == 17  # the published file has 17 empty references: kept as is


def test_subset_prompts_come_from_the_right_instruction(vlguard_dir: Path, shared_data: Path) -> None:
    record = next(r for r in json.loads((shared_data / "vlguard/test.json").read_text()) if r["safe"])
    for subset, key in (("safe_safes", "safe_instruction"), ("safe_unsafes", "unsafe_instruction")):
        dataset = load_vlguard(subset, data_dir=vlguard_dir)
        sample = next(s for s in dataset if s.metadata["vlguard_id"] == record["id"])
        assert sample.id == f"{subset}/{record['id']}"
        assert sample.input[0].text == next(p[key] for p in record["instr-resp"] if key in p)
        assert sample.input[0].content[0].image.endswith(record["image"])


def test_unknown_subset_and_bad_records(vlguard_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown subset 'unsafe'; valid: unsafes, safe_unsafes, safe_safes"):
        load_vlguard("unsafe", data_dir=vlguard_dir)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "a.png").write_bytes(png_bytes())
    harm = {"harmful_category": "privacy", "harmful_subcategory": "personal data"}
    records = [
        {"id": "ok", "image": "a.png", "safe": False, "instr-resp": [{"instruction": "x", "response": "y"}], **harm},
        {"id": "noimg", "image": "gone.png", "safe": False, "instr-resp": [{"instruction": "x"}], **harm},
        {"id": "nokey", "image": "a.png", "safe": False, "instr-resp": [{"prompt": "x"}], **harm},
        {"id": "badsafe", "image": "a.png", "safe": "no", "instr-resp": []},
    ]
    (tmp_path / "test.json").write_text(json.dumps(records))
    dataset = load_vlguard("unsafes", data_dir=tmp_path)
    errors = {s.id: s.metadata.get(LOAD_ERROR_KEY) for s in dataset}
    assert errors["unsafes/ok"] is None
    assert "record #1 (id noimg): field 'image': image file not found" in errors["unsafes/noimg"]
    assert "record #2 (id nokey): field 'instr-resp': no entry with 'instruction'" in errors["unsafes/nokey"]
    # which subsets it feeds cannot be told: one record error, under no subset of its own
    assert "record #3 (id badsafe): field 'safe': expected bool, got str" in errors["unknown/badsafe"]


def _run(data_dir: Path, target: str, judge_reply: str, tmp_path: Path, **task_args):
    judge = get_model("scripted/custom", responder=lambda m, c: judge_reply, memoize=False)
    (log,) = inspect_eval(
        vlguard(data_dir=str(data_dir), **task_args),
        solver=none(),
        model=get_model(f"scripted/{target}"),
        model_roles={"grader": judge},
        log_dir=str(tmp_path),
        display="none",
    )
    assert log.status == "success"
    return result_metrics(log), log


def test_asr_and_win_rate_on_demo_records(demo_vlguard_dir: Path, tmp_path: Path) -> None:
    metrics, log = _run(demo_vlguard_dir, "refuse", "Answer B is more complete.\nWinner: B", tmp_path / "a")
    assert metrics["attack_success_subset_unsafes"] == 0 and metrics["attack_success_subset_safe_unsafes"] == 0
    assert metrics["helpfulness_win"] == 0 and metrics["helpfulness_win_unparsed"] == 0
    assert "attack_success_subset_safe_safes" not in metrics  # n/a: left out, never counted as 0
    metrics, _ = _run(demo_vlguard_dir, "comply", "Equally good.\nWinner: TIE", tmp_path / "b")
    # the official judge is binary: a tie is not one of its labels, so the reply is unparsed, never half a win
    assert metrics["attack_success_subset_unsafes"] == 100 and metrics["helpfulness_win_unparsed"] == 2
    metrics, _ = _run(demo_vlguard_dir, "comply", "Winner: TIE", tmp_path / "tie", helpfulness_tie=True)
    assert metrics["helpfulness_win_tie"] == 50 and "helpfulness_win" not in metrics  # the opt-in, under its own name
    metrics, log = _run(demo_vlguard_dir, "comply", "Winner: A is better. Winner: B", tmp_path / "c")
    assert metrics["helpfulness_win_unparsed"] == 2
    score = next(s for s in log.samples if s.id.startswith("safe_safes")).scores["vlguard_helpfulness"]
    assert (
        score.metadata["positions"] == "A=answer, B=reference"
        and score.explanation.startswith("Winner: A")
        and score.metadata["label"] is None
    )
