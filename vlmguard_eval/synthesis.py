"""Training data for the rewriter: source adapters, the three synthesis stages, and the SFT record.

The VLMGuard-R1 recipe (arXiv 2504.12661): from (image, prompt, safe response, unsafe response)
tuples, a teacher VLM (model role `teacher`) runs 1. hindsight analysis (what made the unsafe answer
unsafe), 2. multimodal causal analysis (text, image, together: a risk report), 3. prompt
optimization (the refined prompt). The SFT target is the rewriter's own output format
(`rewriter.RewriterOutput`), so training and inference share one definition. Templates are ours:
`prompts/synth_*.v1.txt`.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import Score, Scorer, Target, mean, scorer
from inspect_ai.solver import Generate, Solver, TaskState, solver

from .data.common import DataError, RecordRef, broken_sample, image_prompt, read_json, require_fields, resolve_image
from .defense import extra_call, fill_prompt, user_images, user_turn
from .rewriter import REWRITER_PROMPT_VERSION, RewriterOutput

SYNTH_TEMPLATE_VERSION = "v1"
TEACHER_ROLE = "teacher"
TARGET_ROLE = "target"  # produces the unsafe response when a source has none
STAGE_KEY = "synthesis"
BENIGN_HINDSIGHT = "The request is benign: a direct, helpful answer carries no real risk here."


def _record(prompt: str, image: Path, kind: str, safe: str, unsafe: str | None, ref: RecordRef) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "image_path": str(image),
        "kind": kind,
        "safe_response": safe,
        "unsafe_response": unsafe,
        "source_file": str(ref.file),
        "source_record": ref.label,
    }


def vlguard_train_records(path: Path, images: Path) -> list[tuple[str, dict[str, Any] | DataError]]:
    """VLGuard train.json: unsafe-image records and safe images' unsafe instructions are safety
    examples (their response is the safe reference; the unsafe one comes from the `target` role);
    safe instructions on safe images are helpfulness examples."""
    rows = read_json(path)
    if not isinstance(rows, list):
        raise DataError(path, "-", None, "expected a JSON list of records")
    out: list[tuple[str, dict[str, Any] | DataError]] = []
    for index, row in enumerate(rows):
        ref = RecordRef(path, index, row.get("id") if isinstance(row, dict) else None)
        base = ref.record_id if isinstance(ref.record_id, str) else f"record-{index}"
        try:
            require_fields(row, {"id": str, "image": str, "safe": bool, "instr-resp": list}, ref)
            image = resolve_image(images, row["image"], ref)
        except DataError as error:
            out.append((base, error))
            continue
        for position, pair in enumerate(row["instr-resp"]):
            if not isinstance(pair, dict) or not isinstance(pair.get("response"), str):
                out.append((f"{base}/{position}", ref.error(f"instr-resp[{position}].response", "missing or not text")))
                continue
            for key, kind in (
                ("instruction", "safety"),
                ("unsafe_instruction", "safety"),
                ("safe_instruction", "helpfulness"),
            ):
                if isinstance(pair.get(key), str):
                    out.append((f"{base}/{key}", _record(pair[key], image, kind, pair["response"], None, ref)))
    return out


def preference_jsonl_records(path: Path) -> list[tuple[str, dict[str, Any] | DataError]]:
    """Generic JSONL of {"image", "prompt", "chosen", "rejected"[, "kind", "id"]} (SPA-VL style);
    images relative to the file's folder."""
    out: list[tuple[str, dict[str, Any] | DataError]] = []
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            if not line.strip():
                continue
            ref = RecordRef(path, index)
            try:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as ex:
                    raise ref.error(None, f"not valid JSON: {ex}") from None
                require_fields(row, {"image": str, "prompt": str, "chosen": str, "rejected": str}, ref)
                image = resolve_image(path.parent, row["image"], ref)
                kind = row.get("kind", "safety")
                if kind not in ("safety", "helpfulness"):
                    raise ref.error("kind", f"{kind!r} is not safety or helpfulness")
                out.append(
                    (
                        str(row.get("id", index)),
                        _record(row["prompt"], image, kind, row["chosen"], row["rejected"], ref),
                    )
                )
            except DataError as error:
                out.append((f"line-{index}", error))
    return out


def mix(records: list[tuple[str, Any]], helpfulness_ratio: float | None, seed: int) -> list[tuple[str, Any]]:
    """Keep all safety examples and enough helpfulness ones for the ratio (None: keep everything)."""
    if helpfulness_ratio is None:
        return records
    if not 0 <= helpfulness_ratio < 1:
        raise ValueError("helpfulness_ratio must be in [0, 1)")
    good = [r for r in records if isinstance(r[1], dict)]
    safety = [r for r in good if r[1]["kind"] == "safety"]
    helpful = [r for r in good if r[1]["kind"] == "helpfulness"]
    wanted = round(len(safety) * helpfulness_ratio / (1 - helpfulness_ratio))
    chosen = set(id(r) for r in random.Random(seed).sample(helpful, min(wanted, len(helpful))))
    return [r for r in records if not isinstance(r[1], dict) or r[1]["kind"] == "safety" or id(r) in chosen]


def synthesis_dataset(records: list[tuple[str, dict[str, Any] | DataError]]) -> MemoryDataset:
    samples = []
    for sample_id, record in records:
        if isinstance(record, DataError):
            samples.append(broken_sample(sample_id, record, {"category": "broken"}))
        else:
            samples.append(
                Sample(
                    id=sample_id,
                    input=image_prompt(Path(record["image_path"]), record["prompt"]),
                    metadata={**record, "category": record["kind"]},
                )
            )
    return MemoryDataset(samples, name="rewriter_synthesis")


def _tagged(text: str, tag: str) -> str | None:
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL | re.IGNORECASE)
    return found[0].strip() if len(found) == 1 and found[0].strip() else None


def _stage_failure(state: TaskState) -> str | None:
    """Why an earlier stage failed for this sample, or None."""
    return (state.store.get(STAGE_KEY) or {}).get("failed")


async def _run_stage(
    state: TaskState, stage: str, template: str, tag: str, fields: dict[str, str], images: bool = True
) -> str | None:
    """One teacher call; its tagged output, or None (and the sample marked failed at this stage)."""
    prompt = fill_prompt(template, SYNTH_TEMPLATE_VERSION, **fields)
    reply = await extra_call(
        state,
        TEACHER_ROLE,
        stage,
        user_turn(user_images(state) if images else [], prompt),
        GenerateConfig(temperature=0.0),
    )
    result = _tagged(reply.completion, tag)
    record = state.store.get(STAGE_KEY) or {}
    record[stage] = reply.completion
    if result is None:
        record["failed"] = f"{stage}: no single non-empty <{tag}> block"
    state.store.set(STAGE_KEY, record)
    return result


@solver
def unsafe_response() -> Solver:
    """Stage 0: when a safety example has no unsafe response, the `target` role writes one."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        meta = state.metadata
        if meta["kind"] == "safety" and not meta.get("unsafe_response"):
            reply = await extra_call(
                state, TARGET_ROLE, "unsafe-response", user_turn(user_images(state), meta["prompt"])
            )
            meta["unsafe_response"] = reply.completion
        return state

    return solve


@solver
def hindsight_analysis() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        meta = state.metadata
        if meta["kind"] == "helpfulness":
            meta["hindsight"] = BENIGN_HINDSIGHT
            return state
        fields = {
            "prompt": meta["prompt"],
            "safe_response": meta["safe_response"],
            "unsafe_response": meta["unsafe_response"],
        }
        meta["hindsight"] = await _run_stage(state, "hindsight", "synth_hindsight", "hindsight", fields)
        return state

    return solve


@solver
def causal_analysis() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        if _stage_failure(state) is None:
            fields = {"prompt": state.metadata["prompt"], "hindsight": state.metadata["hindsight"]}
            state.metadata["risk_report"] = await _run_stage(state, "causal", "synth_causal", "risk_report", fields)
        return state

    return solve


@solver
def prompt_optimization() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        if _stage_failure(state) is None:
            fields = {"prompt": state.metadata["prompt"], "risk_report": state.metadata["risk_report"]}
            state.metadata["refined_prompt"] = await _run_stage(
                state, "optimize", "synth_optimize", "refined_prompt", fields
            )
        return state

    return solve


def sft_record(meta: dict[str, Any]) -> dict[str, Any]:
    """The SFT example: image, original prompt, and the rewriter's target text."""
    analysis = f"Foresight: {meta['hindsight']}\n{meta['risk_report']}"
    target = RewriterOutput(analysis=analysis, refined_prompt=meta["refined_prompt"]).render()
    return {
        "image": meta["image_path"],
        "prompt": meta["prompt"],
        "target": target,
        "kind": meta["kind"],
        "source_file": meta["source_file"],
        "source_record": meta["source_record"],
        "rewriter_prompt_version": REWRITER_PROMPT_VERSION,
    }


@scorer(metrics={"kept": [mean()]})
def synthesis_outcome() -> Scorer:
    """1 when all stages parsed and the SFT record was built (kept), 0 when dropped, with the reason."""

    async def score(state: TaskState, target: Target) -> Score:
        failure = _stage_failure(state)
        if failure:
            return Score(value={"kept": 0}, explanation=f"dropped: {failure}", metadata={"dropped": failure})
        return Score(value={"kept": 1}, explanation="kept", metadata={"record": sft_record(state.metadata)})

    return score


def export_sft(log_location: str, out_dir: str | Path) -> dict[str, Any]:
    """Write OUT/sft.jsonl, OUT/hf (datasets.load_from_disk) and OUT/manifest.json from a synthesis log."""
    from collections import Counter

    from inspect_ai.log import read_eval_log

    log = read_eval_log(log_location)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, dropped, errors = [], Counter(), []
    for sample in log.samples or []:
        if sample.error:
            errors.append({"id": sample.id, "error": sample.error.message.splitlines()[0][:300]})
            continue
        score = sample.scores["synthesis_outcome"]
        if score.value["kept"]:
            records.append(score.metadata["record"])
        else:
            dropped[score.metadata["dropped"].split(":")[0]] += 1
    with open(out / "sft.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if records:
        import datasets

        datasets.Dataset.from_list(records).save_to_disk(str(out / "hf"))
    roles = log.eval.model_roles or {}
    manifest = {
        "synthesis_template_version": SYNTH_TEMPLATE_VERSION,
        "rewriter_prompt_version": REWRITER_PROMPT_VERSION,
        "teacher": roles[TEACHER_ROLE].model if TEACHER_ROLE in roles else None,
        "unsafe_response_model": roles[TARGET_ROLE].model if TARGET_ROLE in roles else None,
        "source": log.eval.task_args,
        "log": log.location,
        "counts": {
            "samples": len(log.samples or []),
            "kept": len(records),
            "dropped_by_stage": dict(dropped),
            "sample_errors": len(errors),
            "kept_by_kind": dict(Counter(r["kind"] for r in records)),
        },
        "errors": errors,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest
