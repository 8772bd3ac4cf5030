"""The one training pipeline every task goes through: recipe -> task pieces -> the task's trainer
-> a run folder (see `rundir` for what it holds and how it is staged).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from . import rundir
from .config import RunConfig, save_config
from .errors import ConfigError
from .secrets import command_line


@dataclass
class Plan:
    """What `validate` reports and `train` runs: everything built, nothing trained."""

    cfg: RunConfig
    task: Any
    splits: Any
    processing: Any
    model: Any
    trainable: int
    total: int


def plan(cfg: RunConfig) -> Plan:
    """Load data and model as the recipe says and check them, without training."""
    from transformers import set_seed

    from .modeling import choose_precision, count_parameters, quiet_libraries
    from .tasks import get_task

    quiet_libraries()
    choose_precision(cfg)  # fail on impossible precision settings before loading anything
    set_seed(cfg.training.seed)
    task = get_task(cfg.task)(cfg)
    splits = task.load_data()
    processing = task.load_processing(splits)
    model = task.load_model(splits, processing)
    trainable, total = count_parameters(model)
    return Plan(cfg, task, splits, processing, model, trainable, total)


def learning_rate(cfg: RunConfig, task: Any) -> tuple[float, str]:
    """The learning rate a run uses and where it comes from (the recipe, or the method's default)."""
    if cfg.training.learning_rate is not None:
        return cfg.training.learning_rate, "set by the recipe"
    return task.default_learning_rate(), f"the {cfg.method.name} default; set training.learning_rate to change it"


def describe(p: Plan) -> dict[str, Any]:
    """The facts `validate` prints and `summary.json` keeps about a plan."""
    cfg = p.cfg
    model_name = cfg.model.name_or_path or f"{cfg.model.from_scratch.model_type} from scratch"
    rate, source = learning_rate(cfg, p.task)
    out = {
        "task": cfg.task,
        "model": model_name,
        "method": cfg.method.name,
        "learning_rate": f"{rate:g} ({source})",
        "trainable_params": p.trainable,
        "total_params": p.total,
        "rows": p.splits.rows(),
        "data": p.splits.sources,
    }
    if cfg.method.name == "lora":
        peft_cfg = next(iter(p.model.peft_config.values()))
        out["lora_target_modules"] = sorted(peft_cfg.target_modules) if isinstance(peft_cfg.target_modules, (set, list)) else peft_cfg.target_modules
    out.update(p.task.facts())
    notes = [*p.task.notes, *p.splits.notes]
    default = p.task.default_learning_rate()
    if cfg.method.name == "lora" and cfg.training.learning_rate is not None and rate < default / 5:
        notes.append(f"learning rate {rate:g} is low for LoRA, which rarely learns below ~{default / 5:g} "
                     f"(its default is {default:g}): drop training.learning_rate or raise it")
    if notes:
        out["notes"] = notes
    return out


def default_output_dir(cfg: RunConfig, recipe_name: str) -> Path:
    return Path(cfg.output_dir or Path("runs") / recipe_name)


def training_arguments(cfg: RunConfig, task: Any, out: Path) -> Any:
    """The task's arguments class from the recipe's `training:` section: hf-tuner's defaults, then
    the task's (`Task.training_defaults`), then what the recipe set; precision from the hardware."""
    from .modeling import choose_precision, has_accelerator

    values = {**cfg.training.model_dump(exclude_none=True), **task.training_defaults(), **cfg.training.set_by_recipe()}
    values.update(choose_precision(cfg))
    if not has_accelerator():
        values["use_cpu"] = True  # without it, processes under `accelerate launch` on CPU don't join up
    values["learning_rate"] = learning_rate(cfg, task)[0]
    if values.get("metric_for_best_model") is None and values.get("load_best_model_at_end"):
        values["metric_for_best_model"] = task.primary_metric
        values["greater_is_better"] = task.greater_is_better
    cls = task.training_arguments_class()
    try:
        return cls(output_dir=str(out / rundir.CHECKPOINTS), **values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"training: {str(exc).strip().splitlines()[0]}") from None


def train(cfg: RunConfig, recipe_name: str, output_dir: Optional[str] = None, overwrite: bool = False,
          argv: Optional[list[str]] = None, on_status=print) -> dict[str, Any]:
    """Train as the recipe says; return the run's summary (also written to summary.json).

    Under `accelerate launch` every process runs this; only the main process writes files. A run
    that fails before training starts leaves no staging folder; one that fails during training
    keeps it, with summary.json saying why."""
    from .modeling import choose_precision

    choose_precision(cfg)
    main = process_state(cfg).is_main_process
    out = Path(output_dir) if output_dir else default_output_dir(cfg, recipe_name)
    staging = rundir.prepare(out, overwrite) if main else rundir.staging_dir(out)
    process_state(cfg).wait_for_everyone()
    started = time.time()
    summary: dict[str, Any] = {
        "status": "running",
        "recipe": recipe_name,
        "command": command_line(argv if argv is not None else sys.argv[1:]),
        "started_at": _now(),
        "output_dir": str(out.resolve()),
    }
    write = rundir.write_json if main else (lambda path, data: None)
    write(staging / rundir.SUMMARY, summary)
    if main:
        save_config(cfg, staging / rundir.CONFIG)
    try:
        summary.update(_train_into(cfg, staging, summary, on_status if main else (lambda m: None), main, write))
    except BaseException as exc:
        if summary["status"] == "running" and main:  # nothing trained yet: nothing worth keeping
            rundir.discard(staging)
            raise
        summary.update(status="failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                       finished_at=_now())
        write(staging / rundir.SUMMARY, summary)
        raise
    summary.update(status="completed", finished_at=_now(), wall_time_s=round(time.time() - started, 1))
    if main:
        write(staging / rundir.SUMMARY, summary)
        rundir.replace(staging, out)
    process_state(cfg).wait_for_everyone()
    return summary


def process_state(cfg: RunConfig) -> Any:
    """accelerate's view of this process (rank, count). Ask anew each time: the Trainer re-creates
    the shared state when it sets up devices, so an object kept from before would go stale."""
    from accelerate import PartialState

    from .modeling import has_accelerator

    # cpu=True is what TrainingArguments passes without a GPU; it is also what makes several CPU
    # processes (gloo) see each other
    return PartialState(cpu=cfg.training.use_cpu or not has_accelerator())


def _train_into(cfg: RunConfig, staging: Path, summary: dict[str, Any], on_status, main: bool, write) -> dict[str, Any]:
    from .card import write_model_card
    from .plots import plot_loss

    on_status(f"Preparing {cfg.task} ({cfg.method.name}) ...")
    p = plan(cfg)
    summary.update(describe(p))
    write(staging / rundir.SUMMARY, summary)
    task = p.task
    with process_state(cfg).main_process_first():  # the main process tokenises and caches; the others read the cache
        features = task.preprocess(p.splits, p.processing)
    args = training_arguments(cfg, task, staging)
    trainer = task.build_trainer(args, p.model, p.processing, features.train, features.validation)
    results: dict[str, Any] = {
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "device": str(args.device),
        "processes": trainer.accelerator.num_processes,
        "learning_rate": args.learning_rate,
        "train_sampling_strategy": getattr(args, "train_sampling_strategy", None),
        "tokenised_from_cache": task.cache_hits,
    }
    if cfg.eval.before_training:
        on_status("Evaluating the model before training ...")
        results["metrics_before"] = task.evaluate(trainer, features, "validation", phase="before")
    on_status(f"Training on {len(features.train)} rows ...")
    summary["status"] = "training"
    write(staging / rundir.SUMMARY, summary)
    train_output = trainer.train()
    train_metrics = train_output.metrics
    results["train"] = {
        "runtime_s": round(train_metrics.get("train_runtime", 0.0), 2),
        "samples_per_second": train_metrics.get("train_samples_per_second"),
        "steps_per_second": train_metrics.get("train_steps_per_second"),
        "train_loss": train_metrics.get("train_loss"),
        "global_steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
    }
    on_status("Evaluating the trained model ...")
    results["metrics"] = task.evaluate(trainer, features, "validation")
    if features.test is not None:
        results["test_metrics"] = task.evaluate(trainer, features, "test")
    if "metrics_before" in results:
        key = task.primary_metric
        before, after = results["metrics_before"].get(key), results["metrics"].get(key)
        if before is not None and after is not None:
            results["improvement"] = {"metric": key, "before": before, "after": after, "change": after - before}
    results["versions"] = rundir.versions()
    trainer.accelerator.wait_for_everyone()
    if not main:
        return results
    on_status("Saving the model ...")
    rundir.discard(staging / rundir.CHECKPOINTS)  # the final model supersedes them
    model = trainer.accelerator.unwrap_model(trainer.model)
    saved = rundir.save_model(model, p.processing, staging, cfg.method.save_merged)
    results["saved"] = {k: os.path.relpath(v, staging) for k, v in saved.items()}
    metrics_file = {"validation": results["metrics"], "before_training": results.get("metrics_before"),
                    "test": results.get("test_metrics")}
    write(staging / rundir.METRICS, {k: v for k, v in metrics_file.items() if v is not None})
    plot_loss(trainer.state.log_history, staging / rundir.LOSS_PLOT)
    write(staging / rundir.LOG_HISTORY, trainer.state.log_history)
    extra = task.write_artifacts(staging, trainer.state.log_history)
    if extra:
        results["artifacts"] = extra
    write_model_card(staging, cfg, {**summary, **results})
    return results


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
