"""The one training pipeline every task goes through, and the run folder it writes.

A run folder holds: the model (`from_pretrained(run_dir)` works; LoRA runs add `adapter/`), the
tokenizer or processor, `config.yaml` (the resolved recipe), `metrics.json`, `summary.json`,
`loss.png` and `README.md` (model card). The run is built in `<output_dir>.incomplete/` and moved
into place only when it finished, so a killed or failed run never replaces a finished one.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from .config import RunConfig, save_config
from .errors import ConfigError, HfTunerError
from .secrets import command_line

SUMMARY = "summary.json"
METRICS = "metrics.json"
CONFIG = "config.yaml"


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
    from .modeling import choose_precision, count_parameters
    from .tasks import get_task

    _quiet_libraries()
    choose_precision(cfg)  # fail on impossible precision settings before loading anything
    _seed(cfg.training.seed)
    task = get_task(cfg.task)(cfg)
    splits = task.load_data()
    processing = task.load_processing(splits)
    model = task.load_model(splits, processing)
    trainable, total = count_parameters(model)
    return Plan(cfg, task, splits, processing, model, trainable, total)


def describe(p: Plan) -> dict[str, Any]:
    """The facts `validate` prints and `summary.json` keeps about a plan."""
    cfg = p.cfg
    model_name = cfg.model.name_or_path or f"{cfg.model.from_scratch.model_type} from scratch"
    out = {
        "task": cfg.task,
        "model": model_name,
        "method": cfg.method.name,
        "trainable_params": p.trainable,
        "total_params": p.total,
        "rows": p.splits.rows(),
        "data": p.splits.sources,
    }
    if cfg.method.name == "lora":
        peft_cfg = next(iter(p.model.peft_config.values()))
        out["lora_target_modules"] = sorted(peft_cfg.target_modules) if isinstance(peft_cfg.target_modules, (set, list)) else peft_cfg.target_modules
    for key in ("labels",):
        if key in p.task.info:
            out[key] = p.task.info[key]
    if p.splits.notes:
        out["notes"] = p.splits.notes
    return out


def default_output_dir(cfg: RunConfig, recipe_name: str) -> Path:
    return Path(cfg.output_dir or Path("runs") / recipe_name)


def read_summary(run_dir: Path) -> Optional[dict[str, Any]]:
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def prepare_output_dir(out: Path, overwrite: bool) -> Path:
    """Check `out` may receive this run; return the staging folder the run is built in."""
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"output dir {out} is a file")
        summary = read_summary(out)
        if summary is None and any(out.iterdir()):
            raise ConfigError(f"output dir {out} is not empty and holds no hf-tuner run: choose another --output-dir")
        if summary is not None and summary.get("status") == "completed" and not overwrite:
            raise ConfigError(f"{out} already holds a finished run: pass --overwrite to replace it, or choose another --output-dir")
    staging = out.with_name(out.name + ".incomplete")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def training_arguments(cfg: RunConfig, task: Any, out: Path) -> Any:
    """TrainingArguments (or the task's subclass) from the recipe's `training:` section."""
    from .modeling import choose_precision

    values = {**task.extra_training_arguments(), **cfg.training.model_dump(exclude_none=True)}
    values.update(choose_precision(cfg))
    if not _has_accelerator():
        values["use_cpu"] = True  # without it, processes under `accelerate launch` on CPU don't join up
    values.setdefault("learning_rate", task.default_learning_rate())
    if values.get("metric_for_best_model") is None and values.get("load_best_model_at_end"):
        values["metric_for_best_model"] = task.primary_metric
        values["greater_is_better"] = task.greater_is_better
    cls = task.training_arguments_class()
    try:
        return cls(output_dir=str(out / "checkpoints"), **values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"training: {str(exc).strip().splitlines()[0]}") from None


def train(cfg: RunConfig, recipe_name: str, output_dir: Optional[str] = None, overwrite: bool = False,
          argv: Optional[list[str]] = None, on_status=print) -> dict[str, Any]:
    """Train as the recipe says; return the run's summary (also written to summary.json).

    Under `accelerate launch` every process runs this; only the main process writes files."""
    from .modeling import choose_precision

    choose_precision(cfg)
    main = _process_state(cfg).is_main_process
    out = Path(output_dir) if output_dir else default_output_dir(cfg, recipe_name)
    staging = prepare_output_dir(out, overwrite) if main else out.with_name(out.name + ".incomplete")
    _process_state(cfg).wait_for_everyone()
    started = time.time()
    summary: dict[str, Any] = {
        "status": "running",
        "recipe": recipe_name,
        "command": command_line(argv if argv is not None else sys.argv[1:]),
        "started_at": _now(),
        "output_dir": str(out.resolve()),
    }
    write = _write_json if main else (lambda path, data: None)
    write(staging / SUMMARY, summary)
    if main:
        save_config(cfg, staging / CONFIG)
    try:
        summary.update(_train_into(cfg, staging, summary, on_status if main else (lambda m: None), main, write))
    except BaseException as exc:
        summary.update(status="failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                       finished_at=_now())
        write(staging / SUMMARY, summary)
        raise
    summary.update(status="completed", finished_at=_now(), wall_time_s=round(time.time() - started, 1))
    if main:
        write(staging / SUMMARY, summary)
        _replace(staging, out)
    _process_state(cfg).wait_for_everyone()
    return summary


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())


def _process_state(cfg: RunConfig) -> Any:
    """accelerate's view of this process (rank, count). Ask anew each time: the Trainer re-creates
    the shared state when it sets up devices, so an object kept from before would go stale."""
    from accelerate import PartialState

    # cpu=True is what TrainingArguments passes without a GPU; it is also what makes several CPU
    # processes (gloo) see each other
    return PartialState(cpu=cfg.training.use_cpu or not _has_accelerator())


def _train_into(cfg: RunConfig, staging: Path, summary: dict[str, Any], on_status, main: bool, write) -> dict[str, Any]:
    from .modeling import save_model

    on_status(f"Preparing {cfg.task} ({cfg.method.name}) ...")
    p = plan(cfg)
    facts = describe(p)
    summary.update(facts)
    write(staging / SUMMARY, summary)
    with _process_state(cfg).main_process_first():  # the main process tokenises and caches; the others read the cache
        features = p.task.preprocess(p.splits, p.processing)
    args = training_arguments(cfg, p.task, staging)
    trainer = build_trainer(p.task, args, p.model, p.processing, features.train, features.validation)
    results: dict[str, Any] = {
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "device": str(args.device),
        "processes": trainer.accelerator.num_processes,
        "learning_rate": args.learning_rate,
        "tokenised_from_cache": p.task.info.get("tokenised_from_cache"),
    }
    if cfg.eval.before_training:
        on_status("Evaluating the model before training ...")
        results["metrics_before"] = _evaluate(trainer, p.task, features, "validation")
    on_status(f"Training on {len(features.train)} rows ...")
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
    results["metrics"] = _evaluate(trainer, p.task, features, "validation")
    if features.test is not None:
        results["test_metrics"] = _evaluate(trainer, p.task, features, "test")
    if "metrics_before" in results:
        key = p.task.primary_metric
        before, after = results["metrics_before"].get(key), results["metrics"].get(key)
        if before is not None and after is not None:
            results["improvement"] = {"metric": key, "before": before, "after": after, "change": after - before}
    results["versions"] = versions()
    trainer.accelerator.wait_for_everyone()
    if not main:
        return results
    on_status("Saving the model ...")
    shutil.rmtree(staging / "checkpoints", ignore_errors=True)  # the final model supersedes them
    model = trainer.accelerator.unwrap_model(trainer.model)
    results["saved"] = {k: os.path.relpath(v, staging) for k, v in save_model(model, p.processing, staging, cfg.method.save_merged).items()}
    metrics_file = {"validation": results["metrics"], "before_training": results.get("metrics_before"),
                    "test": results.get("test_metrics")}
    write(staging / METRICS, {k: v for k, v in metrics_file.items() if v is not None})
    _plot_loss(trainer.state.log_history, staging / "loss.png")
    write(staging / "log_history.json", trainer.state.log_history)
    from .hub import write_model_card

    write_model_card(staging, cfg, {**summary, **results})
    return results


def build_trainer(task: Any, args: Any, model: Any, processing: Any, train_dataset: Any, eval_dataset: Any) -> Any:
    """The task's Trainer with the task's collator and metrics (training and `hf-tuner eval` alike)."""
    return task.trainer_class()(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processing,
        data_collator=task.data_collator(processing),
        compute_metrics=task.compute_metrics(),
        preprocess_logits_for_metrics=task.preprocess_logits_for_metrics(),
        **task.trainer_kwargs(processing),
    )


# Trainer metrics about speed, not quality: left out of metrics.json and summaries.
SPEED_METRICS = ("runtime", "samples_per_second", "steps_per_second", "model_preparation_time")


def strip_metrics(raw: dict[str, Any], prefix: str) -> dict[str, Any]:
    """`{prefix}_accuracy`-style Trainer metrics -> `accuracy`, without the speed figures."""
    metrics = {k.removeprefix(f"{prefix}_"): v for k, v in raw.items() if k.startswith(f"{prefix}_")}
    return {k: v for k, v in metrics.items() if k not in SPEED_METRICS}


def _evaluate(trainer: Any, task: Any, features: Any, split: str) -> dict[str, float]:
    ds = getattr(features, split)
    metrics = strip_metrics(trainer.evaluate(eval_dataset=ds, metric_key_prefix=split), split)
    metrics.update(task.extra_metrics(trainer, features, split))
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}


def _replace(staging: Path, out: Path) -> None:
    """Move the finished run into place; an older run there is removed only after that succeeded."""
    old = None
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _plot_loss(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], v) for h in history for k, v in h.items() if k.endswith("eval_loss") or k == "validation_loss"]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("hf-tuner", "torch", "transformers", "datasets", "peft", "accelerate", "trl", "evaluate", "huggingface_hub"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _seed(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def _quiet_libraries() -> None:
    """Keep the console for progress bars and hf-tuner's own lines."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # weight-loading bars; training keeps its own
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.filterwarnings("ignore", category=FutureWarning)


def load_run(run_dir: str | Path) -> tuple[Path, RunConfig, dict[str, Any]]:
    """A finished run folder -> (path, its resolved config, its summary); clear errors otherwise."""
    from .config import build_config, read_yaml

    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise ConfigError(f"run folder not found: {path}")
    if not (path / CONFIG).is_file() or read_summary(path) is None:
        raise ConfigError(f"{path} is not an hf-tuner run folder (no config.yaml / summary.json)")
    summary = read_summary(path) or {}
    if summary.get("status") != "completed":
        raise HfTunerError(f"the run in {path} did not finish (status: {summary.get('status')})", 2)
    return path, build_config(read_yaml(path / CONFIG), source=str(path / CONFIG)), summary
