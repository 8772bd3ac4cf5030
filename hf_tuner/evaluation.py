"""`hf-tuner eval`: the metrics of a saved model on a data set or a named benchmark.

Evaluation goes through the same task parts as training (the data part loads and preprocesses, the
family loads the finished model, the objective builds its evaluator and reports), so every task
that can be trained can be evaluated and the numbers mean the same thing as in `metrics.json`. Classifiers add a per-class report and a
confusion-matrix PNG; causal LMs report perplexity. Results go to a JSON file and, for a run folder,
into `metrics.json` ("eval" section) and the model card. (Benchmark data: `benchmarks`; the
lm-evaluation-harness: `harness`.)
"""
from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from . import rundir
from .errors import ConfigError, DataError, listing

# `data.` keys every task takes with --column KEY=VALUE (besides the task's own columns and options).
COMMON_COLUMN_KEYS = ("encoding", "config_name", "revision")


@dataclass
class ModelRef:
    """What MODEL names: a finished run folder (with its recipe) or any model folder / Hub id."""

    name: str
    path: str  # folder (absolute) or Hub id
    run_dir: Optional[Path] = None
    run_cfg: Any = None  # RunConfig of the run
    summary: Optional[rundir.RunSummary] = None


def resolve_model_ref(model: str) -> ModelRef:
    """A run folder -> its config and summary; a plain model folder or Hub id otherwise."""
    path = Path(model).expanduser()
    if rundir.is_run_folder(path):
        from .recipes import load_run

        run = load_run(path)
        run_dir = run.path.resolve()
        return ModelRef(run_dir.name, str(run_dir), run_dir, run.cfg, run.summary)
    if path.is_file():
        raise ConfigError(f"{model} is a file: MODEL is a run folder, a model folder or a Hub model id (data goes to --data)")
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ConfigError(f"{model} is neither an hf-tuner run folder (config.yaml) nor a model folder (config.json)")
        return ModelRef(path.resolve().name, str(path.resolve()))
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or path.suffix:
        raise ConfigError(f"model not found: {model} (give a run folder, a model folder or a Hub model id)")
    return ModelRef(model.replace("/", "__"), model)


def parse_columns(items: list[str], task: Any) -> dict[str, Any]:
    """`--column text_column=sentence` items -> {"text_column": "sentence"} (values parsed like
    overrides), checked against the task's `data:` keys."""
    from .config import parse_overrides
    from .errors import did_you_mean

    keys = [*task.data_schema.column_keys(), *COMMON_COLUMN_KEYS]
    out: dict[str, Any] = {}
    for path, value in parse_overrides(items):
        key = ".".join(path).removeprefix("data.")
        if key not in keys:
            raise ConfigError(f"--column {key}: not a {task.name} data key{did_you_mean(key, keys)}; keys: {', '.join(keys)}")
        out[key] = value
    return out


def data_name(data: Optional[str], split: Optional[str]) -> str:
    """A short file-safe name for an evaluation data source (used for the JSON file and metrics.json)."""
    if data is None:
        return split or "validation"
    path = Path(data)
    name = path.stem if path.suffix or data.startswith((".", "/", "~")) else data.replace("/", "__")
    name = name.removeprefix("packaged:")
    if split and not path.suffix:
        name = f"{name}-{split}"
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


# ------------------------------------------------------------------------------------------ config


def eval_config(ref: ModelRef, task: str, source: Optional[str], split: Optional[str], columns: dict[str, Any],
                batch_size: Optional[int], max_samples: Optional[int], metrics: Optional[list[str]] = None):
    """The RunConfig an evaluation runs under: the run's recipe (columns, lengths, seed, generation
    settings) with the model pointed at the trained model, no LoRA, and the data replaced by `source`
    (train and validation both read it, so nothing is split off) and its own label set (see
    `align_labels`). `source=None` keeps the run's data as it was split for training."""
    from .recipes import build_config

    base = ref.run_cfg.to_dict() if ref.run_cfg is not None else {"task": task, "data": {}}
    model = {k: v for k, v in base.get("model", {}).items() if k not in ("from_scratch", "tokenizer", "revision", "name_or_path",
                                                                        "encoder", "decoder")}
    model["name_or_path"] = ref.path
    data = dict(base.get("data", {}))
    if source is not None:
        for key in ("validation", "test", "validation_split", "test_split", "test_size", "train_split"):
            data.pop(key, None)
        data.update(train=source, validation=source)
        if split:
            data.update(train_split=split, validation_split=split)
        data["max_train_samples"] = max_samples
        data["max_eval_samples"] = max_samples
        data.pop("labels", None)  # the data's labels, matched to the model's by name
    elif max_samples:
        data["max_eval_samples"] = max_samples
    data.update(columns)
    evaluation = dict(base.get("eval", {}))
    if metrics:
        evaluation["metrics"] = list(metrics)
    from .tasks import get_task

    objective = get_task(task).objective
    keep = ("seed", "per_device_eval_batch_size", "use_cpu", "bf16", "fp16", "dataloader_num_workers", *objective.eval_training_keys)
    training = {k: v for k, v in base.get("training", {}).items() if k in keep}
    if batch_size:
        training["per_device_eval_batch_size"] = batch_size
    training.update(report_to="none", save_strategy="no", eval_strategy="no", disable_tqdm=False)  # a progress bar
    cfg = {"task": task, "model": model, "data": {k: v for k, v in data.items() if v is not None},
           "method": {"name": "full"}, "training": training, "eval": evaluation}
    cfg.update({k: base[k] for k in objective.sections if k in base})  # e.g. grpo's `reward:`
    if base.get("description"):
        cfg["description"] = base["description"]
    return build_config(cfg, source="evaluation settings")


# ------------------------------------------------------------------------------------------ evaluate


def evaluate(model: str, data: Optional[str] = None, split: Optional[str] = None, benchmark: Optional[str] = None,
             task: Optional[str] = None, columns: Optional[list[str]] = None, output: Optional[str] = None,
             batch_size: Optional[int] = None, max_samples: Optional[int] = None,
             on_status: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate MODEL and return the result (also written as JSON; merged into a run's metrics.json
    and model card). See the module docstring."""
    from .benchmarks import get_benchmark, prepare_benchmark_data
    from .modeling import model_labels, quiet_libraries
    from .tasks import get_task

    if batch_size is not None and batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if max_samples is not None and max_samples < 1:
        raise ConfigError("--max-samples must be at least 1")
    bench = get_benchmark(benchmark) if benchmark else None
    ref = resolve_model_ref(model)
    task_name = task_of(ref, task, bench)
    task_def = get_task(task_name)
    cols = parse_columns(columns or [], task_def)
    if bench is not None:
        cols = {**bench.columns, **cols}
    run_split = None
    if bench is None and data is None:
        if ref.run_cfg is None:
            raise ConfigError("nothing to evaluate on: give --data PATH_OR_HUB_ID or --benchmark NAME (or a run folder)")
        run_split = split or "validation"
        if run_split not in ("validation", "test"):
            raise ConfigError(f"--split {run_split}: without --data a run is evaluated on its own 'validation' or 'test' split")

    quiet_libraries()
    classifier = task_def.objective.classifier
    names, num_labels = model_labels(ref.path) if classifier else (None, 0)
    seed = ref.run_cfg.training.seed if ref.run_cfg is not None else 42
    on_status(f"Loading {'benchmark ' + bench.name if bench else data or ('the run data [' + run_split + ']')} ...")
    source = prepare_benchmark_data(bench, data, split, max_samples, seed) if bench else data
    cfg = eval_config(ref, task_name, source, split if not bench else None, cols, batch_size, max_samples,
                      list(bench.eval_metrics) if bench and bench.eval_metrics else None)
    job = task_def.bind(cfg)
    splits = _only_split(job.data.load(job), run_split or "validation")
    if classifier and job.labels:  # the data's labels matched to the model's by name
        splits = job.data.match_model_labels(job, splits, names, num_labels)
    processing = job.family.build_processing(job, splits)
    on_status(f"Loading the model from {ref.path} ...")
    trained = job.family.fix_up(job, job.family.load_trained(ref.path).model, processing)  # pad ids, channels, positions
    job.objective.prepare(job, splits)
    features = job.data.preprocess(job, splits, processing)
    started = time.time()
    on_status(f"Evaluating on {len(features.validation)} rows ...")
    with tempfile.TemporaryDirectory(prefix="hf-tuner-eval-") as tmp:
        from .run import training_arguments

        start = ref.run_cfg.model if ref.run_cfg is not None else None  # the model the run started from
        evaluator = job.objective.evaluator(job, training_arguments(cfg, job, Path(tmp)), trained, processing, features,
                                            start)
        result = job.objective.report(job, evaluator, features)
    name = bench.name if bench else data_name(data, split or run_split)
    result.update({
        "name": name,
        "model": ref.path,
        "task": task_name,
        "benchmark": bench.name if bench else None,
        "data": bench.dataset if bench else data or ref.run_cfg.data.train,  # a benchmark's --data is a copy of it
        "config": bench.config if bench else cfg.data.config_name,
        "split": (split or bench.split) if bench else (split or run_split),
        "rows": len(features.validation),
        "runtime_s": round(time.time() - started, 2),
    })
    if run_split:
        result["source"] = splits.sources.get("validation")
    if bench and data:
        result["local_copy"] = data
    if splits.notes or job.notes:
        result["notes"] = [*job.notes, *splits.notes]
    _save(result, ref, output)
    if result.get("output"):
        written = job.objective.eval_artifacts(job, Path(result["output"]))  # e.g. a sample sheet next to the JSON
        if written:
            result["artifacts"] = written
    return result


def task_of(ref: ModelRef, task: Optional[str], bench: Any) -> str:
    """The task of the model to evaluate: the run's, else --task, else the benchmark's."""
    from .tasks import task_names

    if ref.run_cfg is not None:
        if task and task != ref.run_cfg.task:
            raise ConfigError(f"--task {task} contradicts the run, which is a {ref.run_cfg.task} run: drop --task")
        name = ref.run_cfg.task
    else:
        # a model hf-tuner pushed keeps its recipe (config.yaml): its task, unless --task says otherwise
        name = task or (bench.task if bench else None) or rundir.run_task(Path(ref.path))
        if not name:
            raise ConfigError(f"{ref.path} is not a run folder: say what it is with --task ({', '.join(task_names())})")
    if bench is not None and bench.task != name:
        raise ConfigError(f"benchmark '{bench.name}' is for {bench.task} models but this is a {name} model")
    return name


def _only_split(splits: Any, which: str) -> Any:
    """Splits whose train and validation are both the one split to evaluate (tokenised once)."""
    from .data import Splits

    ds = getattr(splits, which)
    if ds is None:
        raise ConfigError(f"the run has no {which} split (its recipe sets no data.test / data.test_size)")
    sources = {"train": splits.sources.get(which, which), "validation": splits.sources.get(which, which)}
    return Splits(ds, ds, None, sources, list(splits.notes))


# ------------------------------------------------------------------------------------------ outputs


def _save(result: dict[str, Any], ref: ModelRef, output: Optional[str]) -> None:
    """JSON (+ confusion PNG) to --output or <run>/eval/<name>.json; a run also gets metrics.json
    and its model card updated."""
    path = Path(output) if output else (rundir.eval_file(ref.run_dir, result["name"]) if ref.run_dir else None)
    attachments = result.pop("attachments", {})  # e.g. QA's predictions: files of their own
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix, data in attachments.items():
            extra = path.with_suffix(suffix)
            extra.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
            result.setdefault("files", []).append(str(extra))
        if "confusion_matrix" in result:
            png = path.with_suffix(rundir.CONFUSION_SUFFIX)
            from .plots import plot_confusion_matrix

            plot_confusion_matrix(result["confusion_matrix"], result["labels"], png, title=result["name"])
            result["confusion_matrix_png"] = str(png)
        path.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
        result["output"] = str(path)
    if ref.run_dir is not None:
        record_in_run(ref, result)


def record_in_run(ref: ModelRef, result: dict[str, Any]) -> None:
    """Merge one evaluation into the run's metrics.json ("eval" section, keyed by name) and re-write
    the model card so it shows it."""
    from .card import write_model_card

    entry = {k: result[k] for k in ("metrics", "benchmark", "data", "config", "split", "rows", "task") if result.get(k) is not None}
    entry["evaluated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rundir.record_eval(ref.run_dir, result["name"], entry)
    write_model_card(ref.run_dir, ref.run_cfg, ref.summary or rundir.RunSummary())
