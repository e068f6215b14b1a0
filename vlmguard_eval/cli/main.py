"""`vlmguard-eval`: the end-to-end run, grids, reports, rewriter training, and the tiny test model.

vlmguard-eval run                       # offline demo: embedded data, tiny VLM target, scripted judge and rewriter
vlmguard-eval run --siuo-dir PATH --mmsb-dir PATH --vlguard-dir PATH
    --model vllm/... --grader openai/gpt-4o --rewriter hfvlm/CKPT
vlmguard-eval grid examples/grid.yaml   # benchmarks x defenses x models, resumable (Inspect eval-set)
vlmguard-eval report LOGDIR --out DIR   # leaderboard, CIs, paired tests and figures from existing logs
vlmguard-eval rejudge LOGDIR --grader M # the same logs scored by another judge (report both: kappa, swings)
vlmguard-eval synth ... / train ...     # rewriter training data, then fine-tuning
vlmguard-eval build-tiny-vlm PATH       # the tiny random-weight LLaVA used by tests and the demo
vlmguard-eval build-tiny-side-models DIR  # tiny side models for `eta` and `mllm_protector`, offline

Add --debug (or set VLMGUARD_DEBUG=1) to see a full traceback instead of a one-line error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vlmguard_eval.cli.catalog import BENCHMARKS, REPO_ROOT, check_names, defenses, task_file
from vlmguard_eval.cli.errors import CommandError, UsageError, one_line
from vlmguard_eval.core.paths import cache_dir

if TYPE_CHECKING:
    from vlmguard_eval.cli.grid import GridResult

HUB = "hub"

# the demo's side models (no --model): offline, deterministic, replying in our formats (models/scripted.py)
DEMO_GRADER = "scripted/judge"
DEMO_REWRITER = "scripted/rewriter"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout and shows each option's default (where it has a real one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def demo_roles(args: argparse.Namespace, chosen_defenses: list[str]) -> tuple[str, str]:
    """(rewriter, grader): the user's, or without --model the demo's scripted side models.

    With --model (a real run) a missing judge is an error, never a silent scripted stand-in.
    """
    if not args.model:
        return args.rewriter or DEMO_REWRITER, args.grader or DEMO_GRADER
    if not args.grader:
        raise UsageError(f"--model needs --grader (the judge model); only the demo (no --model) uses {DEMO_GRADER}")
    if "vlmguard" in chosen_defenses and not args.rewriter:
        raise UsageError("--defenses vlmguard needs --rewriter (the rewriter model) when --model is given")
    return args.rewriter or args.grader, args.grader


def role_binding(model: str, max_tokens: int | None) -> object:
    """A role's model: the name, or with a bound an Inspect Model whose own config carries it."""
    if max_tokens is None:
        return model
    from inspect_ai.model import GenerateConfig, get_model

    return get_model(model, config=GenerateConfig(max_tokens=max_tokens), memoize=False)


def tiny_vlm_path() -> Path:
    """The tiny model, built once into the cache."""
    from vlmguard_eval.models.tiny import build_tiny_vlm

    path = cache_dir() / "tiny-llava"
    if not (path / "model.safetensors").is_file():
        build_tiny_vlm(path)
    return path


def benchmark_runs(args: argparse.Namespace) -> list[tuple[str, dict[str, object]]]:
    """(task file name, task args) for each benchmark variant to evaluate."""
    from vlmguard_eval.data import demo as demo_data

    def data(option: str | None, write: Callable[[Path], Path], folder: str) -> str | None:
        if option == HUB:
            return None
        return option or str(write(cache_dir() / folder))

    runs: list[tuple[str, dict[str, object]]] = []
    chosen = check_names("benchmark", args.benchmarks.split(","), BENCHMARKS)
    if "siuo" in chosen:
        siuo_dir = data(args.siuo_dir, demo_data.write_demo_siuo, "demo-siuo")
        epochs = {"epochs": args.epochs} if args.epochs else {}
        runs += [
            ("siuo", {"format": "gen", "data_dir": siuo_dir, **epochs}),
            ("siuo", {"format": "mcqa", "data_dir": siuo_dir}),
        ]
    if "mm_safetybench" in chosen:
        if args.mmsb_dir is None:
            mmsb = {
                "data_dir": str(demo_data.write_demo_mm_safetybench(cache_dir() / "demo-mmsb")),
                "scenario": list(demo_data.DEMO_MMSB_SCENARIOS),
            }
        else:
            mmsb = {"data_dir": args.mmsb_dir}
        runs.append(("mm_safetybench", {**mmsb, "image_type": args.mmsb_image_type}))
    if "vlguard" in chosen:
        runs.append(("vlguard", {"data_dir": data(args.vlguard_dir, demo_data.write_demo_vlguard, "demo-vlguard")}))
    if "figstep" in chosen:
        if not args.figstep_dir:
            raise UsageError(
                "--benchmarks figstep needs --figstep-dir PATH (a clone of ThuCCSLab/FigStep): no demo copy"
            )
        font = {"font": args.figstep_font} if args.figstep_font else {}
        runs.append(("figstep", {"data_dir": args.figstep_dir, **font}))
    return runs


# the task options (-T) `run` sets from its own flags, by benchmark: a task's error names the flag instead
RUN_TASK_FLAGS = {
    "siuo": {"data_dir": "--siuo-dir", "epochs": "--epochs"},
    "mm_safetybench": {"data_dir": "--mmsb-dir", "image_type": "--mmsb-image-type"},
    "vlguard": {"data_dir": "--vlguard-dir"},
    "figstep": {"data_dir": "--figstep-dir", "font": "--figstep-font"},
}
RUN_ROLES = ("rewriter", "grader")  # the model roles `run` binds (besides the target)


def check_run_can_configure(chosen_defenses: list[str]) -> None:
    """`run` passes no solver args (-S) and binds only the rewriter and grader roles: a defense that takes side
    models or another role cannot run through it. Refused before anything runs, saying where it can run."""
    refused = []
    for name in chosen_defenses:
        info = defenses()[name]
        other_roles = [role for role in info.roles if role not in RUN_ROLES]
        if not info.side_model_args and not other_roles:
            continue
        takes = []
        if info.side_model_args:
            takes.append("side models " + ", ".join(f"-S {param}=PATH" for param, _ in info.side_model_args))
        if other_roles:
            takes.append("model role " + ", ".join(other_roles))
        if info.white_box:
            takes.append("a local hfvlm/ target")
        refused.append(f"{name} ({'; '.join(takes)})")
    if refused:
        raise UsageError(
            f"run cannot set what these defenses take: {', '.join(refused)}. Run them with `vlmguard-eval grid "
            "CONFIG` (solver args under the defense's `args:`, model roles under `roles:`; see examples/grid.yaml) "
            "or `inspect eval tasks/BENCHMARK.py --solver NAME -S ARG=VALUE --model-role ROLE=MODEL`"
        )


def run(args: argparse.Namespace) -> int:
    """A preset grid: the chosen benchmarks x defenses on one target, as a resumable Inspect eval-set."""
    from vlmguard_eval.cli.grid import execute_grid
    from vlmguard_eval.cli.grid_config import GridConfig, task_option_hints

    chosen_defenses = check_names("defense", args.defenses.split(","), defenses())
    check_run_can_configure(chosen_defenses)
    rewriter, grader = demo_roles(args, chosen_defenses)
    benchmarks = benchmark_runs(args)
    out = Path(args.out)
    claim_folder(out, REPORT_MARK, "report folder")  # before the tiny model is built: a user's folder stops here
    model = args.model or f"hfvlm/{tiny_vlm_path()}"
    unified = {"unified": True} if args.unified else {}
    config = GridConfig(
        benchmarks=[{"task": name, "args": {**task_args, **unified}} for name, task_args in benchmarks],
        defenses=[{"name": name} for name in chosen_defenses],
        models=[model],
        roles={
            "rewriter": role_binding(rewriter, args.rewriter_max_tokens),
            "grader": role_binding(grader, args.grader_max_tokens),
        },
        log_dir=str(out / "logs"),
        options={
            "limit": args.limit,
            "max_tokens": args.max_tokens,
            "fail_on_error": args.fail_on_error,
            "display": args.display,
            **({"attempt_timeout": args.attempt_timeout} if args.attempt_timeout else {}),
        },
    )
    title = "Defenses compared"
    if args.max_tokens is not None:  # a global override replaces every task's official setting: say so
        print(f"--max-tokens {args.max_tokens} overrides every benchmark's official max new tokens")
        title += f" (global override: max_tokens={args.max_tokens} replaces the benchmarks' official settings)"
    try:
        result = execute_grid(config)
    except CommandError as ex:  # a task that could not be built: its message names -T options, run's are flags
        if ex.benchmark not in RUN_TASK_FLAGS:
            raise
        raise type(ex)(task_option_hints(str(ex), RUN_TASK_FLAGS[ex.benchmark]), ex.benchmark) from ex
    path = make_report(result.log_dir, out, title, bundle=args.bundle)
    print(f"logs: {result.log_dir}\nleaderboard: {path}")
    print(path.read_text(encoding="utf-8"))
    return finish(result)


# marker files: a folder holding one was written by this tool, so it may be written again
REPORT_MARK = ".vlmguard-report"
VIEWER_MARK = ".vlmguard-viewer"


def claim_folder(folder: Path, mark: str, what: str) -> None:
    """Use `folder` only if it is new, empty or ours (marked); never write into or delete a user's folder."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{what} {folder} is a file")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / mark).is_file():
        raise UsageError(f"{what} {folder} already holds files this tool did not write; choose a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / mark).write_text("written by vlmguard-eval\n", encoding="utf-8")


def finish(result: GridResult) -> int:
    """0 when every task succeeded; else 1, after each failed task with its error and what to do next."""
    if result.success:
        return 0
    for failure in result.failures:
        kind = f"{failure.status}, configuration" if failure.configuration else failure.status
        error = f": {failure.error}" if failure.error else ""
        print(f"FAILED {failure.task} on {failure.model} ({kind}){error}", file=sys.stderr)
    for error in result.errors:  # a worker that ended without a result: its tasks are unfinished
        print(f"FAILED {error}", file=sys.stderr)
    if any(failure.configuration for failure in result.failures):
        print(
            "INCOMPLETE: a configuration error fails the same way however often the command runs: fix what it "
            "names, then run again (the same command resumes any other unfinished runs)",
            file=sys.stderr,
        )
    else:
        print("INCOMPLETE: some runs did not finish; run the same command again to resume them", file=sys.stderr)
    return 1


def make_report(
    log_dir: Path | list[Path], out: Path, title: str, bundle: bool, human_labels: str | None = None
) -> Path:
    defenses()  # declared defenses give the figures their colours and order
    from vlmguard_eval.report.paper import add_keyword_measures
    from vlmguard_eval.report.runs import load_report_runs
    from vlmguard_eval.report.writer import write_report

    log_dirs = log_dir if isinstance(log_dir, list) else [log_dir]
    claim_folder(out, REPORT_MARK, "report folder")
    # every dir at once: one log per task across them all (the same log in two dirs counts once)
    runs, skipped = load_report_runs(log_dirs)
    viewer = None
    if bundle:
        bundle_dir = out / "viewer"
        if bundle_dir.exists():
            claim_folder(bundle_dir, VIEWER_MARK, "viewer folder")  # refuses a folder that is not ours
            shutil.rmtree(bundle_dir)
        bundle_logs(log_dirs, bundle_dir)
        (bundle_dir / VIEWER_MARK).write_text("written by vlmguard-eval\n", encoding="utf-8")
        viewer = "viewer"
    add_keyword_measures(runs)  # the paper's DSR and VLGuard's benign-arm refusals
    path = write_report(runs, out, title=title, viewer=viewer, human_labels=human_labels)
    if skipped:
        notes = ["", "## Logs not used", ""] + [f"- `{name}`: {reason}" for name, reason in sorted(skipped.items())]
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n".join(notes) + "\n")
        for name, reason in sorted(skipped.items()):
            print(f"skipped {name}: {reason}", file=sys.stderr)
    return path


def bundle_logs(log_dirs: list[Path], bundle_dir: Path) -> None:
    """A static Inspect viewer of every log dir's logs: Inspect bundles one dir, so several are first copied
    side by side (each in a folder named after it) into one."""
    import tempfile

    from inspect_ai.log import bundle_log_dir

    if len(log_dirs) == 1:
        bundle_log_dir(str(log_dirs[0]), str(bundle_dir))
        return
    with tempfile.TemporaryDirectory(prefix="vlmguard-bundle-") as joined:
        for index, log_dir in enumerate(log_dirs):
            shutil.copytree(log_dir, Path(joined) / f"{index}-{log_dir.resolve().name}")
        bundle_log_dir(joined, str(bundle_dir))


def report(args: argparse.Namespace) -> int:
    try:
        path = make_report([Path(d) for d in args.log_dir], Path(args.out), args.title, args.bundle, args.human_labels)
    except FileNotFoundError as ex:  # a log dir that is missing or holds no logs: the command line names nothing
        raise UsageError(str(ex)) from None
    print(path.read_text(encoding="utf-8"))
    return 0


def rejudge(args: argparse.Namespace) -> int:
    import yaml

    from vlmguard_eval.cli.rejudge import rejudge as rejudge_logs

    # values typed as in Inspect's own -M (YAML scalars: 16 is a number, true a boolean)
    bad = [kv for kv in args.grader_args if "=" not in kv or not kv.split("=", 1)[0]]
    if bad:
        raise UsageError(f"-M {bad[0]}: a judge model arg is KEY=VALUE")
    model_args = {key: yaml.safe_load(value) for key, value in (kv.split("=", 1) for kv in args.grader_args)}
    try:
        results = rejudge_logs(args.log_dir, args.grader, args.out, args.grader_base_url, model_args, args.display)
    except FileNotFoundError as ex:  # a log dir that is missing or holds no logs: as `report` says it
        raise UsageError(str(ex)) from None
    for result in results:
        print(f"{result.status}: {result.source}" + (f" -> {result.output}" if result.output else ""))
    return 0


def grid(args: argparse.Namespace) -> int:
    from vlmguard_eval.cli.grid import execute_grid
    from vlmguard_eval.cli.grid_config import load_config

    config = load_config(args.config)
    if config.report_dir:
        claim_folder(Path(config.report_dir), REPORT_MARK, "report folder")
    result = execute_grid(config)
    if config.report_dir:
        title = "Grid: defenses x models x benchmarks"
        path = make_report(result.log_dir, Path(config.report_dir), title, bundle=True)
        print(f"report: {path}")
    return finish(result)


def synth(args: argparse.Namespace) -> int:
    """Synthesize rewriter training data (one Inspect run over a recipe of sources), then export it."""
    from inspect_ai import eval as inspect_eval

    from vlmguard_eval.training.export import export_sft
    from vlmguard_eval.training.recipe import RecipeError, load_recipe, recipe_from_cli

    try:
        if args.recipe:
            if args.source:
                raise RecipeError("give --recipe or --source, not both")
            recipe = load_recipe(args.recipe)
            if args.seed is not None:
                recipe["seed"] = args.seed
        else:
            sources = args.source or ["vlguard"]
            recipe = recipe_from_cli(
                sources, args.path, args.images, args.revision, args.helpfulness, args.seed or 0, args.total
            )
            recipe = load_recipe(recipe)
        if args.check_unsafe:
            recipe["check_unsafe"] = args.check_unsafe
    except (RecipeError, OSError) as ex:
        print(f"synth: {ex}", file=sys.stderr)
        return 2
    checker = args.checker or args.teacher
    roles = {"teacher": args.teacher, "checker": checker, **({"responder": args.responder} if args.responder else {})}
    try:
        (log,) = inspect_eval(
            f"{task_file('synthesize')}@synthesize",
            task_args={"recipe": recipe},
            model=args.teacher,
            model_roles=roles,
            log_dir=str(Path(args.out) / "logs"),
            limit=args.limit,
            fail_on_error=args.fail_on_error,
            max_connections=args.max_connections,
            display=args.display,
        )
    except (ValueError, OSError) as ex:  # a source that cannot be read at all (DataError is a ValueError)
        print(f"synth: {ex}", file=sys.stderr)
        return 1
    if log.status != "success":
        # with --display none Inspect prints nothing: the reason must still reach the user
        message = log.error.message if log.error else f"the synthesis run ended with status {log.status}"
        print(f"synth: {message}", file=sys.stderr)
        if not log.samples:
            return 1
    manifest = export_sft(log.location, args.out)
    print(json.dumps(manifest["counts"], indent=1))
    return 0 if log.status == "success" else 1


def train(args: argparse.Namespace) -> int:
    """TRL's own argument parsing (SFTConfig, ModelConfig, our data arguments) and SFTTrainer."""
    from vlmguard_eval.training.sft import main as train_main

    print(train_main(args.trl_args))
    return 0


def build_tiny(args: argparse.Namespace) -> int:
    from vlmguard_eval.models.tiny import build_tiny_vlm

    print(build_tiny_vlm(args.path))
    return 0


# tiny side models by kind (DefenseInfo.side_model_args), folder name and builder name in models/tiny.py
SIDE_MODEL_BUILDERS = {
    "sequence-classifier": ("classifier", "build_tiny_classifier"),
    "causal-lm": ("causal-lm", "build_tiny_causal_lm"),
    "armorm": ("armorm", "build_tiny_armorm"),
    "clip": ("clip", "build_tiny_clip"),
}


def build_tiny_side_models(args: argparse.Namespace) -> int:
    """Tiny random-weight side models of every kind a defense declares, and the -S flags that use them."""
    from vlmguard_eval.models import tiny

    folder = Path(args.dir)
    paths = {}
    for kind, (name, builder) in SIDE_MODEL_BUILDERS.items():
        paths[kind] = getattr(tiny, builder)(folder / name)
        print(f"{kind}: {paths[kind]}")
    for name, info in defenses().items():
        if info.side_model_args:
            flags = " ".join(f"-S {param}={paths[kind]}" for param, kind in info.side_model_args)
            print(f"--solver {name} {flags}")
    return 0


def names_help(kind: str, names: object) -> str:
    return f"{kind}: {', '.join(names)}"


def main(argv: list[str] | None = None) -> int:
    """Parse, run, and turn a mistake into one line on stderr (the traceback with --debug)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # every train argument is TRL's (argparse would claim --config and --help)
        args = argparse.Namespace(command="train", func=train, trl_args=argv[1:], debug=False)
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("INTERRUPTED: results are incomplete; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as ex:
        from inspect_ai._util.error import PrerequisiteError

        from vlmguard_eval.core.options import debug_enabled

        one_liners = (CommandError, ValueError, OSError, PrerequisiteError)
        if args.debug or debug_enabled() or not isinstance(ex, one_liners):
            raise
        message = ex.message if isinstance(ex, PrerequisiteError) else ex
        print(f"vlmguard-eval {args.command}: error: {one_line(message)}", file=sys.stderr)
        print("(add --debug or set VLMGUARD_DEBUG=1 for the traceback)", file=sys.stderr)
        return ex.exit_code if isinstance(ex, CommandError) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlmguard-eval", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks (also VLMGUARD_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    benchmark_names = names_help("benchmarks", BENCHMARKS)
    defense_names = names_help("defenses", defenses())
    display_help = "Inspect's display: full, rich, plain, or none (prints nothing while running)"

    def command(name: str, help: str, description: str | None = None, **kwargs: object) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help, formatter_class=HelpFormatter, **kwargs)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        return p

    p = command(
        "run",
        "evaluate defenses end to end and write a leaderboard (offline demo without --model)",
        "Without --model: the demo. Embedded samples of each benchmark, the tiny random-weight VLM as target, "
        f"and the scripted offline judge ({DEMO_GRADER}) and rewriter ({DEMO_REWRITER}), whose labels are drawn "
        "from a hash of their input: every layer runs, the numbers measure nothing. With --model: a real run; "
        f"--grader is then required, and --rewriter with vlmguard.\n{benchmark_names}\n{defense_names}",
    )
    p.add_argument("--benchmarks", default="siuo,mm_safetybench,vlguard", help=f"comma-separated; {benchmark_names}")
    p.add_argument("--siuo-dir", help=f"local SIUO copy, or '{HUB}' for sinwang/SIUO (default: embedded demo data)")
    p.add_argument("--mmsb-dir", help="local MM-SafetyBench copy (default: embedded demo questions)")
    p.add_argument("--mmsb-image-type", default="TYPO", help="SD, SD_TYPO, TYPO (rendered offline), text, or all")
    p.add_argument(
        "--vlguard-dir", help=f"local VLGuard copy, or '{HUB}' for the gated hub dataset (default: embedded demo data)"
    )
    p.add_argument("--figstep-dir", help="local clone of ThuCCSLab/FigStep (needed for --benchmarks ...,figstep)")
    p.add_argument(
        "--figstep-font",
        help="FreeMonoBold.ttf for FigStep images rendered here, or 'dejavu' for a stand-in font "
        "(default: Debian's fonts-freefont-ttf path; official images need none)",
    )
    p.add_argument(
        "--unified", action="store_true", help="add the VLMGuard-R1 paper's unified safety/helpfulness judge"
    )
    p.add_argument("--model", help="target model, any Inspect model (default: the tiny local VLM, i.e. the demo)")
    p.add_argument("--rewriter", help=f"model for the rewriter role (default without --model: {DEMO_REWRITER})")
    p.add_argument("--grader", help=f"judge model for the grader role (default without --model: {DEMO_GRADER})")
    p.add_argument("--defenses", default="none,vlmguard", help=f"comma-separated; {defense_names}")
    p.add_argument("--out", default=str(REPO_ROOT / "results" / "demo"), help="report folder; logs go in OUT/logs")
    p.add_argument("--limit", type=int, default=None, help="samples per task (default: all)")
    p.add_argument("--epochs", type=int, default=None, help="responses per SIUO generation item (default: SIUO's 3)")
    p.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="max new tokens of the TARGET's calls, replacing each benchmark's official setting (named in the "
        "leaderboard's title; default: the official ones). Side calls keep their own bounds: see the next two",
    )
    p.add_argument(
        "--grader-max-tokens",
        type=int,
        default=None,
        help="max new tokens per judge call (default: 512, vlmguard_eval/judging/calls.py JUDGE_MAX_TOKENS)",
    )
    p.add_argument(
        "--rewriter-max-tokens",
        type=int,
        default=None,
        help="max new tokens per rewriter call (default: 1024, solvers/vlmguard.py REWRITER_MAX_TOKENS)",
    )
    p.add_argument("--fail-on-error", type=float, default=0.1, help="tolerated share of failing samples per task")
    p.add_argument("--display", default="plain", help=display_help)
    p.add_argument("--attempt-timeout", type=int, default=None, help="seconds one model call may take, for every role")
    p.add_argument("--bundle", action="store_true", help="also write a static Inspect log viewer to OUT/viewer")
    p.set_defaults(func=run)

    p = command("report", "leaderboard, CIs, paired tests and figures from existing Inspect logs (nothing re-run)")
    p.add_argument("log_dir", nargs="+", help="one or more log dirs (e.g. a run's and its `rejudge` output)")
    p.add_argument("--out", required=True, help="folder for leaderboard.md, leaderboard.csv and the figures")
    p.add_argument("--title", default="Leaderboard", help="the leaderboard's title")
    p.add_argument("--bundle", action="store_true", help="also write a static Inspect log viewer to OUT/viewer")
    p.add_argument(
        "--human-labels",
        help="CSV of id,label[,measure][,benchmark][,model][,defense][,log]: each judge's accuracy and kappa "
        "(model/defense/log name the run whose answer was labelled; needed where the id alone fits several)",
    )
    p.set_defaults(func=report)

    p = command("rejudge", "score existing logs again with another judge (the target is not called)")
    p.add_argument("log_dir", help="the log dir whose answers are judged again")
    p.add_argument(
        "--grader", required=True, help="the new judge, any Inspect model (e.g. vllm/Qwen/Qwen2-VL-7B-Instruct)"
    )
    p.add_argument("--out", help="folder for the new logs (default: LOGDIR__judge-<grader>, beside LOGDIR)")
    p.add_argument("--grader-base-url", help="base URL of the judge's server (vLLM or any OpenAI-compatible one)")
    p.add_argument(
        "-M", dest="grader_args", action="append", default=[], metavar="KEY=VALUE", help="judge model args (repeatable)"
    )
    p.add_argument("--display", default="plain", help=display_help)
    p.set_defaults(func=rejudge)

    p = command(
        "grid",
        "benchmarks x defenses x models from a YAML config, as a resumable Inspect eval-set",
        f"See examples/grid.yaml.\n{benchmark_names}\n{defense_names}",
    )
    p.add_argument("config", help="the YAML config (models, roles, benchmarks, defenses, eval options)")
    p.set_defaults(func=grid)

    p = command(
        "synth",
        "synthesize rewriter training data with a teacher model, then export it",
        "One run over one or several sources: --source NAME[:COUNT|:SHARE] (repeatable) or --recipe.",
    )
    p.add_argument(
        "--source",
        action="append",
        help="vlguard, spa_vl, vlsbench or preference, with an optional safety count (vlguard:4000) or share "
        "(spa_vl:0.5, needs --total); repeatable (default: vlguard)",
    )
    p.add_argument("--recipe", help="a YAML recipe (see examples/synth_paper_mix.yaml)")
    p.add_argument("--path", action="append", default=[], help="[NAME=]PATH of a source ('hub' for the hub copy)")
    p.add_argument("--images", action="append", default=[], help="[NAME=]DIR: VLGuard images (default PATH/../train)")
    p.add_argument("--revision", action="append", default=[], help="NAME=COMMIT: hub revision of a source")
    p.add_argument("--helpfulness", help="helpfulness examples: a count (977) or a share of the mix (0.1)")
    p.add_argument("--total", type=int, default=None, help="total safety examples when sources give shares")
    p.add_argument("--teacher", required=True, help="teacher model (model role `teacher`)")
    p.add_argument("--responder", help="model writing unsafe responses where the source has none (role `responder`)")
    p.add_argument("--checker", help="judge that an unsafe response is unsafe (role `checker`; default: the teacher)")
    p.add_argument("--check-unsafe", choices=["all", "written"], help="which unsafe responses are checked")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default 0, or the recipe's)")
    p.add_argument("--limit", type=int, default=None, help="source records to use (default: all)")
    p.add_argument("--fail-on-error", type=float, default=0.2, help="tolerated share of failing samples")
    p.add_argument("--max-connections", type=int, default=None, help="concurrent teacher calls (default: Inspect's)")
    p.add_argument("--display", default="plain", help=display_help)
    p.add_argument("--out", required=True, help="writes sft.jsonl, hf/, manifest.json and logs/")
    p.set_defaults(func=synth)

    p = command(
        "train",
        "fine-tune a VLM into the rewriter on exported SFT data (TRL SFTTrainer)",
        "All arguments go to TRL's parser: --data, --output_dir, --model_name_or_path, --use_peft, "
        "--config FILE.yaml, and every SFTConfig / ModelConfig field. `train --help` lists them.",
        add_help=False,
    )
    p.add_argument("trl_args", nargs=argparse.REMAINDER, help="TRL's arguments")
    p.set_defaults(func=train)

    p = command("build-tiny-vlm", "write the tiny random-weight LLaVA (tests, demo) to PATH")
    p.add_argument("path", help="folder to write (safetensors, processor, chat template)")
    p.set_defaults(func=build_tiny)

    p = command(
        "build-tiny-side-models",
        "write tiny random-weight side models for eta and mllm_protector to DIR, and print the -S flags",
    )
    p.add_argument("dir", help="folder to write: DIR/classifier, DIR/causal-lm, DIR/armorm, DIR/clip")
    p.set_defaults(func=build_tiny_side_models)
    return parser


if __name__ == "__main__":
    sys.exit(main())
