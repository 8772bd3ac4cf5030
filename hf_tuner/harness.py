"""`hf-tuner eval --harness`: EleutherAI's lm-evaluation-harness on a trained model, with its
results folded into the run's metrics.json and model card like any other evaluation."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import ConfigError
from .evaluation import record_in_run, resolve_model_ref, task_of
from .modeling import quiet_libraries
from .rundir import adapter_base, adapter_dir, eval_file, has_full_weights, run_task
from .tasks import get_task


def run_harness(model: str, tasks: str, include_path: Optional[str] = None, batch_size: Optional[int] = None,
                max_samples: Optional[int] = None, output: Optional[str] = None, task: Optional[str] = None,
                on_status: Callable[[str], None] = print) -> dict[str, Any]:
    """Run EleutherAI's lm-evaluation-harness (the optional `harness` extra) on a causal LM and fold
    its results into the run's metrics.json / model card, one entry per harness task."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise ConfigError("--harness needs lm-evaluation-harness: pip install 'hf-tuner[harness]' (or pip install lm-eval)") from None
    ref = resolve_model_ref(model)
    # a plain model folder or Hub id with no task said is taken as lm-eval takes it: a causal LM
    task_name = task_of(ref, task, None) if task or ref.run_cfg is not None or run_task(Path(ref.path)) else None
    if task_name is not None and not get_task(task_name).objective.harness:
        raise ConfigError(f"--harness evaluates causal language models; this is a {task_name} model")
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise ConfigError("--harness needs task names, e.g. --harness hellaswag,arc_easy")
    quiet_libraries()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if include_path and not Path(include_path).exists():
        raise ConfigError(f"--harness-include {include_path} not found (a folder or file of lm-eval task YAMLs)")
    manager = TaskManager(include_path=str(Path(include_path).resolve()) if include_path else None)
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        from .errors import did_you_mean

        raise ConfigError(f"unknown lm-eval task '{unknown[0]}'{did_you_mean(unknown[0], manager.all_tasks)} "
                          "(add local task YAMLs with --harness-include DIR)")
    model_args = _harness_model_args(ref.path)
    on_status(f"Running lm-eval {', '.join(names)} on {ref.path} ...")
    started = time.time()
    raw = simple_evaluate(model="hf", model_args=model_args, tasks=names, batch_size=batch_size or 8,
                          limit=max_samples, task_manager=manager, device=_device(), log_samples=False)
    if raw is None:
        raise ConfigError("lm-eval returned no results")
    results: dict[str, Any] = {"model": ref.path, "task": task_name, "harness": {}, "runtime_s": round(time.time() - started, 2)}
    for name, values in raw["results"].items():
        metrics = {}
        for key, value in values.items():
            if key in ("alias", "sample_len") or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metrics[key.split(",")[0]] = round(float(value), 6)
        n = raw.get("n-samples", {}).get(name, {}).get("effective")
        results["harness"][name] = {"metrics": metrics, "rows": n}
    path = Path(output) if output else (eval_file(ref.run_dir, f"harness-{'+'.join(names)}") if ref.run_dir else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        results["output"] = str(path)
    if ref.run_dir is not None:
        for name, entry in results["harness"].items():
            record_in_run(ref, {"name": f"lm-eval-{name}", "metrics": entry["metrics"], "benchmark": f"lm-eval:{name}",
                                "data": f"lm-eval:{name}", "rows": entry["rows"], "task": task_name})
    return results


def _harness_model_args(path: str) -> dict[str, Any]:
    """lm-eval `hf` model arguments: the (merged) model, or base + LoRA adapter when only that exists."""
    folder = Path(path)
    if folder.is_dir() and not has_full_weights(folder):
        adapter = adapter_dir(folder)
        if adapter is not None:
            return {"pretrained": adapter_base(adapter), "peft": str(adapter), "tokenizer": str(folder)}
    return {"pretrained": path}


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
