"""The task registry: task name -> the `Task` (its family, data and objective parts; see `base`),
imported on demand, and the recipe schema of each task.

A new task is one module with a `Task(...)` value plus one registration, either a line in
`REGISTRY` below, a `register(name, "package.module:TASK")` call, or an entry point in the
`hf_tuner.tasks` group of another package::

    [project.entry-points."hf_tuner.tasks"]
    my-task = "my_package.my_task:TASK"

Everything else (recipe schema, `validate`, `train`, `predict`, `eval`, `push`, the model card)
asks the task class.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from ..config import RunConfig
    from .base import Task

REGISTRY: dict[str, Any] = {
    "text-classification": "hf_tuner.tasks.text_classification:TASK",
    "causal-lm": "hf_tuner.tasks.causal_lm:TASK",
    "seq2seq": "hf_tuner.tasks.seq2seq:TASK",
    "image-classification": "hf_tuner.tasks.image_classification:TASK",
    "reward-modeling": "hf_tuner.tasks.reward_modeling:TASK",
    "dpo": "hf_tuner.tasks.dpo:TASK",
    "orpo": "hf_tuner.tasks.orpo:TASK",
    "kto": "hf_tuner.tasks.kto:TASK",
    "grpo": "hf_tuner.tasks.policy:GRPO",
    "rloo": "hf_tuner.tasks.policy:RLOO",
    "token-classification": "hf_tuner.tasks.token_classification:TASK",
    "question-answering": "hf_tuner.tasks.question_answering:TASK",
    "masked-lm": "hf_tuner.tasks.masked_lm:TASK",
    "image-captioning": "hf_tuner.tasks.image_captioning:TASK",
}
ENTRY_POINT_GROUP = "hf_tuner.tasks"
_discovered = False


def register(name: str, target: Any) -> None:
    """Make task `name` available: `target` is a `Task` or its "module:NAME" path."""
    REGISTRY[name] = target
    recipe_model.cache_clear()


def _discover() -> None:
    """Add tasks that installed packages declare as `hf_tuner.tasks` entry points (once)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        REGISTRY.setdefault(ep.name, ep.value)


def task_names() -> list[str]:
    """Every registered task name, sorted."""
    _discover()
    return sorted(REGISTRY)


def get_task(name: str) -> "Task":
    """The `Task` registered under `name`."""
    import importlib

    _discover()
    if name not in REGISTRY:
        raise ConfigError(f"unknown task '{name}'{did_you_mean(str(name), REGISTRY)}; tasks: {', '.join(task_names())}")
    target = REGISTRY[name]
    if isinstance(target, str):
        module_name, _, class_name = target.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"task '{name}' is registered as {REGISTRY[name]}, which cannot be imported: {exc}") from None
    from .base import Task

    if not isinstance(target, Task):
        raise ConfigError(f"task '{name}' is registered as {target!r}, which is not a hf_tuner.tasks.base.Task")
    if target.name != name:
        raise ConfigError(f"task '{name}' is registered as {REGISTRY[name]}, a Task named '{target.name}': use one name")
    return target


def recipe_problems(task: "Task", cfg: "RunConfig") -> list[str]:
    """Cross-field problems of a recipe (`Task.check_config`), and a starting run folder
    (`model.name_or_path`) of a task whose model this task cannot start from (`Task.may_start_from`)."""
    from pathlib import Path

    from ..rundir import run_task

    problems = []
    source = cfg.model.name_or_path
    other = run_task(Path(source).expanduser()) if source and not source.startswith("packaged:") else None
    if other is not None and other in REGISTRY and not task.may_start_from(get_task(other)):
        kinds = task.starts_from or (task.model_kind,)
        problems.append(f"model.name_or_path: {source} is a {other} run; a {task.name} run starts from a "
                        f"{' / '.join(kinds)} model")
    return problems + task.check_config(cfg)


@functools.lru_cache(maxsize=None)
def recipe_model(name: str) -> "type[RunConfig]":
    """The recipe schema of task `name`: the shared sections with the task's `data:` schema and a
    `training:` section checked against the task's arguments class."""
    from pydantic import Field, create_model

    from ..config import RunConfig, training_model

    task = get_task(name)
    training = training_model(task.arguments)
    return create_model(
        f"{type(task.data).__name__}Recipe", __base__=RunConfig,
        data=(task.data_schema, ...),
        training=(training, Field(default_factory=training)),
        **task.objective.sections,
    )


def data_keys_elsewhere(name: str) -> dict[str, str]:
    """`data:` keys that other built-in or registered tasks have and task `name` has not -> those tasks."""
    own = set(get_task(name).data_schema.model_fields)
    out: dict[str, list[str]] = {}
    for other in task_names():
        if other == name:
            continue
        try:
            fields = get_task(other).data_schema.model_fields
        except ConfigError:
            continue
        for key in fields:
            if key not in own:
                out.setdefault(key, []).append(other)
    return {k: " / ".join(v) for k, v in out.items()}
