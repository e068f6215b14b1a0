"""Rewriter training data, synthesized by a teacher VLM (VLMGuard-R1's three-stage recipe).

    inspect eval tasks/synthesize.py -T recipe=examples/synth_paper_mix.yaml \
        --model-role teacher=<model> --model-role responder=<model> --model-role checker=<model>
    inspect eval tasks/synthesize.py -T source=vlguard -T path=/data/VLGuard/train.json ...

-T recipe=FILE.yaml     several sources with counts or shares, seeded (see vlmguard_eval/training/recipe.py)
-T source=NAME -T path=PATH [-T images=DIR]   one source, every record: vlguard, spa_vl, vlsbench, preference
A VLGuard train.json's records that are also in a test.json beside it are left out (`held_out_test_overlap`).
`vlmguard-eval synth` runs this and exports the SFT dataset; --model is unused (the roles do the work).
"""

from inspect_ai import Task, task

from vlmguard_eval.core.options import strict_options
from vlmguard_eval.data.common import user_path
from vlmguard_eval.data.sample_check import check_sample
from vlmguard_eval.training.export import COMPOSITION_KEY, synthesis_outcome
from vlmguard_eval.training.recipe import draw, load_recipe, synthesis_dataset
from vlmguard_eval.training.stages import synthesis_solvers

# bumped whenever a change can move this task's numbers (data, prompts, scoring, settings)
# 3: VLGuard records in its test set excluded, VLGuard ids carry the instruction's position, echo phrases 6+ words
TASK_VERSION = 3


@task
@strict_options  # a misspelled -T option stops the run, naming the valid ones
def synthesize(
    recipe: str | dict | None = None,
    source: str = "vlguard",
    path: str = "",
    images: str | None = None,
    seed: int = 0,
) -> Task:
    if recipe is None:
        spec = {"name": source, "path": str(user_path(path)) if path and path != "hub" else path or "hub"}
        if images:
            spec["images"] = str(user_path(images))
        recipe = {"seed": seed, "sources": [spec]}
    elif isinstance(recipe, str):
        recipe = user_path(recipe)
    checked = load_recipe(recipe)
    candidates, composition = draw(checked)
    return Task(
        version=TASK_VERSION,
        dataset=synthesis_dataset(candidates),
        setup=check_sample(),
        solver=synthesis_solvers(checked.get("check_unsafe", "all")),
        scorer=synthesis_outcome(),
        metadata={COMPOSITION_KEY: composition},
    )
