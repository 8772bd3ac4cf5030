"""`hf-tuner predict`: run a finished run folder's model on raw inputs, whatever its task."""
from __future__ import annotations

from typing import Any

from .modeling import quiet_libraries
from .recipes import load_run
from .tasks import get_task


def predict(run_dir: str, inputs: list[str], **options: Any) -> list[tuple[dict[str, Any], str]]:
    """One (result, printable line) per input. A result is {"input", "label", "top": [...]} for
    classifiers and {"input", "output"} for generators; the run's config says which task it is."""
    run = load_run(run_dir)
    quiet_libraries()
    job = get_task(run.cfg.task).bind(run.cfg)
    loaded = job.family.load_trained(run.path)
    return [(r, job.objective.format_result(r)) for r in job.objective.predict(job, loaded, inputs, **options)]
