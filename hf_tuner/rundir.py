"""The run folder, its one owner: file names, summary, staging and atomic replace, the model files
(full weights or a LoRA adapter) and loading a finished run back.

A run folder holds: the model (`from_pretrained(run_dir)` works; LoRA runs add `adapter/`), the
tokenizer or processor, `config.yaml` (the resolved recipe), `metrics.json`, `summary.json`,
`loss.png`, `log_history.json` and `README.md` (model card); with `training.report_to: tensorboard`,
TensorBoard's event files in `tensorboard/`. A run is built in
`<output_dir>.incomplete/` and moved into place only when it finished, so a killed or failed run
never replaces a finished one.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict

from .config import RunConfig
from .errors import ConfigError, HfTunerError

CONFIG = "config.yaml"
SUMMARY = "summary.json"
EVAL_DIR = "eval"  # `hf-tuner eval` results: eval/NAME.json (+ NAME.confusion.png)
CONFUSION_SUFFIX = ".confusion.png"
PREDICTIONS_SUFFIX = ".predictions.json"  # question answering: id -> answer, next to eval/NAME.json
NBEST_SUFFIX = ".nbest_predictions.json"  # ... and id -> the n-best answers with probabilities
SAMPLES = {"before": "samples_before.jsonl", "after": "samples_after.jsonl"}  # grpo / rloo completions
REWARD_PLOT = "reward.png"
SAMPLE_SHEETS = {"before": "samples_before.png", "after": "samples_after.png"}  # image-to-text: images + captions
SAMPLE_SHEET_SUFFIX = ".samples.png"  # `hf-tuner eval` of an image-to-text run: eval/NAME.samples.png
METRICS = "metrics.json"
LOG_HISTORY = "log_history.json"
LOSS_PLOT = "loss.png"
CARD = "README.md"
ADAPTER_DIR = "adapter"
CHECKPOINTS = "checkpoints"
TENSORBOARD_DIR = "tensorboard"  # training.report_to: tensorboard writes its event files here
TRAIN_RNG = "train_rng_state.pt"  # staging only: the random state training started with (a resume replays it)
STAGING_SUFFIX = ".incomplete"
# Files of a run that describe it (not the model): uploaded next to the model, read by `eval`.
RUN_FILES = (CONFIG, METRICS, LOSS_PLOT, LOG_HISTORY)
# Files that stay local: the card is re-written for a Hub repo, the summary holds local paths.
LOCAL_ONLY = {CARD, SUMMARY}


# ------------------------------------------------------------------------------------------ files


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Optional[Any]:
    """The JSON in `path`, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


class RunSummary(BaseModel):
    """`summary.json`: what a run is and did. Written by `run.train` alone (`write_summary`), read
    through this model by the CLI, the model card, `eval`, `push` and resuming. Only the fields a
    run set are written."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    status: str = "running"  # running, training, completed, failed, interrupted, pruned (a sweep stopped it)
    recipe: Optional[str] = None
    command: str = ""
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    wall_time_s: Optional[float] = None
    output_dir: Optional[str] = None
    fingerprint: dict[str, str] = {}  # recipe part -> hash; resuming is refused when one changed
    resumed: list[dict[str, str]] = []
    error: Optional[str] = None
    # what was built (`run.describe`)
    task: Optional[str] = None
    model: Optional[str] = None
    method: Optional[str] = None
    learning_rate: Union[float, str, None] = None  # "rate (why)" until training starts, then the rate used
    trainable_params: Optional[int] = None
    total_params: Optional[int] = None
    rows: dict[str, int] = {}
    data: dict[str, str] = {}
    lora_target_modules: Union[list[str], str, None] = None
    labels: Optional[list[str]] = None
    notes: list[str] = []
    # how it trained and what it measured
    precision: Optional[str] = None
    device: Optional[str] = None
    processes: Optional[int] = None
    distributed: Optional[str] = None
    train_sampling_strategy: Optional[str] = None
    tokenised_from_cache: Optional[dict[str, bool]] = None
    metrics_before: Optional[dict[str, Any]] = None
    train: Optional[dict[str, Any]] = None
    metrics: Optional[dict[str, Any]] = None
    test_metrics: Optional[dict[str, Any]] = None
    improvement: Optional[dict[str, Any]] = None
    versions: dict[str, str] = {}
    saved: dict[str, str] = {}
    artifacts: list[str] = []

    def set(self, **values: Any) -> "RunSummary":
        for key, value in values.items():
            setattr(self, key, value)
        return self


def write_summary(folder: Path, summary: RunSummary) -> None:
    write_json(Path(folder) / SUMMARY, summary.model_dump(mode="json", exclude_unset=True))


def read_summary(run_dir: Path) -> Optional[RunSummary]:
    """The run's summary, or None when there is none (or it is unreadable). Keys this version does
    not know are skipped."""
    data = read_json(Path(run_dir) / SUMMARY)
    if not isinstance(data, dict):
        return None
    try:
        return RunSummary.model_validate({k: v for k, v in data.items() if k in RunSummary.model_fields})
    except ValueError:
        return None


def eval_file(run_dir: Path, name: str) -> Path:
    """Where `hf-tuner eval` keeps one evaluation of a run."""
    return Path(run_dir) / EVAL_DIR / f"{name}.json"


def is_run_folder(path: Path) -> bool:
    """True when `path` holds an hf-tuner run (finished or not): summary.json is its first file. A model
    pushed by hf-tuner and downloaded again has config.yaml but no summary: a model folder."""
    return path.is_dir() and (path / SUMMARY).is_file()


def run_task(path: Path) -> Optional[str]:
    """The task of the run in `path` (from its config.yaml), or None when `path` holds no run."""
    if not (path / CONFIG).is_file():
        return None
    from .config import read_yaml

    try:
        return str(read_yaml(path / CONFIG).get("task"))
    except HfTunerError:
        return None


def has_full_weights(path: Path) -> bool:
    """True when `path` holds a full model (config + weights), not only a LoRA adapter."""
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def adapter_dir(path: Path) -> Optional[Path]:
    """The folder of a run's (or a plain adapter folder's) LoRA adapter, or None."""
    for folder in (path / ADAPTER_DIR, path):
        if (folder / "adapter_config.json").is_file():
            return folder
    return None


def read_eval_results(run_dir: Path) -> dict[str, Any]:
    """The "eval" section of a run's metrics.json (what `hf-tuner eval` recorded)."""
    data = read_json(Path(run_dir) / METRICS)
    return (data.get("eval") or {}) if isinstance(data, dict) else {}


def record_eval(run_dir: Path, name: str, entry: dict[str, Any]) -> None:
    """Keep one evaluation in the run's metrics.json ("eval" section, keyed by name)."""
    path = Path(run_dir) / METRICS
    data = read_json(path) or {}
    data.setdefault("eval", {})[name] = entry
    write_json(path, data)


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a run used."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("hf-tuner", "torch", "transformers", "datasets", "peft", "accelerate", "trl", "evaluate", "huggingface_hub"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


# ------------------------------------------------------------------------------------------ staging


def staging_dir(out: Path) -> Path:
    return out.with_name(out.name + STAGING_SUFFIX)


def prepare(out: Path, overwrite: bool, resume: bool = False, fingerprint: Optional[dict[str, str]] = None) -> Path:
    """Check `out` may receive this run; return the staging folder it is built in: a new, empty one,
    or with `resume` the interrupted run's (checked to be the same job: the recipe `fingerprint`)."""
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"output dir {out} is a file")
        summary = read_summary(out)
        if summary is None and any(out.iterdir()):
            raise ConfigError(f"output dir {out} is not empty and holds no hf-tuner run: choose another --output-dir")
        if summary is not None and summary.status == "completed" and not overwrite:
            raise ConfigError(f"{out} already holds a finished run: pass --overwrite to replace it, or choose another --output-dir")
    staging = staging_dir(out)
    if resume:
        check_resumable(staging, fingerprint or {})
        return staging
    if latest_checkpoint(staging) is not None and not overwrite:
        raise ConfigError(f"{staging} holds checkpoints of an unfinished run: pass --resume to continue it, or "
                          "--overwrite to start afresh")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def check_resumable(staging: Path, fingerprint: dict[str, str]) -> Path:
    """The newest complete checkpoint of an unfinished run, if the recipe still describes that run."""
    summary = read_summary(staging)
    if summary is None:
        raise ConfigError(f"nothing to resume: {staging} holds no unfinished run (train without --resume)")
    checkpoint = latest_checkpoint(staging)
    if checkpoint is None:
        raise ConfigError(f"nothing to resume: {staging} holds no complete checkpoint (the run saves one per "
                          "training.save_strategy; train without --resume to start afresh)")
    before = summary.fingerprint
    changed = [k for k in fingerprint if before.get(k) != fingerprint[k]]
    if changed:
        raise ConfigError(f"cannot resume {staging}: the recipe's {' and '.join(changed)} changed since its checkpoint was "
                          "saved; restore them, or train without --resume (with --overwrite) to start afresh")
    return checkpoint


def latest_checkpoint(staging: Path) -> Optional[Path]:
    """The newest complete `checkpoints/checkpoint-N` of a staging folder. Complete: the Trainer
    wrote trainer_state.json, its last file, and it parses (a checkpoint cut short by a kill has none,
    or half of one)."""
    folder = staging / CHECKPOINTS
    if not folder.is_dir():
        return None
    found = []
    for path in folder.glob("checkpoint-*"):
        step = path.name.rpartition("-")[2]
        state = read_json(path / "trainer_state.json")
        if step.isdigit() and isinstance(state, dict) and state.get("global_step") == int(step):
            found.append((int(step), path))
    return max(found)[1] if found else None


def lock_path(out: Path) -> Path:
    """`<output_dir>.lock`: held by the `train` writing `out` (see `RunLock`)."""
    return out.with_name(out.name + ".lock")


def lock_owner(out: Path) -> tuple[str, dict[str, Any]]:
    """Who holds the lock of `out`: ("free", {}), ("live", owner) for a process alive on this host,
    ("stale", owner) when its process is gone (a killed run) or the lock was left half-written, or
    ("elsewhere", owner) for a process on another host, which cannot be checked from here."""
    import socket
    import time

    path = lock_path(out)
    if not path.is_file():
        return "free", {}
    owner = read_json(path) or {}
    if not owner:  # a writer died mid-write (or is writing it now: give it a few seconds)
        try:
            young = time.time() - path.stat().st_mtime <= 5
        except FileNotFoundError:
            return "free", {}
        return ("live" if young else "stale"), {}
    if owner.get("host") != socket.gethostname():
        return "elsewhere", owner
    return ("live" if _alive(owner.get("pid")) else "stale"), owner


class RunLock:
    """`<output_dir>.lock`: one `train` at a time per output folder. It holds the owner's PID and
    host; a lock whose process is gone (a killed run) is taken over, so it never stays stuck. A lock
    held from another host (a shared file system) cannot be checked and is never taken over."""

    def __init__(self, out: Path):
        self.out = out
        self.path = lock_path(out)
        self.held = False

    def __enter__(self) -> "RunLock":
        import socket

        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                state, owner = lock_owner(self.out)
                if state in ("stale", "free"):
                    self.path.unlink(missing_ok=True)  # left by a killed run
                    continue
                name = self.path.name.removesuffix(".lock")
                if state == "elsewhere":
                    raise HfTunerError(f"another hf-tuner train (pid {owner.get('pid')} on host {owner.get('host')}) holds "
                                       f"the lock {self.path}; a process on another host cannot be checked from here, so "
                                       "the lock is not taken over: if that run is gone, delete the lock file and run "
                                       "again, or choose another --output-dir", 2) from None
                raise HfTunerError(f"another hf-tuner train (pid {owner.get('pid')} on {owner.get('host')}) is writing "
                                   f"{name}: wait for it, stop it, or choose another --output-dir", 2) from None
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self.held = True
            return self
        raise HfTunerError(f"cannot take the lock {self.path}", 2)

    def __exit__(self, *exc: Any) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def discard(staging: Path) -> None:
    """Remove a staging folder (a run that failed before training started leaves nothing)."""
    shutil.rmtree(staging, ignore_errors=True)


def replace(staging: Path, out: Path) -> None:
    """Move the finished run into place; an older run there is removed only after that succeeded."""
    old = None
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------ the model


def save_model(model: Any, processing_class: Any, run_dir: Path, save_merged: bool = True) -> dict[str, str]:
    """Save a trained model into `run_dir` so `from_pretrained(run_dir)` works.

    LoRA: the adapter goes to `run_dir/adapter/` (with its base model path absolute) and, when
    `save_merged`, the merged full model to `run_dir/`. Returns {"model": ..., "adapter": ...} paths.
    """
    from .modeling import is_peft

    saved: dict[str, str] = {}
    if is_peft(model):
        folder = run_dir / ADAPTER_DIR
        model.save_pretrained(folder)
        _absolute_base_path(folder)
        if processing_class is not None:
            processing_class.save_pretrained(folder)
        saved["adapter"] = str(folder)
        if save_merged:
            merged = model.merge_and_unload()
            merged.save_pretrained(run_dir)
            saved["model"] = str(run_dir)
        else:  # the config alone (num_labels, id2label) so load_trained rebuilds the right head
            model.get_base_model().config.save_pretrained(run_dir)
    else:
        model.save_pretrained(run_dir)
        saved["model"] = str(run_dir)
    if processing_class is not None:
        processing_class.save_pretrained(run_dir)
    return saved


def _absolute_base_path(folder: Path) -> None:
    path = folder / "adapter_config.json"
    data = json.loads(path.read_text())
    base = data.get("base_model_name_or_path")
    if base and Path(base).exists():
        data["base_model_name_or_path"] = str(Path(base).resolve())
        path.write_text(json.dumps(data, indent=2))


def adapter_base(folder: Path) -> str:
    """The base model an adapter folder was trained on (its adapter_config.json)."""
    return json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]


def load_trained(auto_class: Any, path: str | Path, adapter: bool = False):
    """A trained model from a run folder, a model folder or a Hub id: the full (merged) model, or
    base + LoRA adapter with `adapter=True` (also when a LoRA run saved no merged copy)."""
    from .modeling import describe_load_error

    folder = Path(path).expanduser()
    if not folder.is_dir():
        try:
            return auto_class.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise describe_load_error(str(path), exc) from None
    if not adapter and has_full_weights(folder):
        return auto_class.from_pretrained(folder)
    found = adapter_dir(folder)
    if found is None:
        raise ConfigError(f"{folder} holds no model: no config.json with weights and no LoRA adapter")
    from peft import PeftModel

    base_kwargs = {}
    if (folder / "config.json").is_file():  # the run's config carries num_labels / id2label
        from transformers import AutoConfig

        base_kwargs["config"] = AutoConfig.from_pretrained(folder)
    source = adapter_base(found)
    if not source:
        raise ConfigError(f"{folder}: the LoRA adapter's base model was built in the run (from scratch, or from two "
                          "halves) and not saved, so base + adapter cannot be loaded again: use the run's merged copy "
                          "(push without --merge-lora or --adapter-only)")
    try:
        base = auto_class.from_pretrained(source, **base_kwargs)
    except (OSError, ValueError) as exc:
        raise describe_load_error(str(source), exc) from None
    return PeftModel.from_pretrained(base, found)


# ------------------------------------------------------------------------------------------ a finished run


@dataclass
class RunFolder:
    """A finished run: its folder, its resolved recipe and its summary (`recipes.load_run`)."""

    path: Path
    cfg: RunConfig
    summary: RunSummary
