"""A synthesis recipe: which sources, how many safety examples from each, how many helpfulness ones.

A recipe is a mapping (a YAML file, or built from `synth --source NAME:N`):

    seed: 0
    total: 9000            # needed only when a source gives a share
    sources:
      - {name: vlguard, path: /data/VLGuard/train.json, images: /data/VLGuard/train, count: 2000}
      - {name: spa_vl, path: hub, revision: <commit>, share: 0.5}
      - {name: vlsbench, path: /data/vlsbench}          # no count: every well-formed record
    helpfulness: {count: 977, from: [vlguard]}          # or share: 0.1 of the final mix; omitted: keep all

Counts are drawn (seeded, without replacement) from each source's well-formed candidates of that
kind, before any cleaning stage; a source with fewer gives all it has and the shortfall is in the
composition. Every broken record of a listed source is kept as a failing sample, so each is named
in the log and the manifest; a record a source leaves out (VLGuard's records that are also in its
test set) is listed in the composition by reason.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from .sources import SOURCE_NAMES, Candidate, SourceLoad, load_source

SOURCE_KEYS = {"name", "path", "images", "revision", "split", "count", "share"}
RECIPE_KEYS = {"seed", "total", "sources", "helpfulness", "check_unsafe", "note"}


class RecipeError(ValueError):
    """A recipe that cannot be run, naming the key at fault."""


def load_recipe(recipe: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A checked recipe from a YAML file or a mapping; relative paths resolve against the file's folder."""
    if isinstance(recipe, dict):
        data, base = dict(recipe), None
    else:
        import yaml

        path = Path(recipe)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as ex:
            raise RecipeError(f"{path}: cannot read the recipe: {ex}") from None
        base = path.resolve().parent
    if not isinstance(data, dict):
        raise RecipeError("a recipe is a mapping with a `sources` list")
    unknown = set(data) - RECIPE_KEYS
    if unknown:
        raise RecipeError(f"unknown recipe key(s) {sorted(unknown)}; valid: {sorted(RECIPE_KEYS)}")
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources:
        raise RecipeError("`sources` must be a non-empty list")
    checked = []
    for position, spec in enumerate(sources):
        where = f"sources[{position}]"
        if not isinstance(spec, dict) or spec.get("name") not in SOURCE_NAMES:
            raise RecipeError(f"{where}: `name` must be one of {', '.join(SOURCE_NAMES)}")
        bad = set(spec) - SOURCE_KEYS
        if bad:
            raise RecipeError(f"{where}: unknown key(s) {sorted(bad)}; valid: {sorted(SOURCE_KEYS)}")
        if "count" in spec and "share" in spec:
            raise RecipeError(f"{where}: give `count` or `share`, not both")
        _check_amount(spec, where)
        spec = dict(spec)
        for key in ("path", "images"):
            if base is not None and isinstance(spec.get(key), str) and spec[key] != "hub":
                spec[key] = str((base / spec[key]).resolve())
        checked.append(spec)
    names = [s["name"] for s in checked]
    if len(set(names)) != len(names):
        raise RecipeError(f"a source is listed twice: {names}")
    if any("share" in s for s in checked) and not isinstance(data.get("total"), int):
        raise RecipeError("`total` (an integer) is needed when a source gives a `share`")
    helpfulness = data.get("helpfulness")
    if helpfulness is not None:
        if not isinstance(helpfulness, dict) or not ({"count", "share"} & set(helpfulness)):
            raise RecipeError("`helpfulness` is a mapping with `count` or `share` (and optional `from`)")
        _check_amount(helpfulness, "helpfulness")
        if "share" in helpfulness and not 0 <= helpfulness["share"] < 1:
            raise RecipeError("helpfulness: `share` must be in [0, 1)")
        unknown_from = set(helpfulness.get("from", [])) - set(names)
        if unknown_from:
            raise RecipeError(f"helpfulness: `from` names source(s) not in the recipe: {sorted(unknown_from)}")
    if data.get("check_unsafe", "all") not in ("all", "written"):
        raise RecipeError("`check_unsafe` is `all` or `written`")
    if not isinstance(data.get("seed", 0), int):
        raise RecipeError("`seed` must be an integer")
    return {**data, "sources": checked}


def _check_amount(spec: dict[str, Any], where: str) -> None:
    count, share = spec.get("count"), spec.get("share")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise RecipeError(f"{where}: `count` must be a non-negative integer")
    if share is not None and (not isinstance(share, (int, float)) or not 0 <= share <= 1):
        raise RecipeError(f"{where}: `share` must be a number in [0, 1]")


def _draw(pool: list[Candidate], wanted: int | None, rng: random.Random) -> list[Candidate]:
    if wanted is None or wanted >= len(pool):
        return list(pool)
    return rng.sample(pool, wanted)


def draw(recipe: dict[str, Any]) -> tuple[list[Candidate], dict[str, Any]]:
    """The candidates a recipe selects (in source order), and the composition for the manifest."""
    rng = random.Random(recipe.get("seed", 0))
    loads: list[SourceLoad] = [load_source(spec) for spec in recipe["sources"]]
    chosen: list[Candidate] = []
    composition: dict[str, Any] = {"seed": recipe.get("seed", 0), "sources": {}}
    safety_drawn = 0
    for spec, load in zip(recipe["sources"], loads, strict=True):
        pool = [c for c in load.candidates if c.kind == "safety"]
        wanted = spec.get("count")
        if "share" in spec:
            wanted = round(spec["share"] * recipe["total"])
        picked = _draw(pool, wanted, rng)
        broken = [c for c in load.candidates if c.kind is None]
        chosen += picked + broken
        safety_drawn += len(picked)
        composition["sources"][load.source] = {
            "location": load.location,
            "candidates_by_kind": dict(Counter(c.kind or "broken" for c in load.candidates)),
            "safety_requested": wanted,
            "safety_drawn": len(picked),
            "shortfall": max(0, wanted - len(picked)) if wanted is not None else 0,
            "broken_records": len(broken),
            "id_collisions": load.id_collisions,
            "excluded_records": {reason: len(labels) for reason, labels in load.excluded.items()},
            "excluded": load.excluded,
        }
    helpfulness = recipe.get("helpfulness")
    names = (helpfulness or {}).get("from") or [load.source for load in loads]
    pool = [c for load in loads if load.source in names for c in load.candidates if c.kind == "helpfulness"]
    wanted = None
    if helpfulness and "count" in helpfulness:
        wanted = helpfulness["count"]
    elif helpfulness:
        wanted = round(safety_drawn * helpfulness["share"] / (1 - helpfulness["share"]))
    picked = _draw(pool, wanted, rng)
    chosen += picked
    composition["helpfulness"] = {
        "from": names,
        "available": len(pool),
        "requested": wanted,
        "drawn": len(picked),
        "shortfall": max(0, wanted - len(picked)) if wanted is not None else 0,
    }
    composition["drawn"] = {"safety": safety_drawn, "helpfulness": len(picked)}
    order = {id(c): i for i, c in enumerate(c for load in loads for c in load.candidates)}
    return sorted(chosen, key=lambda c: order[id(c)]), composition


def recipe_from_cli(
    sources: list[str],
    paths: list[str],
    images: list[str],
    revisions: list[str],
    helpfulness: str | None,
    seed: int,
    total: int | None,
) -> dict[str, Any]:
    """A recipe from `--source NAME[:N|:SHARE]`, `--path [NAME=]PATH`, `--images [NAME=]DIR`,
    `--revision NAME=COMMIT` and `--helpfulness N|SHARE` (a number below 1 is a share)."""
    specs: dict[str, dict[str, Any]] = {}
    for text in sources:
        name, _, amount = text.partition(":")
        spec: dict[str, Any] = {"name": name}
        if amount:
            spec.update(_amount(amount, f"--source {text}"))
        specs[name] = spec
    for option, values, key in (
        ("--path", paths, "path"),
        ("--images", images, "images"),
        ("--revision", revisions, "revision"),
    ):
        for text in values:
            name, sep, value = text.partition("=")
            if not sep:
                if len(specs) != 1:
                    raise RecipeError(f"{option} {text}: with several sources write {option} NAME=VALUE")
                name, value = next(iter(specs)), text
            if name not in specs:
                raise RecipeError(f"{option} {text}: {name!r} is not one of the --source names {sorted(specs)}")
            specs[name][key] = str(Path(value).resolve()) if key != "revision" and value != "hub" else value
    recipe: dict[str, Any] = {"seed": seed, "sources": list(specs.values())}
    if total is not None:
        recipe["total"] = total
    if helpfulness is not None:
        recipe["helpfulness"] = _amount(helpfulness, f"--helpfulness {helpfulness}")
    return recipe


def _amount(text: str, where: str) -> dict[str, Any]:
    try:
        value = float(text)
    except ValueError:
        raise RecipeError(f"{where}: expected a count or a share, got {text!r}") from None
    if value >= 1 or value == 0:
        if value != int(value):
            raise RecipeError(f"{where}: a count must be a whole number")
        return {"count": int(value)}
    return {"share": value}


def synthesis_dataset(candidates: list[Candidate]) -> Any:  # -> MemoryDataset
    """One Inspect sample per drawn candidate; a broken record (or an image that cannot be resolved)
    becomes a sample that fails on its own with its located error (see `data.sample_check`), and so does a
    repeated sample id (Inspect would refuse the whole dataset)."""
    from inspect_ai.dataset import MemoryDataset, Sample

    from vlmguard_eval.core.messages import image_prompt
    from vlmguard_eval.data.common import DataError, broken_sample, unique_ids

    samples = []
    for candidate in candidates:
        record = candidate.materialize()
        if isinstance(record, DataError):
            samples.append(
                broken_sample(candidate.sample_id, record, {"category": "broken", "source": candidate.source})
            )
        else:
            samples.append(
                Sample(
                    id=candidate.sample_id,
                    input=image_prompt(Path(record["image_path"]), record["prompt"]),
                    metadata={**record, "category": record["kind"]},
                )
            )
    return MemoryDataset(unique_ids(samples), name="rewriter_synthesis")
