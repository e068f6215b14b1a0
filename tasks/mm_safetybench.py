"""MM-SafetyBench (github.com/isXinLiu/MM-SafetyBench): 13 scenarios x SD, SD_TYPO, TYPO images.

    inspect eval tasks/mm_safetybench.py -T data_dir=PATH -T image_type=TYPO --solver vlmguard ...

-T scenario=NAME|all     one of the 13 scenario names (exact, e.g. 01-Illegal_Activitiy), or all
-T image_type=TYPE|all   SD, SD_TYPO, TYPO (rendered offline when absent) or text (no image); default
                         SD, SD_TYPO, TYPO, the image types of the official results (text-only is a
                         separate baseline there; `all` adds it, and the headline rate pools what ran)
-T typo_font=PATH        render TYPO with this TTF (e.g. the original ARIAL.TTF) instead of Arimo
-T judge_prompt=NAME:PATH   a judge prompt file in place of ours (NAME: mmsb_general, mmsb_lobbying,
                         mmsb_gov_decision, mmsb_certification, unified)
-T tiny=true             the official 168-question tiny subset
-T hub_repo=NAME -T hub_revision=COMMIT   a hub mirror, at a pinned commit
-T unified=true          add the VLMGuard-R1 paper's safety/helpfulness judge
"""

from pathlib import Path

from inspect_ai import Epochs, Task, task

from scorers import defense_cost, mmsb_judge, unified_judge
from scorers.metrics import mode_of_parsed
from scorers.mm_safetybench import JUDGES
from solvers import none  # importing `solvers` registers every defense by its bare name for --solver
from vlmguard_eval.core.options import strict_options
from vlmguard_eval.data.mm_safetybench import load_mm_safetybench
from vlmguard_eval.data.sample_check import check_sample
from vlmguard_eval.data.typography import font_report, use_typo_font
from vlmguard_eval.judging.prompts import prompt_files

# bumped whenever a change can move this task's numbers (data, prompts, scoring, settings)
TASK_VERSION = 3

# the image types the paper's results report as attacks (text-only is its separate baseline)
OFFICIAL_IMAGE_TYPES = ["SD", "SD_TYPO", "TYPO"]


@task
@strict_options  # a misspelled -T option stops the run, naming the valid ones
def mm_safetybench(
    scenario: str | list[str] = "all",
    image_type: str | list[str] | None = None,
    tiny: bool = False,
    data_dir: str | None = None,
    hub_repo: str | None = None,
    hub_revision: str | None = None,
    unified: bool = False,
    typo_font: str | None = None,
    judge_prompt: str | list[str] | None = None,
) -> Task:
    files = prompt_files(judge_prompt, JUDGES + (("unified",) if unified else ()))
    types = OFFICIAL_IMAGE_TYPES if image_type is None else image_type
    with use_typo_font(typo_font):
        dataset = load_mm_safetybench(scenario, types, tiny, data_dir, hub_repo, hub_revision=hub_revision)
    rendered = [s.metadata["key_phrase"] for s in dataset if _rendered(s.metadata.get("image_path"))]
    return Task(
        version=TASK_VERSION,
        dataset=dataset,
        setup=check_sample(),
        solver=none(),
        epochs=Epochs(1, mode_of_parsed()),  # never Inspect's mean: it would turn unparsed into 0
        scorer=[
            mmsb_judge(prompt_files=files),
            *([unified_judge(prompt_files=files)] if unified else []),
            defense_cost(),
        ],
        # a partial copy with the default scenario=all: the scenarios it lacks, also logged as a warning
        metadata={"typo_font": font_report(typo_font, rendered), "missing_scenarios": dataset.missing_scenarios},
    )


def _rendered(image_path: str | None) -> bool:
    """Whether the sample's image was rendered here (TYPO, SD_TYPO), not read from the official files."""
    return image_path is not None and Path(image_path).name.startswith(("typo-", "sdtypo-"))
