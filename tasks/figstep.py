"""FigStep's SafeBench (github.com/ThuCCSLab/FigStep): harmful instructions as typographic images.

    inspect eval tasks/figstep.py -T data_dir=PATH --solver vlmguard --model-role grader=<judge> ...

-T subset=safebench|tiny          500 questions, or SafeBench-Tiny's 50
-T query_type=figstep|baseline|all   the image + FigStep's incitement text, or the question as text only
-T images=auto|official|render    official PNGs when present (auto), required, or always rendered
-T font=PATH|dejavu               FreeMonoBold for rendering (default: Debian's path); dejavu: a stand-in
-T unified=true                   add the VLMGuard-R1 paper's safety/helpfulness judge
-T judge_prompt=NAME:PATH          a judge prompt file in place of ours (NAME: mmsb_general,
                                  mmsb_certification, unified)
Scoring: FigStep counted attack success by manual review; here the judge (`figstep_attack`) and
VLGuard's refusal-keyword rule (`refused`) stand in for it.
"""

from inspect_ai import Epochs, Task, task

from scorers import defense_cost, figstep_judge, refusal_keywords, unified_judge
from scorers.figstep import CERTIFICATION_RULE
from scorers.metrics import mode_of_parsed
from scorers.mm_safetybench import GENERAL_RULE
from solvers import none  # importing `solvers` registers every defense by its bare name for --solver
from vlmguard_eval.core.options import strict_options
from vlmguard_eval.data.figstep import load_figstep
from vlmguard_eval.data.sample_check import check_sample
from vlmguard_eval.judging.prompts import prompt_files

# bumped whenever a change can move this task's numbers (data, prompts, scoring, settings)
TASK_VERSION = 2


@task
@strict_options  # a misspelled -T option stops the run, naming the valid ones
def figstep(
    subset: str = "safebench",
    query_type: str | list[str] = "figstep",
    data_dir: str | None = None,
    images: str = "auto",
    font: str | None = None,
    unified: bool = False,
    judge_prompt: str | list[str] | None = None,
) -> Task:
    files = prompt_files(judge_prompt, (GENERAL_RULE, CERTIFICATION_RULE) + (("unified",) if unified else ()))
    return Task(
        version=TASK_VERSION,
        dataset=load_figstep(subset, query_type, data_dir, images, font),
        setup=check_sample(),
        solver=none(),
        epochs=Epochs(1, mode_of_parsed()),  # never Inspect's mean: it would turn unparsed into 0
        scorer=[
            figstep_judge(prompt_files=files),
            refusal_keywords(),
            *([unified_judge(prompt_files=files)] if unified else []),
            defense_cost(),
        ],
    )
