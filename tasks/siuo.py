"""SIUO: safe inputs but unsafe output (github.com/sinwang20/SIUO; HF dataset sinwang/SIUO).

    inspect eval tasks/siuo.py --solver vlmguard --model hfvlm/<ckpt> \
        --model-role rewriter=<model> --model-role grader=<judge>

-T format=gen|mcqa   generation (judged for safety and effectiveness) or multiple choice
-T data_dir=PATH     local copy (HF or GitHub layout); without it, the hub dataset sinwang/SIUO
-T unified=true      add the VLMGuard-R1 paper's safety/helpfulness judge
-T refusal=true      add VLGuard's refusal-keyword rate (`refused`; not part of SIUO's protocol)
-T judge_prompt=NAME:PATH   a judge prompt file in place of ours (NAME: siuo_safety, siuo_effectiveness, unified)

Official generation settings (sinwang20/SIUO eval/generation-gpt4o-gen.py L56-57, -mcqa.py L48-50):
gen: 3 sampled responses per item (temperature 1.0, the API default), at most 500 new tokens;
mcqa: temperature 0, at most 5 new tokens. They hold unless the run sets its own (`--temperature`,
`--max-tokens`), which Inspect records in the log's generate config.
"""

from inspect_ai import Epochs, Task, task
from inspect_ai.model import GenerateConfig

from scorers import defense_cost, mcqa_letter, refusal_keywords, siuo_judge, unified_judge
from scorers.metrics import mode_of_parsed
from scorers.siuo import JUDGES
from solvers import none  # importing `solvers` registers every defense by its bare name for --solver
from vlmguard_eval.core.options import strict_options
from vlmguard_eval.data.sample_check import check_sample
from vlmguard_eval.data.siuo import load_siuo
from vlmguard_eval.judging.prompts import prompt_files

# bumped whenever a change can move this task's numbers (data, prompts, scoring, settings)
TASK_VERSION = 4

GENERATION = {
    "gen": GenerateConfig(temperature=1.0, max_tokens=500),
    "mcqa": GenerateConfig(temperature=0.0, max_tokens=5),
}


@task
@strict_options  # a misspelled -T option stops the run, naming the valid ones
def siuo(
    format: str = "gen",
    data_dir: str | None = None,
    epochs: int = 3,
    unified: bool = False,
    refusal: bool = False,
    judge_prompt: str | list[str] | None = None,
) -> Task:
    dataset = load_siuo(format, data_dir)  # checks `format` first
    judges = (JUDGES if format == "gen" else ()) + (("unified",) if unified else ())
    files = prompt_files(judge_prompt, judges)
    if format == "gen":
        # the official protocol: 3 sampled responses per item, the mode of their verdicts per item
        scorers, plan = [siuo_judge(prompt_files=files), defense_cost()], Epochs(epochs, mode_of_parsed())
    else:
        scorers, plan = [mcqa_letter(), defense_cost()], Epochs(1, mode_of_parsed())
    if refusal:
        scorers.insert(-1, refusal_keywords())
    if unified:
        scorers.insert(-1, unified_judge(prompt_files=files))
    return Task(
        version=TASK_VERSION,
        dataset=dataset,
        setup=check_sample(),
        solver=none(),
        scorer=scorers,
        epochs=plan,
        config=GENERATION[format],
        metadata={"official_generation": GENERATION[format].model_dump(exclude_none=True)},
    )
