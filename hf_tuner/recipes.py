"""Bundled recipes: find, list, show and copy them. Every CLI verb that takes a RECIPE reads here."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import ConfigError, did_you_mean


def recipes_dir() -> Path:
    """The folder of bundled recipes: inside the wheel, or `recipes/` of a source checkout."""
    packaged = Path(__file__).parent / "_recipes"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "recipes"


@dataclass(frozen=True)
class RecipeInfo:
    name: str
    path: Path
    task: str
    method: str
    description: str


def list_recipes() -> list[RecipeInfo]:
    """Every bundled recipe, sorted by name (reads only the YAML, imports nothing heavy)."""
    infos = []
    for path in sorted(recipes_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        method = (data.get("method") or {}).get("name", "full")
        infos.append(RecipeInfo(path.stem, path, data.get("task", "?"), method, data.get("description", "")))
    return infos


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
    """Copy a bundled recipe to DEST (a file, or a folder to put NAME.yaml in)."""
    source = resolve_recipe(name)
    target = Path(dest).expanduser()
    if target.is_dir():
        target = target / source.name
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists: choose another path or pass --force")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target
