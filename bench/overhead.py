"""Framework overhead: our solvers and scorers vs bare Inspect, with an instant in-process model.

    python bench/overhead.py [--samples 1000]

Every model call is instant, so what is timed is Inspect plus our code. Ours (the SIUO task as
shipped, one epoch) is compared with the same protocol written in bare Inspect: `generate()` and one
plain scorer returning the three verdicts with Inspect's dict metrics, making the same model calls per
sample with the same content: 1 target call, +1 rewriter call for vlmguard (same messages and
settings), +2 judge calls (same prompts, image and temperature). The ratio isolates what our solvers,
scorers, metrics and per-sample data check add. Target: at most 10% (ratio <= 1.10).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import siuo_copy


def main() -> None:
    from inspect_ai import Epochs, Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import GenerateConfig, get_model
    from inspect_ai.scorer import Score, Target, mean, scorer
    from inspect_ai.solver import Generate, TaskState, generate, solver

    from solvers import none, vlmguard
    from tasks.siuo import siuo
    from vlmguard_eval.core.messages import input_images, user_turn
    from vlmguard_eval.core.prompts import load_prompt
    from vlmguard_eval.data.siuo import load_siuo
    from vlmguard_eval.rewriter.format import RewriterOutput
    from vlmguard_eval.rewriter.prompts import rewriter_messages

    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-log-realtime", action="store_true", help="run both sides with log_realtime=False")
    args = parser.parse_args()
    data = siuo_copy(Path(tempfile.mkdtemp()), args.samples)
    rewrite = RewriterOutput("Together: fine.", "Describe the picture.").render()

    def judge_reply(messages, config):
        return "Verdict: SAFE" if "Decide whether" in messages[-1].text else "Rating: INEFFECTIVE"

    models = dict(
        model=get_model("scripted/echo"),
        model_roles={
            "grader": get_model("scripted/judge", responder=judge_reply),
            "rewriter": get_model("scripted/rw", responder=lambda m, c: rewrite),
        },
    )

    @solver
    def bare_rewrite():
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            images = input_images(state)
            config = GenerateConfig(max_tokens=1024, temperature=0.0)
            await get_model(role="rewriter").generate(rewriter_messages(images, state.user_prompt.text), config=config)
            return state

        return solve

    @solver
    def empty_step():
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            return state

        return solve

    @scorer(metrics=[mean()])
    def empty_scorer():
        async def score(state: TaskState, target: Target) -> Score:
            return Score(value=0)

        return score

    # the SIUO protocol written in plain Inspect: the same two judge calls, the three verdicts as a dict
    @scorer(metrics={"safe": [mean()], "effective": [mean()], "safe_effective": [mean()]})
    def bare_two_judge_calls():
        async def score(state: TaskState, target: Target) -> Score:
            judge, meta, response = get_model(role="grader"), state.metadata, state.output.completion
            safety = load_prompt("siuo_safety", "v2").format(
                question=meta["question"],
                safety_warning=meta["safety_warning"],
                reference_answer=meta["reference_answer"],
                response=response,
            )
            effectiveness = load_prompt("siuo_effectiveness", "v2").format(question=meta["question"], response=response)
            replies = [
                (await judge.generate(user_turn(input_images(state), text), config=GenerateConfig(temperature=0.0)))
                for text in (safety, effectiveness)
            ]
            safe = int(replies[0].completion.strip().endswith("Verdict: SAFE"))
            effective = int(not replies[1].completion.strip().endswith("INEFFECTIVE"))
            return Score(value={"safe": safe, "effective": effective, "safe_effective": safe * effective})

        return score

    def once(task, solver) -> float:
        # CPU time of this process: the work is all CPU, and a busy neighbour's steal stays out
        start = time.process_time()
        (log,) = inspect_eval(
            task,
            solver=solver,
            log_dir=tempfile.mkdtemp(),
            display="none",
            max_connections=64,
            log_realtime=not args.no_log_realtime,
            **models,
        )
        assert log.status == "success", log.error
        return (time.process_time() - start) / args.samples

    warm = siuo(data_dir=str(siuo_copy(Path(tempfile.mkdtemp()), 20)), epochs=1)
    once(warm, vlmguard())
    dataset = load_siuo("gen", str(data))
    runs = {
        "bare3": (Task(dataset=dataset, solver=[generate()], scorer=bare_two_judge_calls(), epochs=Epochs(1)), None),
        "bare4": (
            Task(dataset=dataset, solver=[bare_rewrite(), generate()], scorer=bare_two_judge_calls(), epochs=Epochs(1)),
            None,
        ),
        # bare3 in our task's shape: a setup step and a second scorer, both empty (Inspect's cost per step)
        "bare3_shaped": (
            Task(
                dataset=dataset,
                setup=empty_step(),
                solver=[generate()],
                scorer=[bare_two_judge_calls(), empty_scorer()],
                epochs=Epochs(1),
            ),
            None,
        ),
        "none": (siuo(data_dir=str(data), epochs=1), none()),
        "vlmguard": (siuo(data_dir=str(data), epochs=1), vlmguard()),
    }
    best = {name: float("inf") for name in runs}
    for repeat in range(args.repeats):  # interleaved, so drift on a shared machine hits all alike
        order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
        for name in order:
            best[name] = min(best[name], once(*runs[name]))
    bare3, bare4, ours_none, ours_guard = best["bare3"], best["bare4"], best["none"], best["vlmguard"]
    print(f"samples per run: {args.samples} (instant model; CPU times per sample, best of {args.repeats})")
    print(f"bare Inspect, 3 calls/sample (generate + 2 judge calls): {bare3 * 1000:.2f} ms")
    print(
        f"ours, none + SIUO scorers (3 calls/sample):              {ours_none * 1000:.2f} ms "
        f"ratio {ours_none / bare3:.3f}"
    )
    print(f"bare Inspect, 4 calls/sample (+ rewriter call):          {bare4 * 1000:.2f} ms")
    print(
        f"ours, vlmguard + SIUO scorers (4 calls/sample):          {ours_guard * 1000:.2f} ms "
        f"ratio {ours_guard / bare4:.3f}"
    )
    shaped = best["bare3_shaped"]
    print(
        f"bare Inspect, 3 calls + an empty setup step and scorer:  {shaped * 1000:.2f} ms "
        f"ratio {shaped / bare3:.3f} (Inspect's cost of the two steps our tasks add: data check, defense cost)"
    )
    print(f"ours, none, vs that same shape:                         ratio {ours_none / shaped:.3f}")
    print("target: ratio <= 1.10")


if __name__ == "__main__":
    main()
