"""Rewriter training data: the real VLGuard train.json, SPA-VL and VLSBench adapters, mixed recipes,
the cleaning stages (unsafe check, echoed instructions, the rewriter's own parser) and the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from inspect_ai import eval as inspect_eval
from inspect_ai.model import get_model

from tests.helpers import png_bytes
from vlmguard_eval.rewriter.format import parse_rewriter_output
from vlmguard_eval.training.export import export_sft
from vlmguard_eval.training.recipe import RecipeError, draw, load_recipe, recipe_from_cli
from vlmguard_eval.training.sources import (
    HELD_OUT_TEST_OVERLAP,
    load_source,
    preference_jsonl,
    spa_vl,
    vlguard_train,
    vlsbench,
)

REPO = Path(__file__).resolve().parents[1]
REFINED = "Please answer with care: explain the risks first."


def teacher(messages, config):
    """A well-behaved teacher, except for the request containing ECHO-TRIGGER, whose risk report echoes our template."""
    text = messages[-1].text
    if "Write the answer a careful, helpful assistant would give" in text:
        return "<safe_answer>I can help with the safe part only.</safe_answer>"
    if "Decide whether the answer is unsafe" in text:
        return "It helps with the harm.\nVerdict: UNSAFE"
    if "Compare the two answers in hindsight" in text:
        return "<hindsight>The answer went along with a risky request.</hindsight>"
    if "Analyse where the risk comes from" in text:
        if "ECHO-TRIGGER" in text:
            return "<risk_report>\nText: one or two sentences on the text alone\n</risk_report>"
        return "<risk_report>\nText: fine.\nImage: fine.\nTogether: risky.\n</risk_report>"
    return f"<refined_prompt>{REFINED}</refined_prompt>"


def roles(checker=None, responder="scripted/comply"):
    return {
        "teacher": get_model("scripted/teacher", responder=teacher, memoize=False),
        "checker": checker or get_model("scripted/checker", responder=teacher, memoize=False),
        "responder": responder,
    }


@pytest.fixture(scope="module")
def real_vlguard(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full real train.json with a placeholder image at every path it names."""
    root = tmp_path_factory.mktemp("vlguard-train")
    (root / "train.json").write_bytes((shared_data / "vlguard" / "train.json").read_bytes())
    placeholder = png_bytes()
    for row in json.loads((root / "train.json").read_text()):
        image = root / "train" / row["image"]
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(placeholder)
    return root


def test_real_vlguard_file_ids_unique_and_collision_reported(shared_data: Path) -> None:
    # listing needs no images: they resolve only for drawn candidates
    load = vlguard_train(shared_data / "vlguard" / "train.json", Path("/nonexistent"))
    ids = [c.sample_id for c in load.candidates]
    assert len(ids) == len(set(ids)) == 2977 and load.excluded == {}
    assert load.id_collisions == {"Ads_303871": ["#59", "#152"]}
    kinds = [c.kind for c in load.candidates]
    assert kinds.count("safety") == 2000 and kinds.count("helpfulness") == 977 and None not in kinds
    both = [c for c in load.candidates if "/Ads_303871/" in c.sample_id]
    assert {c.sample_id.split("/")[1] for c in both} == {"59", "152"} and len(both) == 4
    assert all(c.fields["id_shared_with"] == ["#59", "#152"] for c in both)
    assert all(c.fields["unsafe_response"] is None for c in load.candidates)  # the responder writes them


def test_real_vlguard_train_records_in_the_test_set_are_excluded(shared_data: Path) -> None:
    """The real train.json and test.json share 8 records (by id and image): beside the test.json, none of
    them reaches training, and each is listed under its reason."""
    load = load_source({"name": "vlguard", "path": str(shared_data / "vlguard" / "train.json")})
    overlap = load.excluded[HELD_OUT_TEST_OVERLAP]
    assert len(overlap) == 8 and "#188 (id Ads_295003)" in overlap and "#1003 (id harm-p_2833)" in overlap
    kinds = [c.kind for c in load.candidates]
    assert kinds.count("safety") == 1992 and kinds.count("helpfulness") == 974
    test = json.loads((shared_data / "vlguard" / "test.json").read_text())
    held_out = {r["id"] for r in test} | {r["image"] for r in test}
    assert not any(c.sample_id.split("/")[2] in held_out for c in load.candidates)


def test_synth_runs_on_the_full_real_vlguard_file(real_vlguard: Path, tmp_path: Path) -> None:
    from tasks.synthesize import synthesize

    task = synthesize(source="vlguard", path=str(real_vlguard / "train.json"))
    (log,) = inspect_eval(
        task,
        model="scripted/echo",
        model_roles=roles(),
        log_dir=str(tmp_path / "logs"),
        display="none",
    )
    assert log.status == "success", log.error
    manifest = export_sft(log.location, tmp_path / "out")
    counts = manifest["counts"]
    assert counts["samples"] == 2977 and counts["sample_errors"] == 0
    # every well-formed example of the real file is kept
    assert counts["kept"] == 2977, counts["dropped_by_stage"]
    assert counts["kept_by_kind"] == {"safety": 2000, "helpfulness": 977}
    assert manifest["id_collisions"] == {"vlguard": {"Ads_303871": ["#59", "#152"]}}
    assert manifest["composition"]["sources"]["vlguard"]["safety_drawn"] == 2000


def test_preference_jsonl_bad_lines_fail_alone(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes())
    good = {"image": "a.png", "prompt": "p", "chosen": "safe", "rejected": "unsafe"}
    lines = [
        json.dumps(good).encode(),
        json.dumps({"image": "a.png", "prompt": "p", "chosen": "safe"}).encode(),
        json.dumps({**good, "image": "../x.png"}).encode(),
        b"{not json",
        b'{"image": "a.png", "prompt": "\xff\xfe", "chosen": "s", "rejected": "u"}',
        json.dumps({**good, "prompt": "second good"}).encode(),
    ]
    path = tmp_path / "pref.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    records = [c.materialize() for c in preference_jsonl(path).candidates]
    assert records[0]["unsafe_response"] == "unsafe" and records[5]["prompt"] == "second good"
    errors = [str(r) for r in records[1:5]]
    assert "record #2: field 'rejected': missing" in errors[0]
    assert "escapes the data root" in errors[1]
    assert "line 4: not valid JSON" in errors[2]
    assert f"{path}: record line 5: not valid UTF-8 at byte" in errors[3]


def test_preference_blank_prompt_fails_alone_at_the_source(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes())
    good = {"image": "a.png", "prompt": "p", "chosen": "safe", "rejected": "unsafe"}
    path = tmp_path / "pref.jsonl"
    path.write_text(json.dumps({**good, "prompt": "  "}) + "\n" + json.dumps(good) + "\n")
    blank, kept = [c.materialize() for c in preference_jsonl(path).candidates]
    assert f"{path}: record #1: field 'prompt': missing, empty or not text" in str(blank)
    assert kept["prompt"] == "p"


def write_small_vlguard(root: Path) -> Path:
    """A VLGuard folder: train.json (one record with two `instruction` pairs, one sharing an id with the
    test set, one sharing an image with it, one clean) beside a test.json, images in train/."""
    (root / "train").mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png", "d.png"):
        (root / "train" / name).write_bytes(png_bytes())
    pairs = [{"instruction": "do A", "response": "no"}, {"instruction": "do B", "response": "no"}]
    train = [
        {"id": "x", "image": "a.png", "safe": False, "instr-resp": pairs},
        {"id": "in-test", "image": "b.png", "safe": False, "instr-resp": pairs[:1]},
        {"id": "y", "image": "test-image.png", "safe": False, "instr-resp": pairs[:1]},
        {"id": "z", "image": "d.png", "safe": False, "instr-resp": [{"instruction": "do C", "response": "no"}]},
    ]
    test = [{"id": "in-test", "image": "other.png"}, {"id": "t", "image": "test-image.png"}, "not a record"]
    (root / "train.json").write_text(json.dumps(train))
    (root / "test.json").write_text(json.dumps(test))
    return root / "train.json"


def test_vlguard_repeated_keys_and_held_out_overlap_in_a_synthesis_run(tmp_path: Path) -> None:
    """Two `instruction` pairs in one record give two samples (the run is not refused for a repeated id);
    records in the test set beside train.json never become samples and are counted in the manifest;
    under --limit the manifest says which sources the run actually covered."""
    from tasks.synthesize import synthesize

    train = write_small_vlguard(tmp_path / "vlguard")
    pref = tmp_path / "pref.jsonl"
    (tmp_path / "p.png").write_bytes(png_bytes())
    pref.write_text(json.dumps({"image": "p.png", "prompt": "q", "chosen": "safe", "rejected": "Sure."}) + "\n")
    recipe = {
        "seed": 0,
        "sources": [{"name": "vlguard", "path": str(train)}, {"name": "preference", "path": str(pref)}],
    }
    (log,) = inspect_eval(
        synthesize(recipe=recipe),
        model="scripted/echo",
        model_roles=roles(),
        log_dir=str(tmp_path / "logs"),
        display="none",
    )
    assert log.status == "success", log.error
    assert sorted(s.id for s in log.samples) == [
        "preference/line-1",
        "vlguard/0/x/0/instruction",
        "vlguard/0/x/1/instruction",
        "vlguard/3/z/0/instruction",
    ]
    manifest = export_sft(log.location, tmp_path / "out")
    counts = manifest["counts"]
    assert counts["samples"] == counts["kept"] == 4 and counts["sample_errors"] == 0
    assert counts["excluded_at_source"] == {"vlguard": {HELD_OUT_TEST_OVERLAP: 2}}
    assert manifest["composition"]["sources"]["vlguard"]["excluded"] == {
        HELD_OUT_TEST_OVERLAP: ["#1 (id in-test)", "#2 (id y)"]
    }
    assert counts["samples_by_source"] == {"vlguard": 3, "preference": 1} and counts["limit"] is None

    (log,) = inspect_eval(
        synthesize(recipe=recipe),
        model="scripted/echo",
        model_roles=roles(),
        limit=2,
        log_dir=str(tmp_path / "logs2"),
        display="none",
    )
    counts = export_sft(log.location, tmp_path / "out2")["counts"]
    assert counts["limit"] == 2 and counts["samples_by_source"] == {"vlguard": 2}


def test_a_repeated_sample_id_fails_alone() -> None:
    from vlmguard_eval.training.recipe import synthesis_dataset
    from vlmguard_eval.training.sources import Candidate

    fields = {"prompt": "p", "safe_response": "s", "unsafe_response": None, "source_file": "f", "source_record": "#0"}
    same = [Candidate("vlguard/0/x/instruction", "vlguard", "safety", fields, image=lambda: Path("a.png"))] * 2
    first, second = synthesis_dataset(same)
    assert first.id == "vlguard/0/x/instruction" and "load_error" not in first.metadata
    assert second.id != first.id and "duplicate id 'vlguard/0/x/instruction'" in second.metadata["load_error"]


def write_spa_vl(path: Path, rows: list[dict]) -> Path:
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "chosen": datasets.Value("string"),
            "rejected": datasets.Value("string"),
            "image_name": datasets.Value("string"),
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(path / "train-00000-of-00001.parquet"))
    return path


def test_spa_vl_adapter_published_parquet(tmp_path: Path) -> None:
    image = {"bytes": png_bytes(), "path": None}
    rows = [
        {
            "image": image,
            "question": "How to do this?",
            "chosen": "Safely...",
            "rejected": "Sure...",
            "image_name": "a/b/c/1.jpg",
        },
        {"image": image, "question": "", "chosen": "x", "rejected": "y", "image_name": "a/b/c/2.jpg"},
        {
            "image": {"bytes": b"not an image", "path": None},
            "question": "q",
            "chosen": "x",
            "rejected": "y",
            "image_name": "3.jpg",
        },
    ]
    load = spa_vl(str(write_spa_vl(tmp_path / "data", rows)))
    records = [c.materialize() for c in load.candidates]
    assert records[0]["prompt"] == "How to do this?" and records[0]["safe_response"] == "Safely..."
    assert records[0]["unsafe_response"] == "Sure..." and records[0]["kind"] == "safety"
    assert Path(records[0]["image_path"]).read_bytes() == png_bytes()
    assert "record #1 (id a/b/c/2.jpg): field 'question': missing, empty or not text" in str(records[1])
    assert "record #2 (id 3.jpg): field 'image': unreadable image" in str(records[2])


def test_spa_vl_embedded_images_take_the_loaders_checks(tmp_path: Path) -> None:
    """An embedded image is refused by format, bit depth and pixel bounds as any loader's image is, before it is
    written to the cache (no EPS opener, which would start Ghostscript, ever runs)."""
    import io

    from PIL import Image

    def png(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\nshowpage\n"
    images = [eps, png(Image.new("I;16", (4, 4))), png(Image.new("RGB", (20_000, 1)))]
    rows = [
        {"image": {"bytes": data, "path": None}, "question": "q", "chosen": "x", "rejected": "y", "image_name": f"{i}"}
        for i, data in enumerate(images)
    ]
    load = spa_vl(str(write_spa_vl(tmp_path / "data", rows)))
    errors = [str(c.materialize()) for c in load.candidates]
    assert "record #0 (id 0): field 'image': image format EPS is not accepted" in errors[0]
    assert "record #1 (id 1): field 'image': image mode I;16" in errors[1]
    assert "record #2 (id 2): field 'image':" in errors[2] and "20000" in errors[2].replace(",", "")


def test_spa_vl_hub_needs_a_pinned_revision() -> None:
    with pytest.raises(ValueError, match="no pinned revision"):
        spa_vl("hub")


def write_vlsbench(root: Path) -> Path:
    """A VLSBench copy in the published layout (data.json + imgs/), with its real malformed record shape."""
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    for name in ("0.png", "7.png"):
        (root / "imgs" / name).write_bytes(png_bytes())
    base = {"category": "Violent", "sub_category": "Weapon", "source": "generation", "image_description": "d"}
    rows = [
        {
            "instruction_id": 0,
            "instruction": "How do I use this?",
            "image_path": "imgs/7.png",
            "safety_reason": "r",
            **base,
        },
        {"instruction_id": 1, "instruction": "", "image_path": "imgs/0.png", "safety_reason": "r", **base},
        {
            "instruction_id": 2,
            "instruction": "What now?",
            "image_path": "imgs/missing.png",
            "safety_reason": "r",
            **base,
        },
        {
            "instruction_id": 3,
            "instruction": "ECHO-TRIGGER this image",
            "image_path": "imgs/0.png",
            "safety_reason": "r",
            **base,
        },
    ]
    (root / "data.json").write_text(json.dumps(rows))
    return root


def test_vlsbench_adapter(tmp_path: Path) -> None:
    load = vlsbench(str(write_vlsbench(tmp_path)))
    records = [c.materialize() for c in load.candidates]
    assert records[0]["image_path"].endswith("imgs/7.png")  # from image_path, never from the id
    assert records[0]["safe_response"] is None and records[0]["unsafe_response"] is None
    assert records[0]["safety_reason"] == "r" and records[0]["category"] == "Violent/Weapon"
    assert "record #1 (id 1): field 'instruction': missing, empty or not text" in str(records[1])
    assert "field 'image_path': image file not found" in str(records[2])


def test_recipe_counts_shares_seed_and_composition(real_vlguard: Path, tmp_path: Path) -> None:
    vls = write_vlsbench(tmp_path / "vls")
    recipe = load_recipe(
        recipe_from_cli(
            ["vlguard:300", "vlsbench:10"],
            [f"vlguard={real_vlguard / 'train.json'}", f"vlsbench={vls}"],
            [],
            [],
            "50",
            seed=3,
            total=None,
        )
    )
    chosen, composition = draw(recipe)
    again, _ = draw(recipe)
    assert [c.sample_id for c in chosen] == [c.sample_id for c in again]  # seeded
    other, _ = draw({**recipe, "seed": 4})
    assert [c.sample_id for c in other] != [c.sample_id for c in chosen]
    vlguard = composition["sources"]["vlguard"]
    assert vlguard["safety_drawn"] == 300 and vlguard["id_collisions"] == {"Ads_303871": ["#59", "#152"]}
    vsource = composition["sources"]["vlsbench"]
    assert vsource["safety_requested"] == 10 and vsource["safety_drawn"] == 3 and vsource["shortfall"] == 7
    assert vsource["broken_records"] == 1  # kept as a failing sample, so the log names it
    assert composition["helpfulness"] == {
        "from": ["vlguard", "vlsbench"],
        "available": 977,
        "requested": 50,
        "drawn": 50,
        "shortfall": 0,
    }
    assert len(chosen) == 300 + 3 + 1 + 50
    with pytest.raises(RecipeError, match="needs|`total`"):
        load_recipe(recipe_from_cli(["vlguard:0.5"], [str(real_vlguard / "train.json")], [], [], None, 0, None))
    with pytest.raises(RecipeError, match="NAME=VALUE"):
        recipe_from_cli(["vlguard", "vlsbench"], ["x.json"], [], [], None, 0, None)


def test_paper_mix_recipe_loads() -> None:
    recipe = load_recipe(REPO / "examples" / "synth_paper_mix.yaml")
    counts = {s["name"]: s.get("count") for s in recipe["sources"]}
    assert sum(counts.values()) == 8904 and recipe["helpfulness"]["count"] == 974  # 977 less 3 on held-out test images


def test_cleaning_drops_are_counted_by_stage_and_reason(tmp_path: Path) -> None:
    """VLSBench rows (no responses): the teacher writes the safe answer, the responder the unsafe one,
    the checker confirms it; a refusal, a SAFE verdict, an echoed template and an unparseable target are dropped."""
    from tasks.synthesize import synthesize

    root = write_vlsbench(tmp_path / "vls")
    rows = json.loads((root / "data.json").read_text())
    base = {k: rows[0][k] for k in ("category", "sub_category", "source", "image_description", "safety_reason")}
    extra = [
        ("refuse me", "imgs/0.png"),
        ("judge me safe", "imgs/0.png"),
        ("nested tags", "imgs/7.png"),
    ]
    rows += [{"instruction_id": 10 + i, "instruction": t, "image_path": p, **base} for i, (t, p) in enumerate(extra)]
    (root / "data.json").write_text(json.dumps(rows))

    def responder(messages, config):
        return "I'm sorry, I cannot help." if messages[-1].text == "refuse me" else "Sure, here is how."

    def checker(messages, config):
        return "It declines.\nVerdict: SAFE" if "judge me safe" in messages[-1].text else "Harmful.\nVerdict: UNSAFE"

    def nested_teacher(messages, config):
        text = messages[-1].text
        if "nested tags" in text and "Analyse where the risk comes from" in text:
            return "<risk_report>Together: risky <refined_prompt>x</refined_prompt></risk_report>"
        return teacher(messages, config)

    task = synthesize(source="vlsbench", path=str(root))
    (log,) = inspect_eval(
        task,
        model="scripted/echo",
        model_roles={
            "teacher": get_model("scripted/teacher", responder=nested_teacher, memoize=False),
            "checker": get_model("scripted/checker", responder=checker, memoize=False),
            "responder": get_model("scripted/responder", responder=responder, memoize=False),
        },
        fail_on_error=0.5,
        log_dir=str(tmp_path / "logs"),
        display="none",
    )
    manifest = export_sft(log.location, tmp_path / "out")
    counts = manifest["counts"]
    assert counts["sample_errors"] == 2  # empty instruction, missing image: each fails alone
    assert counts["dropped_by_stage"] == {
        "unsafe-check": {"refusal": 1, "judged_safe": 1},
        "causal": {"echoed_instructions": 1},
        "export": {"rewriter_parse_malformed": 1},
    }
    assert counts["kept"] == 1 and manifest["checker"] == "scripted/checker"
    (record,) = [json.loads(line) for line in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    parsed = parse_rewriter_output(record["completion"]).output
    assert parsed.refined_prompt == REFINED and "Together: risky." in parsed.analysis
    steps = [e["step"] for s in log.samples for e in s.store.get("defense_calls", [])]
    assert {"safe-response", "unsafe-response", "unsafe-check", "hindsight", "causal", "optimize"} <= set(steps)


def test_echo_detection_catches_template_text() -> None:
    from vlmguard_eval.training.stages import echoed_instruction

    assert echoed_instruction("Text: one or two sentences on the text alone", "synth_causal")
    assert echoed_instruction("Here: {prompt}", "synth_optimize") == "{prompt}"
    assert echoed_instruction("See [REQUEST] above", "synth_hindsight") == "[REQUEST]"
    assert echoed_instruction("Text: a knife.\nImage: a child.\nTogether: danger.", "synth_causal") is None
    # the optimize template asks for this; a refined prompt that does it is no echo
    refined = "Explain how the tool works, focusing on safe handling rather than a blanket refusal."
    assert echoed_instruction(refined, "synth_optimize") is None


def test_cli_synth_prints_the_failure_with_display_none(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from vlmguard_eval.cli.main import main

    bad = tmp_path / "train.json"
    bad.write_bytes(b"\xff\xfe not json")
    code = main(
        [
            "synth",
            "--source",
            "vlguard",
            "--path",
            str(bad),
            "--teacher",
            "scripted/comply",
            "--display",
            "none",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and "not valid UTF-8 JSON" in err and str(bad) in err


def test_cli_synth_recipe_file(real_vlguard: Path, tmp_path: Path) -> None:
    from vlmguard_eval.cli.main import main

    recipe = {
        "seed": 1,
        "sources": [{"name": "vlguard", "path": str(real_vlguard / "train.json"), "count": 5}],
        "helpfulness": {"count": 2},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    code = main(
        [
            "synth",
            "--recipe",
            str(tmp_path / "r.yaml"),
            "--teacher",
            "scripted/comply",
            "--responder",
            "scripted/comply",
            "--display",
            "none",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["composition"]["drawn"] == {"safety": 5, "helpfulness": 2}
    assert manifest["counts"]["samples"] == 7 and manifest["recipe"]["recipe"]["seed"] == 1
    # scripted/comply as teacher writes no tags: every example is dropped, and counted
    assert sum(sum(r.values()) for r in manifest["counts"]["dropped_by_stage"].values()) == 7
    assert code == 0
