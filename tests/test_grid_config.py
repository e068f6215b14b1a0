"""A grid config is checked whole before anything runs: each role name, each benchmark and defense argument
against its function's signature, each key once; a mistake is one line naming the file and the field (exit 2).
Task names come from the config's content, never an entry's position, so a reordered config resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmguard_eval.cli.grid_config import load_config
from vlmguard_eval.cli.main import main

DEBUG_HINT = "(add --debug or set VLMGUARD_DEBUG=1 for the traceback)"


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VLMGUARD_DEBUG", raising=False)


def write_config(tmp_path: Path, demo_dir: Path, **change: object) -> Path:
    config = {
        "log_dir": str(tmp_path / "logs"),
        "models": ["scripted/refuse"],
        "roles": {"grader": "scripted/judge"},
        "benchmarks": [{"task": "siuo", "args": {"format": "mcqa", "data_dir": str(demo_dir)}}],
        "defenses": ["none"],
        "limit": 1,
        "display": "none",
        **change,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def refusal(capsys: pytest.CaptureFixture, config: Path) -> str:
    """The grid's one-line refusal (exit 2), the config file named in it."""
    assert main(["grid", str(config)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[1] == DEBUG_HINT, lines
    assert lines[0].startswith(f"vlmguard-eval grid: error: {config}: "), lines
    return lines[0]


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"roles": {"grader": "scripted/judge", "detoxifer": "scripted/rewriter"}},
            "'roles': unknown role 'detoxifer' (did you mean 'detoxifier'?); valid: grader,",
        ),
        (
            {"benchmarks": [{"task": "siuo", "args": {"epochs": "two"}}]},
            "benchmarks[0].args.epochs must be int, got 'two'",
        ),
        (
            {"benchmarks": [{"task": "siuo", "args": {"unified": "no"}}]},
            "benchmarks[0].args.unified must be bool, got 'no'",
        ),
        (
            {"benchmarks": [{"task": "siuo", "args": {"fromat": "mcqa"}}]},
            "benchmarks[0].args: benchmark siuo has no argument 'fromat' (did you mean 'format'?); valid: format,",
        ),
        (
            {"defenses": ["none", {"name": "vlmguard", "args": {"max_tokens": "lots"}}]},
            "defenses[1].args.max_tokens must be int | None, got 'lots'",
        ),
        (
            {"defenses": [{"name": "guard_filter", "args": {"mdoe": "input"}}]},
            "defenses[0].args: defense guard_filter has no argument 'mdoe' (did you mean 'mode'?)",
        ),
        ({"workers": 2, "display": "full"}, "'display: full' cannot run with workers: 2"),
        ({"display": "nonee"}, "'display' must be one of full, conversation, rich, plain, log, none, got 'nonee'"),
    ],
)
def test_a_wrong_name_or_type_in_a_grid_config_is_one_line_naming_the_field(
    change: dict, message: str, demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert message in refusal(capsys, write_config(tmp_path, demo_dir, **change))
    assert not list(tmp_path.rglob("*.eval"))


def test_a_key_given_twice_is_refused_with_its_lines(demo_dir: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "grid.yaml"
    config.write_text(
        f"log_dir: {tmp_path / 'logs'}\nmodels: [scripted/refuse]\ndefenses: [none, self_reminder]\n"
        f"benchmarks: [{{task: siuo, args: {{format: mcqa, data_dir: {demo_dir}}}}}]\n"
        "display: none\ndefenses: [safety_prompt]\n"
    )
    assert "line 6: duplicate key 'defenses' (first at line 3)" in refusal(capsys, config)
    nested = tmp_path / "nested.yaml"
    nested.write_text(config.read_text().replace("defenses: [safety_prompt]\n", "roles: {grader: a, grader: b}\n"))
    assert "line 6: duplicate key 'grader' (first at line 6)" in refusal(capsys, nested)


def test_a_log_dir_under_home_is_the_homes(demo_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_config(write_config(tmp_path, demo_dir, log_dir="~/grid", report_dir="~/report"))
    assert config.log_dir == str(tmp_path / "home" / "grid") and config.report_dir == str(tmp_path / "home" / "report")


def test_reordered_benchmarks_resume_without_new_logs(
    demo_dir: Path, demo_vlguard_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    siuo = {"task": "siuo", "args": {"format": "mcqa", "data_dir": str(demo_dir)}}
    vlguard = {"task": "vlguard", "args": {"data_dir": str(demo_vlguard_dir)}}
    assert main(["grid", str(write_config(tmp_path, demo_dir, benchmarks=[vlguard, siuo]))]) == 0
    logs = {p: p.stat().st_mtime for p in (tmp_path / "logs").rglob("*.eval")}
    assert len(logs) == 2
    assert main(["grid", str(write_config(tmp_path, demo_dir, benchmarks=[siuo, vlguard]))]) == 0, capsys.readouterr()
    assert {p: p.stat().st_mtime for p in (tmp_path / "logs").rglob("*.eval")} == logs


def test_yaml_merge_keys_are_no_duplicates_and_may_be_overridden(tmp_path: Path, demo_dir: Path) -> None:
    """`<<: *anchor` shares args between entries (YAML's merge key); a key given beside it overrides the merged one."""
    path = tmp_path / "grid.yaml"
    path.write_text(
        f"""log_dir: {tmp_path / "logs"}
models: [scripted/refuse]
roles: {{grader: scripted/judge}}
benchmarks:
  - task: siuo
    args: &common {{data_dir: {demo_dir}, format: gen}}
  - task: siuo
    args:
      <<: *common
      format: mcqa
defenses: [none]
"""
    )
    config = load_config(path)
    assert [bench["args"]["format"] for bench in config.benchmarks] == ["gen", "mcqa"]
    assert config.benchmarks[1]["args"]["data_dir"] == str(demo_dir)
