"""Recipes: find, list, show and copy the bundled ones, and load any recipe (file + overrides) into
the validated RunConfig of its task. Every CLI verb that takes a RECIPE reads here."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import RunConfig
from .rundir import RunFolder
from .errors import ConfigError, HfTunerError, did_you_mean
from .packaged import recipes_dir, run_folder_hint


@dataclass(frozen=True)
class RecipeInfo:
    name: str
    path: Path
    task: str
    method: str
    description: str
    # "offline", "offline after NAME[+NAME]" (run folders it starts from) or "hub"; "+gpu" appended to
    # the first word when training sets bf16/fp16 (e.g. "hub+gpu")
    runs: str = "offline"


def list_recipes() -> list[RecipeInfo]:
    """Every bundled recipe, sorted by name (reads only the YAML, imports nothing heavy)."""
    infos = []
    for path in sorted(recipes_dir().glob("*.yaml"), key=lambda p: p.stem):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        method = (data.get("method") or {}).get("name", "full")
        runs = needs(data)
        training = data.get("training") or {}
        if any(str(training.get(k)).lower() == "true" for k in ("bf16", "fp16")):  # mixed precision: a GPU job
            first, _, rest = runs.partition(" ")
            runs = f"{first}+gpu" + (f" {rest}" if rest else "")  # hub+gpu, offline+gpu after NAME
        infos.append(RecipeInfo(path.stem, path, data.get("task", "?"), method, data.get("description", ""), runs))
    return infos


def sources(data: dict[str, Any]) -> list[str]:
    """Every model and data source a recipe's YAML names: the model (or its two halves), a tokenizer
    taken from elsewhere, the data files or sets, reward models."""
    model = data.get("model") or {}
    tokenizer = model.get("tokenizer") if isinstance(model.get("tokenizer"), dict) else {}
    named = [model.get("name_or_path"), model.get("encoder"), model.get("decoder"), tokenizer.get("name_or_path"),
             *((data.get("data") or {}).get(k) for k in ("train", "validation", "test")),
             *(r.get("model") for r in (data.get("reward") or []) if isinstance(r, dict))]
    return [str(s) for s in named if s]


def is_hub_id(source: str) -> bool:
    """A source that names the Hub (`owner/name` or `name`), not a file, folder, run or packaged: name."""
    if source.startswith("packaged:") or source.startswith((".", "/", "~", "runs/")):
        return False
    path = Path(source)
    return not (path.suffix or len(path.parts) > 2)


def hub_ids(data: dict[str, Any]) -> list[str]:
    """The Hub ids (models and data sets) a recipe's YAML names, in order, each once."""
    return list(dict.fromkeys(s for s in sources(data) if is_hub_id(s)))


def needs(data: dict[str, Any]) -> str:
    """What a recipe needs to run, from its YAML: the Hub, or nothing (offline), or earlier runs."""
    if hub_ids(data):
        return "hub"
    after = []
    for source in sources(data):
        path = Path(source)
        if not source.startswith("packaged:") and len(path.parts) >= 2 and path.parts[-2] == "runs" \
                and (recipes_dir() / f"{path.name}.yaml").is_file():
            after.append(path.name)
    return "offline" + (f" after {'+'.join(after)}" if after else "")


def resolve_recipe(recipe: str) -> Path:
    """A bundled recipe name or a path to a YAML file -> the file's path."""
    candidate = Path(recipe).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.exists() or "/" in recipe:
        if not candidate.is_file():
            raise ConfigError(f"recipe file not found: {candidate}")
        return candidate
    bundled = recipes_dir() / f"{recipe}.yaml"
    if bundled.is_file():
        return bundled
    names = [r.name for r in list_recipes()]
    raise ConfigError(
        f"no recipe named '{recipe}'{did_you_mean(recipe, names)}: "
        "run `hf-tuner recipes list`, or pass a path to a YAML file"
    )


def copy_recipe(name: str, dest: str, force: bool = False) -> Path:
    """Copy a bundled recipe to DEST (a file, or a folder to put NAME.yaml in). A copy under another
    name trains into its own folder: `output_dir: runs/NAME` becomes `runs/NEW` (two copies of one
    recipe would otherwise train into one folder)."""
    import re

    source = resolve_recipe(name)
    target = copy_file(source, dest, force)
    if target.stem != source.stem:
        text = target.read_text(encoding="utf-8")
        pattern = re.compile(rf"^(output_dir:\s*[\"']?runs/){re.escape(source.stem)}(?=[\"']?\s*(#.*)?$)", re.M)
        target.write_text(pattern.sub(lambda m: m.group(1) + target.stem, text), encoding="utf-8")
    return target


def copy_file(source: Path, dest: str, force: bool = False) -> Path:
    """Copy a bundled file (recipe, launch profile) to DEST, a file or a folder; never overwrite
    an existing file unless `force`."""
    target = Path(dest).expanduser()
    if target.is_dir() or dest.endswith(("/", "\\")):  # an existing folder, or a new one (a trailing slash)
        target = target / source.name
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists: choose another path or pass --force")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def build_config(data: dict[str, Any], source: str = "recipe") -> RunConfig:
    """Validate plain recipe data into the RunConfig of its task, reporting every mistake in one
    line (unknown keys first), then the task's own cross-field checks."""
    from pydantic import ValidationError

    from .config import format_validation_error
    from .tasks import data_keys_elsewhere, get_task, recipe_model, recipe_problems, task_names

    task = data.get("task")
    if task is None:
        fields = list(RunConfig.model_fields)
        problems = [f"unknown key '{k}' at the top level{did_you_mean(str(k), fields)}" for k in data if k not in fields]
        problems.append(f"missing required key 'task' (one of: {', '.join(task_names())})")
        raise ConfigError(f"{source}: " + (problems[0] if len(problems) == 1 else f"{len(problems)} problems: " + "; ".join(problems)))
    if not isinstance(task, str):
        raise ConfigError(f"{source}: 'task' must be a task name (one of: {', '.join(task_names())})")
    task_cls = get_task(task)
    model = recipe_model(task)
    try:
        cfg = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc, model, data_keys_elsewhere(task))}") from None
    problems = recipe_problems(task_cls, cfg)
    if problems:
        raise ConfigError(f"{source}: " + ("; ".join(problems) if len(problems) == 1 else f"{len(problems)} problems: " + "; ".join(problems)))
    return cfg


def load_config(recipe: str, overrides: list[str] | None = None) -> RunConfig:
    """Recipe name or YAML path + `key=value` overrides -> validated RunConfig."""
    from .config import apply_overrides, read_yaml

    from .arguments import missing_tracker

    path = resolve_recipe(recipe)
    data = apply_overrides(read_yaml(path), overrides or [])
    cfg = build_config(data, source=str(path) if not overrides else f"{path} (with overrides)")
    for tracker in cfg.training.trackers():  # a run to train: its trackers must be installed (a finished run's need not)
        problem = missing_tracker(tracker)
        if problem:
            raise ConfigError(problem)
    return cfg


def task_keys(task: str) -> list[str]:
    """Lines describing what a task's recipes take: its `data:` keys with their defaults, and the
    arguments class its `training:` keys are checked against (for `recipes show --keys`)."""
    from .arguments import class_name, names_of
    from .tasks import get_task

    task_cls = get_task(task)
    lines = [f"# task {task}: data keys (default)"]
    for key, field in task_cls.data_schema.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        lines.append(f"#   data.{key:<22} {default}")
    lines.append(f"# training: any {class_name(task_cls.arguments)} name ({len(names_of(task_cls.arguments))} names; "
                 f"`{task_cls.arguments}`)")
    return lines


def load_run(run_dir: str | Path) -> RunFolder:
    """A finished run folder -> its path, resolved config and summary; clear errors otherwise."""
    from .config import read_yaml
    from .rundir import CONFIG, read_summary

    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise ConfigError(f"run folder not found: {path}")
    summary = read_summary(path)
    if not (path / CONFIG).is_file() or summary is None:
        raise ConfigError(f"{path} is not an hf-tuner run folder (no config.yaml / summary.json)")
    if summary.status != "completed":
        raise HfTunerError(f"the run in {path} did not finish (status: {summary.status})", 2)
    return RunFolder(path, build_config(read_yaml(path / CONFIG), source=str(path / CONFIG)), summary)
