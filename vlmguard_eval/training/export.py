"""The SFT export: one record per synthesized example that passed every stage, plus a manifest.

The last check is the rewriter's own: the completion we export must parse with
`rewriter.parse_rewriter_output` (one bounded refined prompt) and give back exactly the analysis and
refined prompt we built; otherwise the example is dropped at stage `export`. The manifest counts
every drop by stage and reason, every sample error, the records a source left out by reason
(`excluded_at_source`, e.g. VLGuard's `held_out_test_overlap`), the source composition drawn, the
samples actually run per source (fewer than drawn under `--limit`) and id collisions.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from inspect_ai.scorer import Score, Scorer, Target, mean, scorer
from inspect_ai.solver import TaskState

from vlmguard_eval.rewriter.format import RewriterOutput, parse_rewriter_output
from vlmguard_eval.rewriter.prompts import REWRITER_PROMPT_VERSION

from .stages import CHECKER_ROLE, RESPONDER_ROLE, SYNTH_TEMPLATE_VERSION, TEACHER_ROLE, stage_failure

COMPOSITION_KEY = "composition"


def sft_record(meta: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    """The SFT example (image, original prompt, the rewriter's completion), or why it cannot be one."""
    analysis = f"Foresight: {meta['hindsight']}\n{meta['risk_report']}"
    output = RewriterOutput(analysis=analysis, refined_prompt=meta["refined_prompt"])
    completion = output.render()
    parsed = parse_rewriter_output(completion)
    if parsed.output is None:
        return None, {"stage": "export", "reason": f"rewriter_parse_{parsed.failure}", "detail": parsed.detail}
    if parsed.output != RewriterOutput(analysis.strip(), meta["refined_prompt"].strip()):
        detail = "the parsed completion differs from what was built (nested or repeated tags)"
        return None, {"stage": "export", "reason": "rewriter_parse_mismatch", "detail": detail}
    record = {
        "image": meta["image_path"],
        "prompt": meta["prompt"],
        "completion": completion,
        "kind": meta["kind"],
        "source": meta.get("source"),
        "source_file": meta["source_file"],
        "source_record": meta["source_record"],
        "rewriter_prompt_version": REWRITER_PROMPT_VERSION,
    }
    return record, None


@scorer(metrics={"kept": [mean()]})
def synthesis_outcome() -> Scorer:
    """1 when every stage passed and the SFT record parses as rewriter output (kept); 0 when dropped, with
    the stage and reason."""

    async def score(state: TaskState, target: Target) -> Score:
        failure = stage_failure(state)
        record = None
        if failure is None:
            record, failure = sft_record(state.metadata)
        if failure is not None:
            explanation = f"dropped at {failure['stage']}: {failure['reason']} {failure.get('detail', '')}".strip()
            return Score(value={"kept": 0}, explanation=explanation, metadata={"dropped": failure})
        return Score(value={"kept": 1}, explanation="kept", metadata={"record": record})

    return score


def export_sft(log_location: str, out_dir: str | Path) -> dict[str, Any]:
    """Write OUT/sft.jsonl, OUT/hf (datasets.load_from_disk) and OUT/manifest.json from a synthesis log."""
    from inspect_ai.log import read_eval_log

    log = read_eval_log(log_location)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    dropped: dict[str, Counter[str]] = {}
    errors = []
    run_by_source = Counter(str((sample.metadata or {}).get("source")) for sample in log.samples or [])
    for sample in log.samples or []:
        if sample.error:
            errors.append({"id": sample.id, "error": sample.error.message.splitlines()[0][:300]})
            continue
        score = (sample.scores or {}).get("synthesis_outcome")
        if score is None:
            errors.append({"id": sample.id, "error": "no synthesis_outcome score (the sample did not finish)"})
        elif score.value["kept"]:
            records.append(score.metadata["record"])
        else:
            failure = score.metadata["dropped"]
            dropped.setdefault(failure["stage"], Counter())[failure["reason"]] += 1
    with open(out / "sft.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if records:
        import datasets

        datasets.Dataset.from_list(records).save_to_disk(str(out / "hf"))
    roles = log.eval.model_roles or {}
    composition = (log.eval.metadata or {}).get(COMPOSITION_KEY, {})
    manifest = {
        "synthesis_template_version": SYNTH_TEMPLATE_VERSION,
        "rewriter_prompt_version": REWRITER_PROMPT_VERSION,
        "teacher": roles[TEACHER_ROLE].model if TEACHER_ROLE in roles else None,
        "unsafe_response_model": roles[RESPONDER_ROLE].model if RESPONDER_ROLE in roles else None,
        "checker": roles[CHECKER_ROLE].model if CHECKER_ROLE in roles else None,
        "recipe": log.eval.task_args,
        "composition": composition,
        "id_collisions": {
            name: source["id_collisions"]
            for name, source in composition.get("sources", {}).items()
            if source.get("id_collisions")
        },
        "log": log.location,
        "status": log.status,
        "counts": {
            "samples": len(log.samples or []),
            "kept": len(records),
            "dropped_by_stage": {stage: dict(reasons) for stage, reasons in dropped.items()},
            "sample_errors": len(errors),
            "samples_by_source": dict(run_by_source),
            "limit": log.eval.config.limit,
            "excluded_at_source": {
                name: source["excluded_records"]
                for name, source in composition.get("sources", {}).items()
                if source.get("excluded_records")
            },
            "kept_by_kind": dict(Counter(r["kind"] for r in records)),
            "kept_by_source": dict(Counter(r["source"] for r in records)),
        },
        "errors": errors,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest
