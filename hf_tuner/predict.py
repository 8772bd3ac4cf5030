"""`hf-tuner predict`: run a finished run folder's model on raw inputs, whatever its task."""
from __future__ import annotations

from typing import Any

from .run import load_run
from .tasks import get_task


def predict(run_dir: str, inputs: list[str], **options: Any) -> list[dict[str, Any]]:
    """One result per input: {"input", "label", "top": [...]} for classifiers, {"input", "output"}
    for generators. The run's config.yaml says which task (and so which model class) to use."""
    from .run import _quiet_libraries

    path, cfg, _ = load_run(run_dir)
    _quiet_libraries()
    return get_task(cfg.task).predict(path, inputs, **options)
