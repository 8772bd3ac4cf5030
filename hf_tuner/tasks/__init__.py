"""The task registry: task name -> the class that knows how to train it (imported on demand)."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from .base import Task

REGISTRY: dict[str, str] = {
    "text-classification": "hf_tuner.tasks.text_classification:TextClassification",
    "causal-lm": "hf_tuner.tasks.causal_lm:CausalLM",
    "seq2seq": "hf_tuner.tasks.seq2seq:Seq2Seq",
    "image-classification": "hf_tuner.tasks.image_classification:ImageClassification",
}


def get_task(name: str) -> "type[Task]":
    """The Task class registered under `name`."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown task '{name}'{did_you_mean(name, REGISTRY)}; tasks: {', '.join(REGISTRY)}")
    module_name, _, class_name = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
