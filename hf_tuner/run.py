"""The one training pipeline every task goes through: recipe -> task pieces -> the task's trainer
-> a run folder (see `rundir` for what it holds and how it is staged).
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from . import rundir
from .config import RunConfig, save_config
from .errors import ConfigError, HfTunerError, Interruption, TrialPruned
from .secrets import command_line


@dataclass
class Prepared:
    """What `validate` reports and `train` runs: the task bound to the recipe, data, tokenizer or
    processor and model, all built; nothing trained."""

    cfg: RunConfig
    job: Any  # tasks.base.Job
    splits: Any
    processing: Any
    model: Any
    trainable: int
    total: int


def prepare(cfg: RunConfig) -> Prepared:
    """Load data and model as the recipe says and check them, without training."""
    from .data import check_paths

    check_paths(cfg.data)  # before the heavy imports below: a missing file answers in about a second
    from transformers import set_seed

    from .modeling import choose_precision, count_parameters, quiet_libraries
    from .tasks import get_task
    from .tasks.base import load_metric_modules

    quiet_libraries()
    choose_precision(cfg)  # fail on impossible precision settings before loading anything
    set_seed(cfg.training.seed)
    job = get_task(cfg.task).bind(cfg)
    load_metric_modules(job)  # an evaluate module eval.metrics names that cannot load fails before the data loads
    splits = job.data.load(job)
    processing = job.family.build_processing(job, splits)
    job.data.check_processing(job, splits, processing)
    model = job.family.load_model(job, splits, processing)
    job.objective.prepare(job, splits)
    trainable, total = count_parameters(model)
    return Prepared(cfg, job, splits, processing, model, trainable, total)


def training_examples(p: Prepared, n: int) -> list[dict[str, Any]]:
    """The first `n` training rows as the model sees them ({"text", "trained"}; `validate --show-examples`)."""
    train = p.splits.train
    return p.job.data.show_examples(p.job, train.select(range(min(n, len(train)))), p.processing)


def learning_rate(cfg: RunConfig, job: Any) -> tuple[float, str]:
    """The learning rate a run uses and where it comes from (the recipe, or the method's default)."""
    if cfg.training.learning_rate is not None:
        return cfg.training.learning_rate, "set by the recipe"
    return job.default_learning_rate(), f"the {cfg.method.name} default; set training.learning_rate to change it"


def describe(p: Prepared) -> dict[str, Any]:
    """The facts `validate` prints and `summary.json` keeps about a prepared run."""
    cfg = p.cfg
    model_name = cfg.model.describe()
    rate, source = learning_rate(cfg, p.job)
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
    out.update(p.job.facts())
    notes = [*p.job.notes, *p.splits.notes]
    default = p.job.default_learning_rate()
    if cfg.method.name == "lora" and cfg.training.learning_rate is not None and rate < default / 5:
        notes.append(f"learning rate {rate:g} is low for LoRA, which rarely learns below ~{default / 5:g} "
                     f"(its default is {default:g}): drop training.learning_rate or raise it")
    if notes:
        out["notes"] = notes
    return out


def default_output_dir(cfg: RunConfig, recipe_name: str) -> Path:
    return Path(cfg.output_dir or Path("runs") / recipe_name)


def training_arguments(cfg: RunConfig, job: Any, out: Path) -> Any:
    """The task's arguments class from the recipe's `training:` section: hf-tuner's defaults, then
    the task's (`Job.training_defaults`), then what the recipe set; precision from the hardware."""
    from .modeling import choose_precision, has_accelerator

    # a progress bar (rate, ETA) on a terminal; plain log lines at logging_steps in CI and log files.
    # Said here: transformers derives it from its log level, which `quiet_libraries` lowers (no bar ever)
    values = {"disable_tqdm": not sys.stderr.isatty(), **cfg.training.model_dump(exclude_none=True),
              **job.training_defaults(), **cfg.training.set_by_recipe()}
    values.update(choose_precision(cfg))
    if not has_accelerator():
        values["use_cpu"] = True  # without it, processes under `accelerate launch` on CPU don't join up
    values["learning_rate"] = learning_rate(cfg, job)[0]
    if cfg.training.trackers():  # a tracker shows the run under its folder's name, in one project
        values.setdefault("run_name", out.name.removesuffix(rundir.STAGING_SUFFIX))
        values.setdefault("project", "hf-tuner")
    if values.get("metric_for_best_model") is None and values.get("load_best_model_at_end"):
        values["metric_for_best_model"] = job.objective.metric(job)
        values["greater_is_better"] = job.objective.greater_is_better
    from .arguments import import_object

    cls = import_object(job.objective.arguments)
    try:
        return cls(output_dir=str(out / rundir.CHECKPOINTS), **values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"training: {str(exc).strip().splitlines()[0]}") from None


def train(cfg: RunConfig, recipe_name: str, output_dir: Optional[str] = None, overwrite: bool = False,
          argv: Optional[list[str]] = None, on_status=print, resume: bool = False,
          callbacks: Sequence[Callable[[Any, Any, Any], Any]] = ()) -> rundir.RunSummary:
    """Train as the recipe says; return the run's summary (also written to summary.json).
    `callbacks`: builders called with (job, trainer, features) once the trainer exists, each giving a
    TrainerCallback to add (a sweep's pruning callback); one that raises `TrialPruned` ends the run
    with status `pruned`.

    Under `accelerate launch` every process runs this; only the main process writes files (and holds
    the output folder's lock). A run that fails before training starts leaves no staging folder; one
    that fails or is interrupted during training keeps it, with summary.json saying why and, where a
    checkpoint was saved, `resume=True` continues from the newest complete one."""
    from .modeling import choose_precision

    choose_precision(cfg)
    main = process_state(cfg).is_main_process
    out = Path(output_dir) if output_dir else default_output_dir(cfg, recipe_name)
    command = command_line(argv if argv is not None else sys.argv[1:])
    with (rundir.RunLock(out) if main else contextlib.nullcontext()), Interrupts() as interrupts:
        staging = rundir.prepare(out, overwrite, resume, recipe_fingerprint(cfg)) if main else rundir.staging_dir(out)
        process_state(cfg).wait_for_everyone()
        checkpoint = rundir.latest_checkpoint(staging) if resume else None
        started = time.time()
        summary = rundir.RunSummary(status="running", recipe=recipe_name, command=command, started_at=_now(),
                                    output_dir=str(out.resolve()), fingerprint=recipe_fingerprint(cfg))
        if checkpoint is not None:  # the interrupted run's summary (its before-training metrics too) goes on
            summary = (rundir.read_summary(staging) or summary).set(status="running", command=command,
                                                                    output_dir=str(out.resolve()), error=None)
            summary.resumed = [*summary.resumed, {"from": checkpoint.name, "at": _now()}]
            summary.model_fields_set.discard("error")  # the earlier failure is not this run's

        def write() -> None:
            if main:
                rundir.write_summary(staging, summary)

        write()
        if main:
            save_config(cfg, staging / rundir.CONFIG)
        try:
            _train_into(cfg, staging, summary, on_status if main else (lambda m: None), main, write, interrupts, checkpoint,
                        callbacks)
        except BaseException as exc:
            if summary.status == "running" and checkpoint is None and main:  # nothing trained yet: nothing to keep
                rundir.discard(staging)
                raise
            interrupted = isinstance(exc, (Interrupted, KeyboardInterrupt))
            status = "pruned" if isinstance(exc, TrialPruned) else "interrupted" if interrupted else "failed"
            summary.set(status=status, finished_at=_now(),
                        error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            write()
            raise
        summary.set(status="completed", finished_at=_now(), wall_time_s=round(time.time() - started, 1))
        if main:
            write()
            rundir.replace(staging, out)
            interrupts.stop_after_saving(out)
        process_state(cfg).wait_for_everyone()
    return summary


def resume_config(cfg: RunConfig, checkpoint: Path) -> RunConfig:
    """The recipe a resumed run loads with: a tokenizer trained from scratch is read back from the
    checkpoint (training it again need not give the same vocabulary the weights were trained with)."""
    from .config import TokenizerConfig

    tokenizer = cfg.model.tokenizer
    if tokenizer is None or not tokenizer.train:
        return cfg
    model = cfg.model.model_copy(update={"tokenizer": TokenizerConfig(name_or_path=str(checkpoint))})
    return cfg.model_copy(update={"model": model})


def recipe_fingerprint(cfg: RunConfig) -> dict[str, str]:
    """Hashes of the recipe parts a checkpoint depends on: resuming is refused when one changed."""
    from .data import digest

    data = cfg.to_dict()
    return {key: digest(data.get(key)) for key in ("task", "model", "method", "data")}


class Interrupted(HfTunerError):
    """SIGTERM / Ctrl-C stopped training (after saving a checkpoint where it could)."""


class Interrupts:
    """SIGTERM (what a cluster sends before pre-emption) and SIGINT during `train`, by phase:

    - before training: stop at once (nothing trained, nothing kept);
    - training: the first signal asks the Trainer to save a checkpoint and stop after the current
      step; a second one while that checkpoint is written waits for it (no half-written
      checkpoint), a second one at any other time stops at once;
    - evaluating after training: stop at once (the checkpoints are still there to resume from);
    - saving the finished run: the save completes and the run is in place, then it stops; a second
      signal stops at once.

    The exit code is 128 + the (first) signal's number, whichever way it stops."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None
        self.phase = "before"  # before, training, checkpoint, evaluating, saving
        self.waited = False  # a second signal arrived during the checkpoint save and waited for it
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "Interrupts":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is None:
            self.signal = signum
            if self.phase in ("training", "saving"):
                return  # training: the callback saves a checkpoint and stops; saving: the save ends first
        elif self.phase == "checkpoint" and not self.waited:
            self.waited = True  # the checkpoint the first signal asked for is being written: let it end
            return
        raise Interruption(self.signal, f"interrupted by {self.name}" + {
            "before": " before training started", "evaluating": " while evaluating the trained model",
        }.get(self.phase, ""))

    def stop_after_saving(self, out: Path) -> None:
        """After the finished run was saved: stop now if a signal arrived during the save."""
        if self.signal is not None:
            raise Interruption(self.signal, f"interrupted by {self.name} while the finished run was being saved; "
                                            f"the save completed: {out} holds the finished run")

    @property
    def name(self) -> str:
        import signal

        return signal.Signals(self.signal).name if self.signal else "interrupt"

    def callback(self) -> Any:
        """A TrainerCallback that turns a pending signal into "save a checkpoint, then stop"."""
        from transformers import TrainerCallback

        interrupts = self

        class StopOnSignal(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if interrupts.signal is not None and interrupts.phase == "training":
                    control.should_save = True
                    control.should_training_stop = True
                    interrupts.phase = "checkpoint"
                return control

            def on_save(self, args, state, control, **kwargs):
                if interrupts.phase == "checkpoint":
                    interrupts.phase = "training"  # saved: one more signal stops at once
                return control

        return StopOnSignal()


def process_state(cfg: RunConfig) -> Any:
    """accelerate's view of this process (rank, count). Ask anew each time: the Trainer re-creates
    the shared state when it sets up devices, so an object kept from before would go stale."""
    from accelerate import PartialState

    from .modeling import has_accelerator

    # cpu=True is what TrainingArguments passes without a GPU; it is also what makes several CPU
    # processes (gloo) see each other
    return PartialState(cpu=cfg.training.use_cpu or not has_accelerator())


def _train_into(cfg: RunConfig, staging: Path, summary: rundir.RunSummary, on_status, main: bool, write,
                interrupts: "Interrupts", checkpoint: Optional[Path] = None,
                callbacks: Sequence[Callable[[Any, Any, Any], Any]] = ()) -> None:
    from .card import write_model_card
    from .plots import plot_loss

    on_status(f"Preparing {cfg.task} ({cfg.method.name}) ...")
    p = prepare(resume_config(cfg, checkpoint) if checkpoint else cfg)
    summary.set(**describe(p))
    write()
    job = p.job
    with process_state(cfg).main_process_first():  # the main process tokenises and caches; the others read the cache
        features = job.data.preprocess(job, p.splits, p.processing)
    args = training_arguments(cfg, job, staging)
    trainer = job.objective.build_trainer(job, args, p.model, p.processing, features)
    trainer.add_callback(interrupts.callback())
    for build in callbacks:
        trainer.add_callback(build(job, trainer, features))
    _events_into(trainer, staging)
    summary.set(
        precision="bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        device=str(args.device),
        processes=trainer.accelerator.num_processes,
        distributed=trainer.accelerator.distributed_type.value,  # NO, MULTI_CPU (DDP on CPU), MULTI_GPU, FSDP, DEEPSPEED
        learning_rate=args.learning_rate,
        train_sampling_strategy=getattr(args, "train_sampling_strategy", None),
        tokenised_from_cache=job.cache_hits,
    )
    if cfg.eval.before_training and checkpoint is None:
        on_status("Evaluating the model before training ...")
        summary.metrics_before = job.objective.evaluate(job, trainer, features, "validation", phase="before")
        # Trainer.evaluate prepares the model "for evaluation" and accelerate marks it prepared, so
        # train() would then skip wrapping it in DDP: every process would train its own copy
        # (tested: the processes' weights differ after a 2-process run). Let train() wrap it.
        if trainer.model is trainer.model_wrapped and getattr(trainer.model, "_is_accelerate_prepared", False):
            trainer.model._is_accelerate_prepared = False
        if main:  # kept in staging, so a resumed run still has them
            job.objective.write_artifacts(job, staging, [])  # e.g. the samples before training
    import torch

    rng_file = staging / rundir.TRAIN_RNG
    if checkpoint is None:
        if main:  # the before-training evaluation drew from it; the train sampler's seed comes from it next
            torch.save(torch.random.get_rng_state(), rng_file)
    elif rng_file.is_file():  # so a resumed run orders its batches as the interrupted one did
        torch.random.set_rng_state(torch.load(rng_file))
    on_status(f"Training on {len(features.train)} rows ..." if checkpoint is None else
              f"Resuming from {checkpoint.name} ...")
    summary.status = "training"
    write()
    interrupts.phase = "training"
    train_output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if interrupts.signal is not None:
        saved = rundir.latest_checkpoint(staging)
        where = f"checkpoint {saved.name} saved in {saved.parent}" if saved else "no checkpoint could be saved"
        resume = summary.command + ("" if "--resume" in summary.command else " --resume")
        raise Interrupted(f"interrupted by {interrupts.name} at step {trainer.state.global_step}: {where}; "
                          f"continue with: {resume}", 128 + interrupts.signal)
    train_metrics = train_output.metrics
    summary.train = {
        "runtime_s": round(train_metrics.get("train_runtime", 0.0), 2),
        "samples_per_second": train_metrics.get("train_samples_per_second"),
        "steps_per_second": train_metrics.get("train_steps_per_second"),
        "train_loss": train_metrics.get("train_loss"),
        "global_steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
    }
    interrupts.phase = "evaluating"
    on_status("Evaluating the trained model ...")
    summary.metrics = job.objective.evaluate(job, trainer, features, "validation")
    if features.test is not None:
        summary.test_metrics = job.objective.evaluate(job, trainer, features, "test")
    if summary.metrics_before is not None:
        key = job.objective.metric(job)
        before, after = summary.metrics_before.get(key), summary.metrics.get(key)
        if before is not None and after is not None:
            summary.improvement = {"metric": key, "before": before, "after": after, "change": after - before}
    summary.versions = rundir.versions()
    trainer.accelerator.wait_for_everyone()
    if not main:
        return
    interrupts.phase = "saving"  # from here to the run folder in place, a signal waits for the save
    on_status("Saving the model ...")
    rundir.discard(staging / rundir.CHECKPOINTS)  # the final model supersedes them
    (staging / rundir.TRAIN_RNG).unlink(missing_ok=True)
    model = trainer.accelerator.unwrap_model(trainer.model)
    saved = rundir.save_model(model, p.processing, staging, cfg.method.save_merged)
    summary.saved = {k: os.path.relpath(v, staging) for k, v in saved.items()}
    metrics_file = {"validation": summary.metrics, "before_training": summary.metrics_before, "test": summary.test_metrics}
    rundir.write_json(staging / rundir.METRICS, {k: v for k, v in metrics_file.items() if v is not None})
    plot_loss(trainer.state.log_history, staging / rundir.LOSS_PLOT)
    rundir.write_json(staging / rundir.LOG_HISTORY, trainer.state.log_history)
    extra = job.objective.write_artifacts(job, staging, trainer.state.log_history)
    if extra:
        summary.artifacts = extra
    write_model_card(staging, cfg, summary)


def _events_into(trainer: Any, staging: Path) -> None:
    """TensorBoard's event files go into the run folder (`tensorboard/`), not under the checkpoints
    (removed when training finished), unless $TENSORBOARD_LOGGING_DIR says where."""
    if os.environ.get("TENSORBOARD_LOGGING_DIR"):
        return
    for callback in trainer.callback_handler.callbacks:
        if type(callback).__name__ == "TensorBoardCallback":
            callback.logging_dir = str(staging / rundir.TENSORBOARD_DIR)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")  # runs started in one second still sort
