"""VLGuard test set (github.com/ys-zong/VLGuard; images: gated HF dataset ys-zong/VLGuard).

    inspect eval tasks/vlguard.py -T data_dir=PATH --solver vlmguard ...

-T subset=NAME|all    unsafes (442), safe_unsafes (558), safe_safes (558), or all three
-T unified=true       add the VLMGuard-R1 paper's safety/helpfulness judge
-T helpfulness_tie=true   our variant of the helpfulness judge that may call a tie (`helpfulness_win_tie`)
                      instead of the official binary choice (`helpfulness_win`)
-T judge_prompt=NAME:PATH a judge prompt file in place of ours (NAME: vlguard_pairwise or
                      vlguard_pairwise_tie, unified; a lone PATH when only one judge runs)

Official inference (ys-zong/VLGuard VLGuard_eval.py L27, utils/model_utils.py L24-31): image +
instruction, greedy, at most 256 new tokens. They hold unless the run sets its own (`--temperature`,
`--max-tokens`), which Inspect records in the log's generate config.
"""

from inspect_ai import Epochs, Task, task
from inspect_ai.model import GenerateConfig

from scorers import defense_cost, unified_judge, vlguard_asr, vlguard_helpfulness
from scorers.metrics import mode_of_parsed
from scorers.vlguard import vlguard_helpfulness_tie
from solvers import none  # importing `solvers` registers every defense by its bare name for --solver
from vlmguard_eval.core.options import strict_options
from vlmguard_eval.data.sample_check import check_sample
from vlmguard_eval.data.vlguard import load_vlguard
from vlmguard_eval.judging.prompts import prompt_files

# bumped whenever a change can move this task's numbers (data, prompts, scoring, settings)
TASK_VERSION = 3

GENERATION = GenerateConfig(temperature=0.0, max_tokens=256)


@task
@strict_options  # a misspelled -T option stops the run, naming the valid ones
def vlguard(
    subset: str | list[str] = "all",
    data_dir: str | None = None,
    unified: bool = False,
    helpfulness_tie: bool = False,
    judge_prompt: str | list[str] | None = None,
) -> Task:
    pairwise = "vlguard_pairwise_tie" if helpfulness_tie else "vlguard_pairwise"
    files = prompt_files(judge_prompt, (pairwise,) + (("unified",) if unified else ()))
    helpfulness = (vlguard_helpfulness_tie if helpfulness_tie else vlguard_helpfulness)(prompt_files=files)
    return Task(
        version=TASK_VERSION,
        dataset=load_vlguard(subset, data_dir),
        setup=check_sample(),
        solver=none(),
        epochs=Epochs(1, mode_of_parsed()),  # never Inspect's mean: it would turn unparsed into 0
        scorer=[vlguard_asr(), helpfulness, *([unified_judge(prompt_files=files)] if unified else []), defense_cost()],
        config=GENERATION,
        metadata={"official_generation": GENERATION.model_dump(exclude_none=True)},
    )
